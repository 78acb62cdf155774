import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOPosix
import Composition
import Execution
import Paxos
import Services
import Workload

/// Runs a workload on an in-process cluster with the real clock.
public enum WorkloadRunner {
    /// The Paxos configuration a workload asks for (nil when unreplicated).
    public static func paxosConfig(for spec: WorkloadSpec) throws(ConfigError) -> PaxosConfig? {
        try paxosConfig(group: spec.group)
    }

    /// The Paxos configuration of a group's settings (nil when unreplicated), for the real clock.
    public static func paxosConfig(group: GroupSpec) throws(ConfigError) -> PaxosConfig? {
        let mode: LeadershipMode
        switch group.replication {
        case .unreplicated: return nil
        case .multiLeader: mode = .multiLeader
        case .singleLeader: mode = .singleLeader
        }
        var config = PaxosConfig.preset(replicaCount: group.replicas, mode: mode, batchCommandsMax: group.batchCommandsMax,
                                        pipelineDepthMax: group.pipelineDepthMax, clock: .realTime)
        config.batchBytesMax = group.batchBytesMax
        config.batchDelayMicrosecondsMax = group.batchDelayMicroseconds
        // Unset: the preset's, which depends on the mode.
        if let hold = group.batchHoldInflightMin { config.batchHoldInflightMin = hold }
        config.batchHoldMicrosecondsMax = group.batchHoldMicroseconds
        config.skipAheadPercent = group.skipAheadPercent
        try config.validate()
        return config
    }

    /// How a group's replicas execute decided commands.
    public static func executionConfig(group: GroupSpec) -> ExecutionConfig {
        ExecutionConfig(scheduler: group.scheduler, workers: group.workers,
                        spinIterationsPerCommand: SpinCalibration.iterations(microseconds: group.costMicroseconds))
    }

    /// The groups a workload runs: its composition's (loaded and checked), or its one group.
    public static func topology(for spec: WorkloadSpec) throws -> (composition: CompositionSpec, configs: [PaxosConfig?], events: [(group: Int, event: TimedEvent)]) {
        guard let path = spec.composition else {
            let single = CompositionSpec(name: spec.name, groups: [CompositionSpec.Group(name: "group", replicas: spec.group.replicas,
                                                                                         toleratedFailures: (spec.group.replicas - 1) / 2, mode: .multiLeader,
                                                                                         services: [.kv, .lock, .log])],
                                         extendPutsIntoLog: false, partition: nil)
            return (single, [try paxosConfig(for: spec)], spec.events.map { (0, $0) })
        }
        let composition = try CompositionSpec.parse(SpecFile.read(path), file: path)
        var configs: [PaxosConfig?] = []
        for index in composition.groups.indices {
            var config = composition.paxosConfig(of: index, simulated: false)
            config.batchDelayMicrosecondsMax = spec.group.batchDelayMicroseconds
            try config.validate()
            configs.append(config)
        }
        var events: [(Int, TimedEvent)] = []
        var errors: [SpecError] = []
        for event in spec.events {
            let name = event.group ?? composition.groups[0].name
            guard let group = composition.groups.firstIndex(where: { $0.name == name }) else {
                errors.append(SpecError(file: spec.file, line: event.line, column: event.column, field: "events.group",
                                        problem: "no group named \(name) in \(path)"))
                continue
            }
            let replicas = composition.groups[group].replicas
            let indices: [Int] = switch event.action {
            case let .crash(replica), let .restart(replica), let .pause(replica, _): [replica]
            case let .partition(sides): sides.flatMap { $0 }
            case .heal: []
            }
            if let bad = indices.first(where: { $0 >= replicas }) {
                errors.append(SpecError(file: spec.file, line: event.line, column: event.column, field: "events",
                                        problem: "replica \(bad) is outside group \(name), which has \(replicas)"))
            }
            events.append((group, event))
        }
        guard errors.isEmpty else { throw SpecErrors(errors: errors) }
        return (composition, configs, events)
    }

    /// Where a run's replicas keep their files: `group.data_dir`, else `dataDirectory` (the
    /// results folder's `data/`), else a temporary folder removed after the run. It must not hold
    /// files already: a fresh cluster started on another run's disk would resume that run.
    public static func durability(for spec: WorkloadSpec, dataDirectory: String?) throws -> (durability: ReplicaDurability, temporary: String?) {
        guard spec.group.durability != .none else {
            return (ReplicaDurability(mode: .none, checkpointIntervalSlots: spec.group.checkpointIntervalSlots,
                                      checkpointIntervalCommands: spec.group.checkpointIntervalCommands), nil)
        }
        var temporary: String?
        let directory: String
        if let configured = spec.group.dataDirectory ?? dataDirectory {
            directory = configured
        } else {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("csmr-data-\(UUID().uuidString)").path
            temporary = directory
        }
        if let contents = try? FileManager.default.contentsOfDirectory(atPath: directory), !contents.isEmpty {
            throw SpecErrors(errors: [SpecError(file: spec.file, line: 0, column: 0, field: "group.data_dir",
                                                problem: "\(directory) already holds files (\(contents.sorted().prefix(3).joined(separator: ", "))); remove it or name another folder")])
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return (ReplicaDurability(mode: spec.group.durability, checkpointIntervalSlots: spec.group.checkpointIntervalSlots,
                                  checkpointIntervalCommands: spec.group.checkpointIntervalCommands, directory: directory),
                temporary)
    }

    /// Runs `spec` to completion. `progress` gets a line about once a second.
    /// - Parameter dataDirectory: where replicas keep files when the workload asks for durability
    ///   and names no `group.data_dir`.
    /// - Parameters:
    ///   - folder: where a process target writes its cluster file and replica logs (default: a
    ///     temporary folder).
    ///   - executable: the `csmr` binary a process target starts (default: this process's own
    ///     binary, when it is `csmr`).
    public static func run(_ spec: WorkloadSpec, recordHistory: Bool = false, dataDirectory: String? = nil, folder: String? = nil,
                           executable: String? = nil, progress: (@Sendable (String) -> Void)? = nil) throws -> RunOutcome {
        if spec.target == .etcd {
            // gRPC lives outside the core build; the CLI hands such a workload to csmr-etcd.
            throw SpecErrors(errors: [SpecError(file: spec.file, line: 0, column: 0, field: "target",
                                                problem: "target: etcd runs through csmr-etcd (Integrations/etcd), which csmr run and csmr compare build and start")])
        }
        let topology = try topology(for: spec)
        let (durability, temporary) = try durability(for: spec, dataDirectory: dataDirectory)
        defer { if let temporary { try? FileManager.default.removeItem(atPath: temporary) } }
        if spec.target == .processes {
            return try runProcesses(spec, topology: topology, dataDirectory: durability.directory, folder: folder, executable: executable,
                                    recordHistory: recordHistory, progress: progress)
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: spec.group.threads)
        defer { try? group.syncShutdownGracefully() }
        let loops = Array(group.makeIterator())
        // The load generator gets the last loop; replicas are spread from the first.
        let clientLoop = loops[loops.count - 1]
        let driverBox = DriverBox()
        let execution = executionConfig(group: spec.group)
        let cluster = ComposedCluster(spec: topology.composition, configs: topology.configs, execution: execution, durability: durability,
                                      loops: loops,
                                      onReply: { group, reply in driverBox.driver?.deliver(reply, group: group) },
                                      onExtensionSteps: { steps in driverBox.driver?.extensionSteps(steps) },
                                      onExtensionAppended: { appended in driverBox.driver?.extensionsAppended(appended) },
                                      onEvent: { text in driverBox.driver?.event(text) })
        return try drive(spec, target: cluster, loop: clientLoop, driverBox: driverBox, events: topology.events, recordHistory: recordHistory,
                         progress: progress)
    }

    /// The process target: one `csmr replica` per replica, on free loopback ports.
    private static func runProcesses(_ spec: WorkloadSpec, topology: (composition: CompositionSpec, configs: [PaxosConfig?], events: [(group: Int, event: TimedEvent)]),
                                     dataDirectory: String?, folder: String?, executable: String?, recordHistory: Bool,
                                     progress: (@Sendable (String) -> Void)?) throws -> RunOutcome {
        var problems: [SpecError] = []
        if spec.group.replication == .unreplicated {
            problems.append(SpecError(file: spec.file, line: 0, column: 0, field: "target", problem: "processes need a replicated protocol, not unreplicated"))
        }
        for (_, event) in topology.events where spec.cluster != nil {
            // A partition goes through each replica's control file and a signal, which only the
            // harness that started the replicas can give.
            switch event.action {
            case .partition, .heal:
                problems.append(SpecError(file: spec.file, line: event.line, column: event.column, field: "events",
                                          problem: "partition and heal need replicas this run starts; the cluster file names replicas already running"))
            case .crash, .restart, .pause: break
            }
        }
        guard problems.isEmpty else { throw SpecErrors(errors: problems) }
        let binary = executable ?? ownExecutable()
        if spec.cluster == nil, binary == nil {
            throw RunError.clusterUnavailable("cannot find the csmr binary to start replicas with")
        }
        let runFolder = folder ?? FileManager.default.temporaryDirectory.appendingPathComponent("csmr-processes-\(UUID().uuidString)").path
        let cluster: ClusterSpec
        if let path = spec.cluster {
            cluster = try ClusterSpec.load(path: path)
            let names = topology.composition.groups.map(\.name)
            guard cluster.groups.count == names.count else {
                throw SpecErrors(errors: [SpecError(file: spec.file, line: 0, column: 0, field: "cluster",
                                                    problem: "\(path) has \(cluster.groups.count) group(s); the workload routes to \(names.count) (\(names.joined(separator: ", ")))")])
            }
            if let event = topology.events.first {
                throw SpecErrors(errors: [SpecError(file: spec.file, line: event.event.line, column: event.event.column, field: "events",
                                                    problem: "the replicas of \(path) were not started by this run, so it cannot kill or restart them")])
            }
        } else {
            var local = try ProcessCluster.localCluster(name: spec.name, composition: topology.composition, isComposed: spec.composition != nil,
                                                        settings: spec.group, dataDirectory: dataDirectory)
            // The replicas read the composition too: an extension's origin forwards its steps.
            local.composition = spec.composition
            if spec.viaProxy {
                guard spec.composition != nil else {
                    throw SpecErrors(errors: [SpecError(file: spec.file, line: 0, column: 0, field: "proxy", problem: "a proxy routes by a composition: name one")])
                }
                local.proxy = ClusterSpec.Address(host: "127.0.0.1", port: try ProcessCluster.freePort())
            }
            cluster = local
        }
        let placement = try clientPlacement(spec, cluster: cluster)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let loop = group.next()
        let driverBox = DriverBox()
        let target = try ProcessCluster(cluster: cluster, composition: topology.composition, folder: runFolder, executable: binary,
                                        attach: spec.cluster != nil, viaProxy: spec.viaProxy, placement: placement,
                                        cpuCoresPerReplica: spec.group.cpuCoresPerReplica, loop: loop,
                                        onReply: { group, reply in driverBox.driver?.deliver(reply, group: group) },
                                        onEvent: { text in driverBox.driver?.event(text) })
        do {
            try target.launch()
        } catch {
            _ = target.stop()
            throw error
        }
        return try drive(spec, target: target, loop: loop, driverBox: driverBox, events: topology.events, placement: placement,
                         recordHistory: recordHistory, progress: progress)
    }

    /// Where the clients are, by the cluster's networks (a workload's `group.network`, or the
    /// running cluster's file) and `clients.locations`; nil when no link is delayed.
    static func clientPlacement(_ spec: WorkloadSpec, cluster: ClusterSpec) throws -> ClientPlacement? {
        let networks = cluster.groups.map(\.settings.network)
        guard let placement = ClientPlacement.of(clients: spec.clients.locations, networks: networks) else {
            if !spec.clients.locations.isEmpty {
                throw SpecErrors(errors: [SpecError(file: spec.file, line: 0, column: 0, field: "clients.locations",
                                                    problem: "\(spec.cluster ?? "the cluster") has no network: its replicas have no locations")])
            }
            return nil
        }
        for (index, network) in networks.enumerated() {
            let known = network.distinctLocations
            if let unknown = placement.locations.first(where: { !known.contains($0) }) {
                throw SpecErrors(errors: [SpecError(file: spec.file, line: 0, column: 0, field: "clients.locations",
                                                    problem: "unknown location \(unknown): group \(cluster.groups[index].name)'s replicas are at \(known.joined(separator: ", "))")])
            }
        }
        return placement
    }

    /// This process's binary, when it is `csmr` (not a test runner).
    static func ownExecutable() -> String? {
        guard let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"),
              URL(fileURLWithPath: path).lastPathComponent == "csmr" else { return nil }
        return path
    }

    /// Runs `spec` against a synthetic target that completes `capacityOperationsPerSecond`
    /// requests a second (see `SyntheticTarget`), on virtual time: the load generator and the
    /// target share one `EmbeddedEventLoop` whose clock moves only from one scheduled task to
    /// the next, so the run takes what its CPU work takes, not its duration, and gives the same
    /// counts and latencies on a loaded machine as on an idle one.
    /// - Parameter rampSeconds: the target warms up over this long (see `SyntheticTarget`).
    public static func runSynthetic(_ spec: WorkloadSpec, capacityOperationsPerSecond: Double, rampSeconds: Double = 0,
                                    progress: (@Sendable (String) -> Void)? = nil) throws -> RunOutcome {
        let loop = EmbeddedEventLoop()
        let driverBox = DriverBox()
        let target = SyntheticTarget(capacityOperationsPerSecond: capacityOperationsPerSecond, loop: loop, rampSeconds: rampSeconds,
                                     onReply: { group, reply in driverBox.driver?.deliver(reply, group: group) })
        let driver = LoadDriver(spec: spec, loop: loop, cluster: target, events: spec.events.map { (0, $0) }, placement: nil,
                                recordHistory: false, progress: progress)
        driverBox.driver = driver
        target.start()
        let result = NIOLockedValueBox<Result<RunOutcome, any Error>?>(nil)
        driver.run().whenComplete { outcome in result.withLockedValue { $0 = outcome } }
        // A run ends by its own timers (window, drain); the bound only stops a driver that never
        // completes from spinning forever.
        let virtualSecondsMax = Int64(spec.warmupSeconds + spec.durationSeconds + spec.drainSeconds) + LoadDriver.sessionOpenSeconds + 60
        let endOfTime = loop.now + .seconds(virtualSecondsMax)
        loop.run()
        while result.withLockedValue({ $0 }) == nil, loop.now < endOfTime {
            loop.advanceTime(by: .milliseconds(100))
        }
        _ = target.stop()
        loop.run()
        guard let outcome = result.withLockedValue({ $0 }) else {
            throw SyntheticRunError.neverEnded(virtualSeconds: virtualSecondsMax)
        }
        return try outcome.get()
    }

    public enum SyntheticRunError: Error, CustomStringConvertible {
        case neverEnded(virtualSeconds: Int64)
        public var description: String {
            switch self {
            case let .neverEnded(seconds): "the synthetic run did not end within \(seconds) s of virtual time"
            }
        }
    }

    /// Runs `spec` against a target made outside this package (Integrations/etcd's), with the
    /// same load generator and results as every other target. `makeTarget` gets the callbacks a
    /// target answers through: replies (from any thread) and events for the time series.
    ///
    /// `makeTarget` gets the load generator's event loop too: a target may do its I/O there, so a
    /// request and its reply never cross threads (on a machine whose cores the system under test
    /// shares, each crossing is a wake-up taken from it).
    public static func runExternal(_ spec: WorkloadSpec, recordHistory: Bool = false, progress: (@Sendable (String) -> Void)? = nil,
                                   makeTarget: (_ onReply: @escaping @Sendable (Int, ClientReply) -> Void,
                                                _ onEvent: @escaping @Sendable (String) -> Void,
                                                _ loop: any EventLoop) throws -> any LoadTarget) throws -> RunOutcome {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let driverBox = DriverBox()
        let loop = group.next()
        let target = try makeTarget({ group, reply in driverBox.driver?.deliver(reply, group: group) },
                                    { text in driverBox.driver?.event(text) }, loop)
        return try drive(spec, target: target, loop: loop, driverBox: driverBox, events: [], recordHistory: recordHistory, progress: progress)
    }

    private static func drive(_ spec: WorkloadSpec, target: any LoadTarget, loop: EventLoop, driverBox: DriverBox,
                              events: [(group: Int, event: TimedEvent)], placement: ClientPlacement? = nil, recordHistory: Bool,
                              progress: (@Sendable (String) -> Void)?) throws -> RunOutcome {
        let driver = LoadDriver(spec: spec, loop: loop, cluster: target, events: events, placement: placement, recordHistory: recordHistory,
                                progress: progress)
        driverBox.driver = driver
        target.start()
        let outcome = try driver.run().wait()
        try target.stop().wait()
        return outcome
    }
}

/// Turns microseconds of synthetic work into loop iterations on this machine.
public enum SpinCalibration {
    private static let iterationsPerMicrosecond: Double = {
        // Best of several timings, so a preempted one does not skew it.
        var best = Double.infinity
        for _ in 0..<5 {
            let start = DispatchTime.now().uptimeNanoseconds
            SyntheticWork.spin(iterations: 2_000_000)
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start))
        }
        return 2_000_000 / (best / 1_000)
    }()

    public static func iterations(microseconds: Double) -> Int {
        microseconds <= 0 ? 0 : Int((microseconds * iterationsPerMicrosecond).rounded())
    }
}

/// Lets the cluster's reply callback reach a driver created after it. Written once before the
/// cluster starts, read afterwards.
private final class DriverBox: @unchecked Sendable {
    var driver: LoadDriver?
}
