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
        var config = PaxosConfig.preset(replicaCount: replicaCount, mode: mode, batchCommandsMax: batchCommandsMax,
                                        pipelineDepthMax: pipelineDepthMax, clock: .simulated)
        config.skipAheadPercent = skipAheadPercent
        return config
    }

    /// How far owners skip ahead (multi-leader), drawn from the seed (its own stream): off, the
    /// default, or far beyond it. The simulator's light load rarely makes the default reach two
    /// slots ahead; the larger settings make most seeds race skips ahead against revocations,
    /// restarts and state transfer.
    public var skipAheadPercent: Int {
        var random = SplitMix64(seed: seed ^ 0x5C19_A4EA_D000_0000)
        return [0, 100, 400, 1_000][Int(random.next() % 4)]
    }

    /// How often replicas checkpoint and compact, drawn from the seed (its own stream, so the rest
    /// of a seed's run does not depend on it): never, or every 4, 16 or 64 delivered slots. Short
    /// intervals make a restarted replica fall behind its peers' compaction point, so seeds
    /// exercise recovery from checkpoints and state transfer, not only replay from slot 0.
    public var checkpointIntervalSlots: UInt64 {
        var random = SplitMix64(seed: seed ^ 0xC4EC_4B01_4700_0000)
        return [0, 4, 16, 64][Int(random.next() % 4)]
    }

    /// Whether links are wide-area (4 ms more one way), drawn from the seed (its own stream), in a
    /// quarter of the seeds: one-way delays of two ticks or more are where owners skip ahead
    /// (`PaxosConfig.skipAheadPercent`), which local links never reach.
    public var wideAreaLinks: Bool {
        var random = SplitMix64(seed: seed ^ 0x3A7E_0DE1_A900_0000)
        return random.next() % 4 == 0
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

/// The faults one seed injects, drawn from it. Swarm testing: each seed enables its own subset of
/// the fault kinds, each with its own rate, so that no fault hides another in every run (a seed
/// without loss lets leader changes happen for other reasons; a seed with only disk faults
/// crashes where records are unsynced). `description` opens the fault log.
struct FaultProfile: Sendable {
    var delayMicrosecondsMin: UInt64
    var delayMicrosecondsMax: UInt64
    /// Chance that a message takes a long detour (reordering far beyond the usual spread).
    var slowProbability = 0.0
    var slowDelayMicrosecondsMax: UInt64
    var lossProbability = 0.0
    var duplicateProbability = 0.0
    /// Crashes and partitions scheduled at random times of the fault phase.
    var crashes = 0
    var partitions = 0
    /// Links cut in one direction for a while.
    var oneWayCuts = 0
    var disk = DiskProfile()
    /// Chance, each time effects leave a replica while it holds unsynced records, that it
    /// crashes at once (before the next sync): where a reply sent too early would be a lie.
    var crashAfterReplyProbability = 0.0
    /// Chance that a replica receiving a `prepare` or a `promise` crashes right after handling
    /// it (a competing leader's phase 1: where a lost promise breaks agreement).
    var crashInPhaseOneProbability = 0.0
    /// Targeted crashes (the two above) per run, at most.
    var targetedCrashesMax = 0
    private(set) var description = "faults: none"

    init(random: inout SplitMix64, faults: Bool) {
        delayMicrosecondsMin = 50 + random.next() % 200
        delayMicrosecondsMax = delayMicrosecondsMin + 200 + random.next() % 2_000
        slowDelayMicrosecondsMax = 20_000 + random.next() % 60_000
        // Draw every rate whether or not its fault is on, so enabling one fault kind does not
        // shift the draws of the others.
        let enabled = (0..<11).map { _ in random.next() % 100 }
        let rates = (0..<11).map { _ in random.unit() }
        let counts = (0..<5).map { _ in random.next() }
        disk.syncMicrosecondsMin = 50 + counts[3] % 150
        disk.syncMicrosecondsMax = disk.syncMicrosecondsMin + 100 + counts[3] % 900
        guard faults else { return }
        var kinds: [String] = []
        if enabled[0] < 50 {
            lossProbability = rates[0] * 0.08
            kinds.append("loss \(Self.percent(lossProbability))")
        }
        if enabled[1] < 50 {
            duplicateProbability = rates[1] * 0.05
            kinds.append("duplication \(Self.percent(duplicateProbability))")
        }
        if enabled[2] < 50 {
            slowProbability = rates[2] * 0.05
            kinds.append("slow links \(Self.percent(slowProbability)) up to \(slowDelayMicrosecondsMax / 1_000) ms")
        }
        if enabled[3] < 50 {
            partitions = 1 + Int(counts[0] % 3)
            kinds.append("partitions \(partitions)")
        }
        if enabled[10] < 50 {
            oneWayCuts = 1 + Int(counts[4] % 4)
            kinds.append("one-way link cuts \(oneWayCuts)")
        }
        if enabled[4] < 60 {
            crashes = 1 + Int(counts[1] % 4)
            kinds.append("crashes \(crashes)")
        }
        if enabled[5] < 50 {
            disk.slowSyncProbability = 0.01 + rates[5] * 0.1
            disk.slowSyncMicrosecondsMax = 20_000 + counts[2] % 180_000
            kinds.append("slow syncs \(Self.percent(disk.slowSyncProbability)) up to \(disk.slowSyncMicrosecondsMax / 1_000) ms")
        }
        if enabled[6] < 50 {
            disk.tornWriteProbability = 0.3 + rates[6] * 0.7
            kinds.append("torn writes \(Self.percent(disk.tornWriteProbability)) of crashes")
        }
        if enabled[7] < 50 {
            disk.unsyncedSurvivalProbability = 0.2 + rates[7] * 0.8
            kinds.append("unsynced records surviving \(Self.percent(disk.unsyncedSurvivalProbability)) of crashes")
        }
        if enabled[8] < 50 {
            crashAfterReplyProbability = 0.002 + rates[8] * 0.05
            kinds.append("crash after a reply \(Self.percent(crashAfterReplyProbability))")
        }
        if enabled[9] < 50 {
            crashInPhaseOneProbability = 0.05 + rates[9] * 0.5
            kinds.append("crash in phase 1 \(Self.percent(crashInPhaseOneProbability))")
        }
        targetedCrashesMax = crashAfterReplyProbability + crashInPhaseOneProbability > 0 ? 1 + Int(counts[2] % 5) : 0
        if targetedCrashesMax > 0 { kinds.append("at most \(targetedCrashesMax) targeted crashes") }
        description = "faults: " + (kinds.isEmpty ? "none drawn" : kinds.joined(separator: ", "))
            + "; syncs \(disk.syncMicrosecondsMin)-\(disk.syncMicrosecondsMax) us"
    }

    private static func percent(_ probability: Double) -> String {
        let tenths = Int((probability * 1_000).rounded())
        return "\(tenths / 10).\(tenths % 10)%"
    }
}
