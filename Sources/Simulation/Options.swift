import Composition
import Execution
import Paxos
import Primitives

/// Everything a simulated run depends on. Only `seed` and the shape fields are chosen by the
/// user; network and fault parameters are drawn from the seed, so one number replays a run.
public struct SimulationOptions: Hashable, Sendable {
    public var seed: UInt64
    public var mode: LeadershipMode
    public var replicaCount: Int
    public var clientCount: Int
    public var operationsPerClient: Int
    /// Inject crashes, partitions, loss and duplication before the heal point.
    public var faults: Bool
    /// Simulated time during which faults happen, in milliseconds.
    public var faultPhaseMilliseconds: UInt64
    /// Simulated time allowed after the heal point for every client to finish, in milliseconds.
    public var livenessBudgetMilliseconds: UInt64
    /// Batch bound handed to the core.
    public var batchCommandsMax: Int
    /// Pipeline bound handed to the core.
    public var pipelineDepthMax: Int
    /// How replicas execute decided commands (parallel schedulers must not change any result).
    public var execution: ExecutionConfig
    /// Several groups composed by a spec; nil runs one group of `replicaCount` replicas in `mode`.
    public var composition: CompositionSpec?
    /// Where `composition` was read from, for the replay command.
    public var compositionPath: String?

    public init(seed: UInt64, mode: LeadershipMode = .multiLeader, replicaCount: Int = 3, clientCount: Int = 4,
                operationsPerClient: Int = 25, faults: Bool = true, faultPhaseMilliseconds: UInt64 = 1_500,
                livenessBudgetMilliseconds: UInt64 = 30_000, batchCommandsMax: Int = 8, pipelineDepthMax: Int = 4,
                execution: ExecutionConfig = ExecutionConfig()) {
        self.seed = seed
        self.mode = mode
        self.replicaCount = replicaCount
        self.clientCount = clientCount
        self.operationsPerClient = operationsPerClient
        self.faults = faults
        self.faultPhaseMilliseconds = faultPhaseMilliseconds
        self.livenessBudgetMilliseconds = livenessBudgetMilliseconds
        self.batchCommandsMax = batchCommandsMax
        self.pipelineDepthMax = pipelineDepthMax
        self.execution = execution
    }

    /// The groups to run: the composition's, or one group in `mode`.
    public var groupSpec: CompositionSpec {
        if let composition { return composition }
        let group = CompositionSpec.Group(name: "group", replicas: replicaCount, toleratedFailures: (replicaCount - 1) / 2, mode: mode,
                                          services: [.kv, .lock, .log], batchCommandsMax: batchCommandsMax, pipelineDepthMax: pipelineDepthMax)
        return CompositionSpec(name: "monolithic", groups: [group], extendPutsIntoLog: false, partition: nil)
    }

    /// The core's configuration in simulated time.
    public var paxosConfig: PaxosConfig {
        var config = PaxosConfig(replicaCount: replicaCount, mode: mode)
        config.batchCommandsMax = batchCommandsMax
        config.pipelineDepthMax = pipelineDepthMax
        config.deliveryWindowSlotsMax = UInt64(max(256, pipelineDepthMax * replicaCount * 4))
        config.heartbeatIntervalMicroseconds = 10_000
        config.suspectTimeoutMicroseconds = 50_000
        config.retransmitTimeoutMicroseconds = 15_000
        config.catchUpSlotsMax = 256
        return config
    }

    /// How often replicas checkpoint and compact, drawn from the seed (its own stream, so the rest
    /// of a seed's run does not depend on it): never, or every 4, 16 or 64 delivered slots. Short
    /// intervals make a restarted replica fall behind its peers' compaction point, so seeds
    /// exercise recovery from checkpoints and state transfer, not only replay from slot 0.
    public var checkpointIntervalSlots: UInt64 {
        var random = SplitMix64(seed: seed ^ 0xC4EC_4B01_4700_0000)
        return [0, 4, 16, 64][Int(random.next() % 4)]
    }

    /// The `csmr sim` command that replays this run.
    public var replayCommand: String {
        var command = "csmr sim --seed \(seed) --protocol \(mode == .multiLeader ? "multi" : "single") --replicas \(replicaCount)"
        command += " --clients \(clientCount) --operations \(operationsPerClient)"
        if !faults { command += " --no-faults" }
        if batchCommandsMax != 8 { command += " --batch \(batchCommandsMax)" }
        if pipelineDepthMax != 4 { command += " --pipeline \(pipelineDepthMax)" }
        if execution.scheduler != .sequential { command += " --scheduler \(execution.scheduler.rawValue) --workers \(execution.workers)" }
        if let compositionPath { command += " --composition \(compositionPath)" }
        return command
    }
}

/// Network and fault parameters drawn from the seed.
struct NetworkProfile: Sendable {
    var delayMicrosecondsMin: UInt64
    var delayMicrosecondsMax: UInt64
    /// Chance that a message takes a long detour (reordering far beyond the usual spread).
    var slowProbability: Double
    var slowDelayMicrosecondsMax: UInt64
    var lossProbability: Double
    var duplicateProbability: Double
    var crashes: Int
    var partitions: Int

    init(random: inout SplitMix64, faults: Bool) {
        delayMicrosecondsMin = 50 + random.next() % 200
        delayMicrosecondsMax = delayMicrosecondsMin + 200 + random.next() % 2_000
        slowProbability = faults ? random.unit() * 0.05 : 0
        slowDelayMicrosecondsMax = 20_000 + random.next() % 60_000
        lossProbability = faults ? random.unit() * 0.08 : 0
        duplicateProbability = faults ? random.unit() * 0.05 : 0
        crashes = faults ? Int(random.next() % 4) : 0
        partitions = faults ? Int(random.next() % 3) : 0
    }
}
