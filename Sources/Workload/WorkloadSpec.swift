import Foundation
import Primitives
import Yams

/// The operations a workload mixes. `lock.release` is not in the mix: every successful
/// `lock.acquire` is followed, after the hold time, by a release from the same client.
public enum OperationKind: String, CaseIterable, Hashable, Sendable, Comparable {
    case kvGet = "kv.get"
    case kvPut = "kv.put"
    case lockAcquire = "lock.acquire"
    case lockRelease = "lock.release"
    case logAppend = "log.append"
    case logRetrieve = "log.retrieve"
    case logTruncate = "log.truncate"

    public static let mixable: [OperationKind] = [.kvGet, .kvPut, .lockAcquire, .logAppend, .logRetrieve, .logTruncate]

    public static func < (lhs: OperationKind, rhs: OperationKind) -> Bool { lhs.ordinal < rhs.ordinal }

    /// Hashes the case, not its name: the recorder looks kinds up in its tables several times
    /// per reply, and hashing the raw string each time cost about 1 % of a quickstart run.
    public func hash(into hasher: inout Hasher) { hasher.combine(ordinal) }

    /// The case's position in `allCases`.
    private var ordinal: Int {
        switch self {
        case .kvGet: 0
        case .kvPut: 1
        case .lockAcquire: 2
        case .lockRelease: 3
        case .logAppend: 4
        case .logRetrieve: 5
        case .logTruncate: 6
        }
    }
}

/// How the replicas of the workload's group agree.
public enum ReplicationProtocol: String, CaseIterable, Hashable, Sendable {
    case multiLeader = "multi-leader"
    case singleLeader = "single-leader"
    /// The services called directly, without replication: the baseline that shows what
    /// replication costs, as a ratio.
    case unreplicated
}

public struct GroupSpec: Hashable, Sendable {
    public init() {}

    public var replicas = 3
    public var replication = ReplicationProtocol.multiLeader
    public var batchCommandsMax = 64
    public var batchBytesMax = 1 << 20
    public var batchDelayMicroseconds: UInt64 = 0
    public var pipelineDepthMax = 16
    /// Adaptive batching (see `PaxosConfig.batchHoldInflightMin`): a leader with at least this many
    /// batches in flight holds a batch that is not full; the pipeline depth or more turns it off.
    /// Nil: the protocol's default (`PaxosConfig.defaultBatchHoldInflightMin`: 1 multi-leader, 2
    /// single-leader), so a changed protocol brings its own.
    public var batchHoldInflightMin: Int?
    /// The longest adaptive batching holds a request, in microseconds (0 turns it off).
    public var batchHoldMicroseconds: UInt64 = 1_000
    /// Multi-leader: how far ahead an owner skips its unused slots, in percent of the slots the
    /// group opens during a one-way delay to its nearest peer (see `PaxosConfig.skipAheadPercent`);
    /// 0 turns skipping ahead off.
    public var skipAheadPercent = 100
    /// How each replica executes decided commands: `sequential`, `early` or `graph`.
    public var scheduler = SchedulerKind.sequential
    /// Execution workers per replica (for `early` and `graph`).
    public var workers = 1
    /// Synthetic CPU work per executed command, in microseconds (calibrated at start-up).
    public var costMicroseconds = 0.0
    /// Event-loop threads shared by the in-process replicas and clients. One by default: on a
    /// 2-core machine, handing every message to another thread (a wake-up and a context switch)
    /// costs more than the work, and two loops made runs bimodal (see BENCHMARKS.md).
    public var threads = 1
    /// `target: processes`: each replica process is capped at this many cores of CPU time (a
    /// cgroup's cpu quota), emulating a machine per replica on one host; 0: uncapped.
    public var cpuCoresPerReplica = 0.0
    /// Where acceptor state goes: `none` keeps it in memory, `write` hands it to the OS without
    /// syncing, `fsync` syncs it before anything that depends on it leaves (group commit).
    public var durability = DurabilityMode.none
    /// A checkpoint (and compaction of the log and of the core's slots) once at least this many
    /// client commands were delivered since the last one (and 4 per item of its state), and
    /// every this many delivered slots; whichever comes due first, 0 turns that trigger off (both
    /// 0: never, and memory grows with the run). By commands by default (100,000, etcd 3.4's
    /// `--snapshot-count`): a slot count would checkpoint multi-leader, whose slots include skips,
    /// several times as often as single-leader for the same work
    /// (see `ReplicaNode.checkpointIntervalCommands`).
    public var checkpointIntervalCommands: UInt64 = 100_000
    public var checkpointIntervalSlots: UInt64 = 0
    /// Where `write` and `fsync` keep their files (one folder per replica); nil: `data/` inside
    /// the run's results folder.
    public var dataDirectory: String?
    /// Where the replicas are and the emulated one-way delays between them (`Network.swift`);
    /// empty: no delay is added.
    public var network = NetworkSpec()
}

extension GroupSpec {
    /// The fields a workload's `group` and a cluster file's groups share.
    public static let settingFields = ["protocol", "batch_commands_max", "batch_bytes_max", "batch_delay_us", "pipeline_depth_max",
                                       "batch_hold_inflight_min", "batch_hold_us", "skip_ahead_percent", "scheduler", "workers", "cost_us", "durability",
                                       "checkpoint_interval_commands", "checkpoint_interval_slots", "data_dir", "network"]

    /// Reads `settingFields` from `fields`; problems land in its errors. `replicas` must be set
    /// first (`network.locations` names one location per replica).
    public mutating func readSettings(from fields: YAMLFields) {
        replication = fields.choice("protocol", default: replication)
        batchCommandsMax = fields.int("batch_commands_max", default: batchCommandsMax, range: 1...65_536, unit: "requests")
        batchBytesMax = fields.int("batch_bytes_max", default: batchBytesMax, range: 1_024...(64 << 20), unit: "bytes")
        batchDelayMicroseconds = UInt64(fields.int("batch_delay_us", default: Int(batchDelayMicroseconds), range: 0...100_000, unit: "µs"))
        pipelineDepthMax = fields.int("pipeline_depth_max", default: pipelineDepthMax, range: 1...4_096, unit: "batches")
        if fields.has("batch_hold_inflight_min") {
            batchHoldInflightMin = fields.int("batch_hold_inflight_min", default: 1, range: 1...4_096, unit: "batches")
        }
        batchHoldMicroseconds = UInt64(fields.int("batch_hold_us", default: Int(batchHoldMicroseconds), range: 0...100_000, unit: "µs"))
        skipAheadPercent = fields.int("skip_ahead_percent", default: skipAheadPercent, range: 0...1_000, unit: "% of a one-way delay's slots")
        scheduler = fields.choice("scheduler", default: scheduler)
        workers = fields.int("workers", default: workers, range: 1...64, unit: "workers")
        costMicroseconds = fields.double("cost_us", default: costMicroseconds, range: 0...1_000_000, unit: "µs")
        durability = fields.choice("durability", default: durability)
        checkpointIntervalCommands = UInt64(fields.int("checkpoint_interval_commands", default: Int(checkpointIntervalCommands),
                                                       range: 0...1_000_000_000, unit: "commands"))
        checkpointIntervalSlots = UInt64(fields.int("checkpoint_interval_slots", default: Int(checkpointIntervalSlots),
                                                    range: 0...1_000_000_000, unit: "slots"))
        if fields.has("data_dir") { dataDirectory = fields.string("data_dir", default: "") }
        if let networkFields = fields.mapping("network") { network = NetworkSpec.read(from: networkFields, replicas: replicas) }
    }
}

/// What a workload runs against.
public enum TargetKind: String, Hashable, Sendable, CaseIterable {
    /// Every replica on event loops inside the harness's process (quick runs and tests).
    case inProcess = "in-process"
    /// One `csmr replica` process per replica on this host, reached over TCP.
    case processes
    /// An etcd v3 cluster over gRPC (Integrations/etcd, built on demand): started locally with
    /// `group.replicas` members, or the endpoints `etcd.endpoints` names.
    case etcd
}

/// With `target: etcd`: where the cluster is and how the clients reach it.
public struct EtcdSpec: Hashable, Sendable {
    /// `host:port` client URLs of a running cluster; empty: the run starts its own.
    public var endpoints: [String] = []
    /// Clients sharing one gRPC connection (one HTTP/2 connection): 64 clients at 16 make 4.
    public var clientsPerConnection = 16
    /// The etcd binary a local cluster is started with.
    public var binary = "etcd"

    public init() {}
}

public enum LoopKind: String, CaseIterable, Hashable, Sendable {
    /// Each client waits for its reply (and an optional think time) before the next request.
    case closed
    /// Requests arrive at a target rate whatever the replies do; latency counts from the
    /// intended arrival time, so queueing is never hidden.
    case open
}

public enum ArrivalProcess: String, CaseIterable, Hashable, Sendable {
    case poisson
    case uniform
}

public struct ClientSpec: Hashable, Sendable {
    /// Closed loop: concurrent clients. Open loop: client sessions available for requests in
    /// flight; an arrival finding none free waits (and its wait counts in its latency).
    public var count = 16
    public var loop = LoopKind.closed
    public var thinkMicroseconds: UInt64 = 0
    public var rateOperationsPerSecond: Double = 1_000
    public var arrivals = ArrivalProcess.poisson
    /// A request unanswered this long is sent again to the next replica.
    public var retryTimeoutMilliseconds: UInt64 = 1_000
    /// With a group `network`: the locations clients are dealt to, round robin (client i at
    /// `locations[i mod count]`); empty: every location of the replicas, in replica order.
    public var locations: [String] = []
}

public enum KeyDistribution: String, CaseIterable, Hashable, Sendable {
    case uniform, zipfian, hotspot, sequential
}

public struct KeySpec: Hashable, Sendable {
    public var count = 1_000
    public var distribution = KeyDistribution.uniform
    public var zipfTheta = 0.99
    public var hotspotFraction = 0.2
    public var hotspotProbability = 0.8
    /// Share of kv and lock commands that use one shared key instead of a drawn one, so they all
    /// conflict (log commands always conflict with each other: the log is one object).
    public var conflictRate = 0.0
}

public struct ValueSpec: Hashable, Sendable {
    public var sizeBytesMin = 100
    public var sizeBytesMax = 100
}

public struct TimedEvent: Hashable, Sendable {
    public enum Action: Hashable, Sendable {
        case crash(replica: Int)
        case restart(replica: Int)
        /// Replicas on different sides cannot talk.
        case partition(sides: [[Int]])
        case heal
        /// The replica stops processing for a while (as in a long GC pause or a stalled disk),
        /// then handles everything that arrived meanwhile.
        case pause(replica: Int, milliseconds: Int)
    }

    public var atSeconds: Double
    public var action: Action
    /// The composition group the event hits (nil: the first group).
    public var group: String?
    /// Where the event is written, for errors found once the composition is known.
    public var line = 0
    public var column = 0

    public init(atSeconds: Double, action: Action, group: String? = nil) {
        self.atSeconds = atSeconds
        self.action = action
        self.group = group
    }

    public var label: String {
        let prefix = group.map { "\($0)/" } ?? ""
        return prefix + actionLabel
    }

    private var actionLabel: String {
        switch action {
        case let .crash(replica): "crash r\(replica)"
        case let .restart(replica): "restart r\(replica)"
        case let .partition(sides): "partition " + sides.map { "[" + $0.map { "r\($0)" }.joined(separator: " ") + "]" }.joined(separator: " | ")
        case .heal: "heal"
        case let .pause(replica, milliseconds): "pause r\(replica) \(milliseconds) ms"
        }
    }
}

/// A workload file, resolved: every field has its value, defaults filled in.
public struct WorkloadSpec: Hashable, Sendable {
    public var name = "workload"
    public var seed: UInt64 = 1
    public var durationSeconds = 10.0
    public var warmupSeconds = 2.0
    /// After the measured window, how long requests still out may take to complete before the run
    /// ends; those that do not are counted as `unfinished`. Bounded, so an overloaded run ends.
    public var drainSeconds = 5.0
    /// Stop after this many measured operations instead of after the duration, if set.
    public var operations: Int?
    public var group = GroupSpec()
    public var clients = ClientSpec()
    public var keys = KeySpec()
    public var values = ValueSpec()
    /// Proportions per operation kind, summing to 1.
    public var mix: [OperationKind: Double] = [.kvGet: 0.5, .kvPut: 0.5]
    public var lockHoldMicroseconds: UInt64 = 1_000
    public var retrieveLength = 10
    /// `log.truncate` drops everything but the newest this many entries.
    public var truncateKeepEntries = 1_000
    public var events: [TimedEvent] = []
    /// A composition spec (docs/composition.md), resolved against the workload file's folder.
    /// Its groups replace `group`'s replicas, protocol, batch and pipeline.
    public var composition: String?
    /// What runs the replicas.
    public var target = TargetKind.inProcess
    /// With `target: processes`: a cluster file whose replicas are already running (started by
    /// hand or elsewhere); the run connects to them instead of starting its own. Resolved against
    /// the workload file's folder.
    public var cluster: String?
    /// With `target: processes` and a composition: clients reach the groups through a
    /// `csmr proxy` process (one group to them) instead of routing themselves.
    public var viaProxy = false
    /// With `target: etcd`.
    public var etcd = EtcdSpec()
    /// The file this workload was read from, for errors found later.
    public var file = ""
    /// A saturation sweep (`sweep:`): `csmr sweep` and comparisons run its steps instead of one run.
    public var sweep: SweepSpec?
    /// Share of requests whose time per stage is recorded (`breakdown.sample_rate`; 0 turns it
    /// off). The default, one in a hundred, costs well under 2 % of throughput.
    public var breakdownSampleRate = 0.01
    /// Whether the run keeps each second's latency histogram (a sweep step's analysis needs them;
    /// not read from the file).
    public var keepsSecondHistograms = false

    public init() {}
}

extension WorkloadSpec {
    public static let topLevelFields = ["name", "seed", "duration_s", "warmup_s", "drain_s", "operations", "target", "cluster", "proxy", "etcd", "composition", "group", "clients", "keys", "values", "mix", "lock", "log", "events", "sweep", "breakdown"]

    /// Reads a workload file, reporting every problem with its file, line, field and expectation.
    public static func load(path: String) throws(SpecErrors) -> WorkloadSpec {
        let text = try SpecFile.read(path)
        var spec = try parse(text, file: path)
        let folder = URL(fileURLWithPath: path).absoluteURL.deletingLastPathComponent()
        if let composition = spec.composition, !composition.hasPrefix("/") {
            spec.composition = folder.appendingPathComponent(composition).standardized.path
        }
        if let cluster = spec.cluster, !cluster.hasPrefix("/") {
            spec.cluster = folder.appendingPathComponent(cluster).standardized.path
        }
        // A file the workload names must exist; say so at the workload's own line, where the user
        // wrote the name, not at line 0 of a file that is not there.
        let named = [("composition", spec.composition), ("cluster", spec.cluster)]
        let missing = named.filter { _, resolved in resolved.map { !FileManager.default.isReadableFile(atPath: $0) } ?? false }
        if !missing.isEmpty {
            let root = try YAMLFields.parse(text, file: path)
            for (field, resolved) in missing {
                root.fail(root.value(field), field: field, "cannot read \(resolved!): no such readable file")
            }
            throw SpecErrors(errors: root.errors)
        }
        return spec
    }

    public static func parse(_ text: String, file: String) throws(SpecErrors) -> WorkloadSpec {
        let root = try YAMLFields.parse(text, file: file)
        var spec = WorkloadSpec()
        spec.file = file
        spec.read(from: root)
        guard root.errors.isEmpty else { throw SpecErrors(errors: root.errors) }
        return spec
    }

    /// Fills this spec from `root`; problems land in `root.errors`.
    public mutating func read(from root: YAMLFields) {
        name = root.string("name", default: name)
        seed = UInt64(root.int("seed", default: Int(seed), range: 0...Int.max))
        durationSeconds = root.double("duration_s", default: durationSeconds, range: 0.1...86_400, unit: "seconds")
        warmupSeconds = root.double("warmup_s", default: warmupSeconds, range: 0...3_600, unit: "seconds")
        drainSeconds = root.double("drain_s", default: drainSeconds, range: 0...3_600, unit: "seconds")
        if root.has("operations") { operations = root.int("operations", default: 0, range: 1...1_000_000_000) }
        target = TargetKind(rawValue: root.choice("target", default: target.rawValue, from: TargetKind.allCases.map(\.rawValue)))!
        if root.has("cluster") {
            cluster = root.string("cluster", default: "")
            if target != .processes { root.fail(root.value("cluster"), field: "cluster", "only applies to target: processes") }
        }
        viaProxy = root.bool("proxy", default: false)
        if viaProxy, target != .processes { root.fail(root.value("proxy"), field: "proxy", "only applies to target: processes") }
        if let fields = root.mapping("etcd") {
            if target != .etcd { root.fail(root.value("etcd"), field: "etcd", "only applies to target: etcd") }
            for (path, node) in fields.sequence("endpoints") {
                guard let text = node.string, let colon = text.lastIndex(of: ":"), !text[..<colon].isEmpty,
                      let port = Int(text[text.index(after: colon)...]), (1...65_535).contains(port) else {
                    fields.fail(node, field: path, "expected host:port, e.g. 127.0.0.1:2379")
                    continue
                }
                etcd.endpoints.append(text)
            }
            etcd.clientsPerConnection = fields.int("clients_per_connection", default: etcd.clientsPerConnection, range: 1...10_000, unit: "clients")
            etcd.binary = fields.string("binary", default: etcd.binary)
            fields.rejectUnknown(expected: ["endpoints", "clients_per_connection", "binary"])
        }

        var replicasGiven = false
        if root.has("composition") { composition = root.string("composition", default: "") }
        if let fields = root.mapping("group") {
            if composition != nil {
                for key in ["replicas", "protocol", "batch_commands_max", "batch_bytes_max", "pipeline_depth_max"] where fields.has(key) {
                    fields.fail(fields.value(key), field: fields.qualified(key), "comes from the composition's groups; remove it here")
                }
                if fields.has("network") {
                    fields.fail(fields.value("network"), field: fields.qualified("network"), "link delays apply to a single group for now, not to a composition")
                }
            }
            replicasGiven = fields.has("replicas")
            group.replicas = fields.int("replicas", default: group.replicas, range: 1...15)
            if fields.has("replicas"), group.replicas % 2 == 0 {
                fields.fail(fields.value("replicas"), field: fields.qualified("replicas"), "expected an odd number (n = 2f + 1), got \(group.replicas)")
            }
            group.readSettings(from: fields)
            group.threads = fields.int("threads", default: group.threads, range: 1...64)
            group.cpuCoresPerReplica = fields.double("cpu_cores_per_replica", default: 0, range: 0...256, unit: "cores")
            if fields.has("cpu_cores_per_replica"), target != .processes || root.has("cluster") {
                fields.fail(fields.value("cpu_cores_per_replica"), field: fields.qualified("cpu_cores_per_replica"),
                            "caps the replica processes a run starts: it needs target: processes and no cluster: file")
            } else if fields.has("cpu_cores_per_replica"), group.cpuCoresPerReplica > 0, group.cpuCoresPerReplica < 0.05 {
                fields.fail(fields.value("cpu_cores_per_replica"), field: fields.qualified("cpu_cores_per_replica"),
                            "expected 0 (uncapped) or at least 0.05 cores, got \(group.cpuCoresPerReplica)")
            }
            if fields.has("network"), target != .processes {
                fields.fail(fields.value("network"), field: fields.qualified("network"),
                            "link delays are emulated by the TCP transports: they need target: processes")
            }
            if fields.has("network"), viaProxy {
                fields.fail(fields.value("network"), field: fields.qualified("network"), "clients reach a proxy without delay; use proxy: false")
            }
            fields.rejectUnknown(expected: ["replicas"] + GroupSpec.settingFields + ["threads", "cpu_cores_per_replica"])
        }
        if let fields = root.mapping("clients") {
            clients.count = fields.int("count", default: clients.count, range: 1...100_000)
            clients.loop = fields.choice("loop", default: clients.loop)
            clients.thinkMicroseconds = UInt64(fields.int("think_time_us", default: Int(clients.thinkMicroseconds), range: 0...60_000_000, unit: "µs"))
            clients.rateOperationsPerSecond = fields.double("rate_ops_s", default: clients.rateOperationsPerSecond, range: 1...10_000_000, unit: "operations per second")
            clients.arrivals = fields.choice("arrivals", default: clients.arrivals)
            clients.retryTimeoutMilliseconds = UInt64(fields.int("retry_timeout_ms", default: Int(clients.retryTimeoutMilliseconds), range: 1...600_000, unit: "ms"))
            let replicaLocations = group.network.distinctLocations
            for (path, node) in fields.sequence("locations") {
                guard let name = node.scalar?.string else {
                    fields.fail(node, field: path, "expected a location's name, got \(YAMLFields.show(node))")
                    continue
                }
                // A cluster file of running replicas brings its own network; the run checks it.
                if cluster == nil, !replicaLocations.contains(name) {
                    fields.fail(node, field: path, replicaLocations.isEmpty ? "client locations need group.network (where the replicas are)"
                                : "unknown location \(name) (the replicas are at \(replicaLocations.joined(separator: ", ")))")
                }
                clients.locations.append(name)
            }
            if clients.loop == .closed, fields.has("rate_ops_s") {
                fields.fail(fields.value("rate_ops_s"), field: fields.qualified("rate_ops_s"), "only applies to loop: open")
            }
            if clients.loop == .open, fields.has("think_time_us") {
                fields.fail(fields.value("think_time_us"), field: fields.qualified("think_time_us"), "only applies to loop: closed")
            }
            fields.rejectUnknown(expected: ["count", "loop", "think_time_us", "rate_ops_s", "arrivals", "retry_timeout_ms", "locations"])
        }
        if let fields = root.mapping("keys") {
            keys.count = fields.int("count", default: keys.count, range: 1...100_000_000)
            keys.distribution = fields.choice("distribution", default: keys.distribution)
            keys.zipfTheta = fields.double("zipf_theta", default: keys.zipfTheta, range: 0.01...5)
            keys.hotspotFraction = fields.double("hotspot_fraction", default: keys.hotspotFraction, range: 0.000_001...1)
            keys.hotspotProbability = fields.double("hotspot_probability", default: keys.hotspotProbability, range: 0...1)
            keys.conflictRate = fields.double("conflict_rate", default: keys.conflictRate, range: 0...1, unit: "share of kv and lock commands")
            fields.rejectUnknown(expected: ["count", "distribution", "zipf_theta", "hotspot_fraction", "hotspot_probability", "conflict_rate"])
        }
        if let fields = root.mapping("values") {
            if fields.has("size_bytes") {
                let size = fields.int("size_bytes", default: 100, range: 0...(1 << 20), unit: "bytes")
                values = ValueSpec(sizeBytesMin: size, sizeBytesMax: size)
            } else {
                values.sizeBytesMin = fields.int("size_bytes_min", default: values.sizeBytesMin, range: 0...(1 << 20), unit: "bytes")
                values.sizeBytesMax = fields.int("size_bytes_max", default: max(values.sizeBytesMin, values.sizeBytesMax), range: 0...(1 << 20), unit: "bytes")
                if values.sizeBytesMax < values.sizeBytesMin {
                    fields.fail(fields.value("size_bytes_max"), field: fields.qualified("size_bytes_max"),
                                "must be at least size_bytes_min (\(values.sizeBytesMin)), got \(values.sizeBytesMax)")
                }
            }
            fields.rejectUnknown(expected: ["size_bytes", "size_bytes_min", "size_bytes_max"])
        }
        if let fields = root.mapping("mix") {
            var mix: [OperationKind: Double] = [:]
            for key in fields.keys {
                guard let kind = OperationKind(rawValue: key), OperationKind.mixable.contains(kind) else { continue }
                mix[kind] = fields.double(key, default: 0, range: 0...1, unit: "proportion")
            }
            fields.rejectUnknown(expected: OperationKind.mixable.map(\.rawValue))
            let total = mix.values.reduce(0, +)
            if abs(total - 1) > 1e-6 {
                fields.fail(root.value("mix"), field: "mix", "proportions must sum to 1, got \(total)")
            }
            self.mix = mix.filter { $0.value > 0 }
        }
        if let fields = root.mapping("lock") {
            lockHoldMicroseconds = UInt64(fields.int("hold_us", default: Int(lockHoldMicroseconds), range: 0...60_000_000, unit: "µs"))
            fields.rejectUnknown(expected: ["hold_us"])
        }
        if let fields = root.mapping("log") {
            retrieveLength = fields.int("retrieve_length", default: retrieveLength, range: 1...1_024, unit: "entries")
            truncateKeepEntries = fields.int("truncate_keep", default: truncateKeepEntries, range: 0...100_000_000, unit: "entries")
            fields.rejectUnknown(expected: ["retrieve_length", "truncate_keep"])
        }
        for (path, node) in root.sequence("events") {
            guard let fields = root.fields(of: node, path: path) else { continue }
            let at = fields.double("at_s", default: -1, range: 0...86_400, unit: "seconds")
            if !fields.has("at_s") { fields.fail(node, field: "\(path).at_s", "is required") }
            let actions = ["crash", "restart", "partition", "heal", "pause"].filter(fields.has)
            guard actions.count == 1 else {
                fields.fail(node, field: path, "expected exactly one of crash, restart, partition, heal, pause; got \(actions.isEmpty ? "none" : actions.joined(separator: ", "))")
                continue
            }
            // With a composition, replica indices are checked once its groups are known.
            let limit = composition == nil ? group.replicas - 1 : 14
            let groupName = fields.has("group") ? fields.string("group", default: "") : nil
            if groupName != nil, composition == nil { fields.fail(fields.value("group"), field: "\(path).group", "only applies with a composition") }
            let eventMark = node.mark
            defer {
                if !events.isEmpty, events[events.count - 1].line == 0 {
                    events[events.count - 1].group = groupName
                    events[events.count - 1].line = eventMark?.line ?? 0
                    events[events.count - 1].column = eventMark?.column ?? 0
                }
            }
            switch actions[0] {
            case "crash": events.append(TimedEvent(atSeconds: at, action: .crash(replica: fields.int("crash", default: 0, range: 0...limit, unit: "replica index"))))
            case "restart": events.append(TimedEvent(atSeconds: at, action: .restart(replica: fields.int("restart", default: 0, range: 0...limit, unit: "replica index"))))
            case "heal":
                _ = fields.value("heal")
                events.append(TimedEvent(atSeconds: at, action: .heal))
            case "pause":
                let replica = fields.int("pause", default: 0, range: 0...limit, unit: "replica index")
                if !fields.has("for_ms") { fields.fail(node, field: "\(path).for_ms", "is required with pause") }
                let milliseconds = fields.int("for_ms", default: 0, range: 1...600_000, unit: "ms")
                events.append(TimedEvent(atSeconds: at, action: .pause(replica: replica, milliseconds: milliseconds)))
            default:
                let sideNodes = fields.sequence("partition")
                var sides: [[Int]] = []
                for (sidePath, sideNode) in sideNodes {
                    let members = sideNode.sequence?.compactMap { $0.int } ?? []
                    if sideNode.sequence == nil || members.count != sideNode.sequence!.count || members.contains(where: { !(0...limit).contains($0) }) {
                        fields.fail(sideNode, field: sidePath, "expected a list of replica indices in 0...\(limit)")
                    }
                    sides.append(members)
                }
                if sides.count < 2 { fields.fail(node, field: "\(path).partition", "expected at least two sides, e.g. [[0], [1, 2]]") }
                events.append(TimedEvent(atSeconds: at, action: .partition(sides: sides)))
            }
            fields.rejectUnknown(expected: ["at_s", "crash", "restart", "partition", "heal", "pause", "for_ms", "group"])
        }
        events.sort { $0.atSeconds < $1.atSeconds }
        if let fields = root.mapping("sweep") { sweep = SweepSpec.read(from: fields) }
        if let fields = root.mapping("breakdown") {
            breakdownSampleRate = fields.double("sample_rate", default: breakdownSampleRate, range: 0...1, unit: "share of requests")
            fields.rejectUnknown(expected: ["sample_rate"])
        }
        if group.replication == .unreplicated, group.replicas != 1, replicasGiven {
            // Harmless but misleading: say it rather than silently run one copy.
            root.fail(nil, field: "group.replicas", "protocol unreplicated runs one copy of the services; set replicas: 1")
        }
        if group.replication == .unreplicated { group.replicas = 1 }
        if !events.isEmpty, group.replication == .unreplicated {
            root.fail(root.value("events"), field: "events", "crash, restart, partition and pause need a replicated group")
        }
        if target == .etcd { refuseWhatEtcdLacks(root) }
        root.rejectUnknown(expected: Self.topLevelFields)
    }

    /// What `target: etcd` cannot run, refused when the file is read rather than mid-run: etcd
    /// has no log service (no equivalent of append, retrieve or truncate), its lock API blocks
    /// where csmr's lock answers at once, and the run does not start or stop its members on cue.
    private func refuseWhatEtcdLacks(_ root: YAMLFields) {
        func node(_ path: String...) -> Node? {
            path.dropFirst().reduce(root.value(path[0])) { node, key in node?.mapping?.first { $0.key.string == key }?.value }
        }
        for kind in mix.keys.sorted() where kind != .kvGet && kind != .kvPut {
            let why = kind == .lockAcquire
                ? "etcd's lock API waits for the lock where csmr's lock.acquire answers at once; target: etcd runs kv.get and kv.put only"
                : "etcd has no log service; target: etcd runs kv.get and kv.put only"
            root.fail(node("mix", kind.rawValue), field: "mix.\(kind.rawValue)", why)
        }
        if root.has("events") {
            root.fail(root.value("events"), field: "events", "target: etcd does not crash, restart, partition or pause etcd members")
        }
        if root.has("composition") {
            root.fail(root.value("composition"), field: "composition", "target: etcd is one etcd cluster; a composition's groups do not apply")
        }
        if group.replication == .unreplicated {
            root.fail(node("group", "protocol"), field: "group.protocol", "target: etcd is replicated by etcd's Raft; unreplicated does not apply")
        }
    }
}
