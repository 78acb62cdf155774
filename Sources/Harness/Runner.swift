import Foundation
import NIOCore
import NIOPosix
import Composition
import Execution
import Paxos
import Workload

/// Runs a workload on an in-process cluster with the real clock.
public enum WorkloadRunner {
    /// The Paxos configuration a workload asks for (nil when unreplicated).
    public static func paxosConfig(for spec: WorkloadSpec) throws(ConfigError) -> PaxosConfig? {
        let mode: LeadershipMode
        switch spec.group.replication {
        case .unreplicated: return nil
        case .multiLeader: mode = .multiLeader
        case .singleLeader: mode = .singleLeader
        }
        var config = PaxosConfig(replicaCount: spec.group.replicas, mode: mode)
        config.batchCommandsMax = spec.group.batchCommandsMax
        config.batchBytesMax = spec.group.batchBytesMax
        config.batchDelayMicrosecondsMax = spec.group.batchDelayMicroseconds
        config.pipelineDepthMax = spec.group.pipelineDepthMax
        config.batchHoldInflightMin = spec.group.batchHoldInflightMin
        config.batchHoldMicrosecondsMax = spec.group.batchHoldMicroseconds
        config.deliveryWindowSlotsMax = max(config.deliveryWindowSlotsMax, UInt64(spec.group.pipelineDepthMax * spec.group.replicas * 4))
        config.requestQueueMax = max(config.requestQueueMax, spec.group.batchCommandsMax)
        // Real time on a shared 2-core machine: be patient before suspecting a busy peer.
        config.heartbeatIntervalMicroseconds = 20_000
        config.suspectTimeoutMicroseconds = 200_000
        config.retransmitTimeoutMicroseconds = 50_000
        try config.validate()
        return config
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

    /// Runs `spec` to completion. `progress` gets a line about once a second.
    public static func run(_ spec: WorkloadSpec, recordHistory: Bool = false,
                           progress: (@Sendable (String) -> Void)? = nil) throws -> RunOutcome {
        let topology = try topology(for: spec)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: spec.group.threads)
        defer { try? group.syncShutdownGracefully() }
        let loops = Array(group.makeIterator())
        // The load generator gets the last loop; replicas are spread from the first.
        let clientLoop = loops[loops.count - 1]
        let driverBox = DriverBox()
        let execution = ExecutionConfig(scheduler: SchedulerKind(rawValue: spec.group.scheduler)!, workers: spec.group.workers,
                                        spinIterationsPerCommand: SpinCalibration.iterations(microseconds: spec.group.costMicroseconds))
        let cluster = ComposedCluster(spec: topology.composition, configs: topology.configs, execution: execution, loops: loops,
                                      onReply: { group, reply in driverBox.driver?.deliver(reply, group: group) },
                                      onExtensionSteps: { steps in driverBox.driver?.extensionSteps(steps) },
                                      onExtensionAppended: { appended in driverBox.driver?.extensionsAppended(appended) })
        return try drive(spec, target: cluster, loop: clientLoop, driverBox: driverBox, events: topology.events, recordHistory: recordHistory,
                         progress: progress)
    }

    /// Runs `spec` against a synthetic target that completes `capacityOperationsPerSecond`
    /// requests a second (see `SyntheticTarget`), on the real clock.
    public static func runSynthetic(_ spec: WorkloadSpec, capacityOperationsPerSecond: Double,
                                    progress: (@Sendable (String) -> Void)? = nil) throws -> RunOutcome {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { try? group.syncShutdownGracefully() }
        let loops = Array(group.makeIterator())
        let driverBox = DriverBox()
        let target = SyntheticTarget(capacityOperationsPerSecond: capacityOperationsPerSecond, loop: loops[0],
                                     onReply: { group, reply in driverBox.driver?.deliver(reply, group: group) })
        return try drive(spec, target: target, loop: loops[1], driverBox: driverBox, events: spec.events.map { (0, $0) },
                         recordHistory: false, progress: progress)
    }

    private static func drive(_ spec: WorkloadSpec, target: any LoadTarget, loop: EventLoop, driverBox: DriverBox,
                              events: [(group: Int, event: TimedEvent)], recordHistory: Bool,
                              progress: (@Sendable (String) -> Void)?) throws -> RunOutcome {
        let driver = LoadDriver(spec: spec, loop: loop, cluster: target, events: events, recordHistory: recordHistory, progress: progress)
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
