import Foundation
import NIOCore
import NIOPosix
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
        config.deliveryWindowSlotsMax = max(config.deliveryWindowSlotsMax, UInt64(spec.group.pipelineDepthMax * spec.group.replicas * 4))
        config.requestQueueMax = max(config.requestQueueMax, spec.group.batchCommandsMax)
        // Real time on a shared 2-core machine: be patient before suspecting a busy peer.
        config.heartbeatIntervalMicroseconds = 20_000
        config.suspectTimeoutMicroseconds = 200_000
        config.retransmitTimeoutMicroseconds = 50_000
        try config.validate()
        return config
    }

    /// Runs `spec` to completion. `progress` gets a line about once a second.
    public static func run(_ spec: WorkloadSpec, recordHistory: Bool = false,
                           progress: (@Sendable (String) -> Void)? = nil) throws -> RunOutcome {
        let config = try paxosConfig(for: spec)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: spec.group.threads)
        defer { try? group.syncShutdownGracefully() }
        let loops = Array(group.makeIterator())
        // The load generator gets the last loop; replicas are spread from the first.
        let clientLoop = loops[loops.count - 1]
        let driverBox = DriverBox()
        let execution = ExecutionConfig(scheduler: SchedulerKind(rawValue: spec.group.scheduler)!, workers: spec.group.workers,
                                        spinIterationsPerCommand: SpinCalibration.iterations(microseconds: spec.group.costMicroseconds))
        let cluster = InProcessCluster(config: config, execution: execution, loops: loops, onReply: { reply in driverBox.driver?.deliver(reply) })
        let driver = LoadDriver(spec: spec, loop: clientLoop, cluster: cluster, recordHistory: recordHistory, progress: progress)
        driverBox.driver = driver
        cluster.start()
        let outcome = try driver.run().wait()
        try cluster.stop().wait()
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
