import Foundation

extension WorkloadSpec {
    /// The resolved workload as a workload file: every field written out, so it can be run again.
    public var yaml: String {
        var lines: [String] = []
        func number(_ value: Double) -> String {
            value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
        }
        lines.append("name: \(Self.quoted(name))")
        lines.append("seed: \(seed)")
        lines.append("duration_s: \(number(durationSeconds))")
        lines.append("warmup_s: \(number(warmupSeconds))")
        lines.append("drain_s: \(number(drainSeconds))")
        if let operations { lines.append("operations: \(operations)") }
        lines.append("target: \(target.rawValue)")
        if let cluster { lines.append("cluster: \(Self.quoted(cluster))") }
        if viaProxy { lines.append("proxy: true") }
        if target == .etcd {
            lines.append("etcd:")
            if !etcd.endpoints.isEmpty { lines.append("  endpoints: [\(etcd.endpoints.map(Self.quoted).joined(separator: ", "))]") }
            lines.append("  clients_per_connection: \(etcd.clientsPerConnection)")
            lines.append("  binary: \(Self.quoted(etcd.binary))")
        }
        if let composition { lines.append("composition: \(Self.quoted(composition))") }
        lines.append("group:")
        if composition == nil {
            lines.append("  replicas: \(group.replicas)")
            lines.append("  protocol: \(group.replication.rawValue)")
            lines.append("  batch_commands_max: \(group.batchCommandsMax)")
            lines.append("  batch_bytes_max: \(group.batchBytesMax)")
            lines.append("  pipeline_depth_max: \(group.pipelineDepthMax)")
        }
        lines.append("  batch_delay_us: \(group.batchDelayMicroseconds)")
        // Unset, it is left to the protocol (so a re-read follows a changed protocol).
        if let hold = group.batchHoldInflightMin { lines.append("  batch_hold_inflight_min: \(hold)") }
        lines.append("  batch_hold_us: \(group.batchHoldMicroseconds)")
        lines.append("  skip_ahead_percent: \(group.skipAheadPercent)")
        lines.append("  scheduler: \(group.scheduler.rawValue)")
        lines.append("  workers: \(group.workers)")
        lines.append("  cost_us: \(number(group.costMicroseconds))")
        lines.append("  threads: \(group.threads)")
        if group.cpuCoresPerReplica > 0 { lines.append("  cpu_cores_per_replica: \(group.cpuCoresPerReplica)") }
        lines.append("  durability: \(group.durability.rawValue)")
        lines.append("  checkpoint_interval_commands: \(group.checkpointIntervalCommands)")
        lines.append("  checkpoint_interval_slots: \(group.checkpointIntervalSlots)")
        if let dataDirectory = group.dataDirectory { lines.append("  data_dir: \(Self.quoted(dataDirectory))") }
        if !group.network.isEmpty { lines.append("  network: \(group.network.yaml)") }
        lines.append("clients:")
        lines.append("  count: \(clients.count)")
        lines.append("  loop: \(clients.loop.rawValue)")
        switch clients.loop {
        case .closed: lines.append("  think_time_us: \(clients.thinkMicroseconds)")
        case .open:
            lines.append("  rate_ops_s: \(number(clients.rateOperationsPerSecond))")
            lines.append("  arrivals: \(clients.arrivals.rawValue)")
        }
        lines.append("  retry_timeout_ms: \(clients.retryTimeoutMilliseconds)")
        if !clients.locations.isEmpty { lines.append("  locations: [\(clients.locations.map(Self.quoted).joined(separator: ", "))]") }
        lines.append("keys:")
        lines.append("  count: \(keys.count)")
        lines.append("  distribution: \(keys.distribution.rawValue)")
        lines.append("  conflict_rate: \(keys.conflictRate)")
        switch keys.distribution {
        case .zipfian: lines.append("  zipf_theta: \(keys.zipfTheta)")
        case .hotspot:
            lines.append("  hotspot_fraction: \(keys.hotspotFraction)")
            lines.append("  hotspot_probability: \(keys.hotspotProbability)")
        case .uniform, .sequential: break
        }
        lines.append("values:")
        lines.append("  size_bytes_min: \(values.sizeBytesMin)")
        lines.append("  size_bytes_max: \(values.sizeBytesMax)")
        lines.append("mix:")
        for kind in OperationKind.mixable where mix[kind] != nil { lines.append("  \(kind.rawValue): \(mix[kind]!)") }
        lines.append("lock:")
        lines.append("  hold_us: \(lockHoldMicroseconds)")
        lines.append("log:")
        lines.append("  retrieve_length: \(retrieveLength)")
        lines.append("  truncate_keep: \(truncateKeepEntries)")
        if !events.isEmpty {
            lines.append("events:")
            for event in events {
                lines.append("  - at_s: \(number(event.atSeconds))")
                if let group = event.group { lines.append("    group: \(Self.quoted(group))") }
                switch event.action {
                case let .crash(replica): lines.append("    crash: \(replica)")
                case let .restart(replica): lines.append("    restart: \(replica)")
                case let .partition(sides): lines.append("    partition: [\(sides.map { "[\($0.map(String.init).joined(separator: ", "))]" }.joined(separator: ", "))]")
                case .heal: lines.append("    heal: true")
                case let .pause(replica, milliseconds):
                    lines.append("    pause: \(replica)")
                    lines.append("    for_ms: \(milliseconds)")
                }
            }
        }
        lines.append("breakdown:")
        lines.append("  sample_rate: \(breakdownSampleRate)")
        if let sweep {
            lines.append("sweep:")
            lines.append("  rates_ops_s: [\(sweep.ratesOperationsPerSecond.map(number).joined(separator: ", "))]")
            lines.append("  p99_bound_us: \(sweep.p99BoundMicroseconds)")
            lines.append("  step_s: \(sweep.stepSeconds)")
            lines.append("  steady_window_s: \(sweep.steadyWindowSeconds)")
            lines.append("  steady_tolerance_percent: \(number(sweep.steadyTolerancePercent))")
            lines.append("  steady_wait_max_s: \(sweep.steadyWaitMaxSeconds)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func quoted(_ text: String) -> String { SpecFile.quoted(text) }
}
