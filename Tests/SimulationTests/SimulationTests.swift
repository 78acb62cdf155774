import Composition
import Execution
import Foundation
import Paxos
import Primitives
@testable import Simulation
import Workload
import Testing

/// Seeded simulation with faults: every seed must pass agreement, gap-free delivery, equal digests,
/// linearizability and liveness after the heal point. A failure names the command that replays it.
@Suite struct SimulationTests {
    static func failures(mode: LeadershipMode, replicas: Int, seeds: ClosedRange<UInt64>) -> [String] {
        seeds.compactMap { seed in
            let options = SimulationOptions(seed: seed, mode: mode, replicaCount: replicas)
            var simulator = Simulator(options: options)
            let report = simulator.run()
            return report.passed ? nil : "\(report.violations.joined(separator: "; ")) | replay: \(options.replayCommand)"
        }
    }

    // Every seed runs on simulated disks with the seed's own fault mix (syncs, torn writes,
    // aimed crashes, checkpoints and state transfer); a few hundred fit a minute in a debug build.
    @Test(arguments: [(LeadershipMode.multiLeader, 3, 100), (.singleLeader, 3, 100), (.multiLeader, 5, 15), (.singleLeader, 5, 15), (.multiLeader, 7, 3)])
    func everySeedPassesEveryChecker(mode: LeadershipMode, replicas: Int, seeds: Int) {
        let failed = Self.failures(mode: mode, replicas: replicas, seeds: 1...UInt64(seeds))
        #expect(failed.isEmpty, "\(failed.count) failing seed(s):\n\(failed.prefix(5).joined(separator: "\n"))")
    }

    /// Parallel execution must not change what any checker sees.
    @Test(arguments: [SchedulerKind.early, .graph], LeadershipMode.allCases)
    func everySeedPassesWithParallelExecution(scheduler: SchedulerKind, mode: LeadershipMode) {
        let failed = (UInt64(1)...10).compactMap { seed -> String? in
            let options = SimulationOptions(seed: seed, mode: mode, execution: ExecutionConfig(scheduler: scheduler, workers: 2))
            var simulator = Simulator(options: options)
            let report = simulator.run()
            return report.passed ? nil : "\(report.violations.joined(separator: "; ")) | replay: \(options.replayCommand)"
        }
        #expect(failed.isEmpty, "\(failed.prefix(5).joined(separator: "\n"))")
    }

    /// Every composition strategy under faults: per-group checkers, the extension's log, and
    /// linearizability of the composed service.
    @Test(arguments: ["monolithic", "addition-2", "addition-3", "extension-2", "partition-2", "partition-3", "partition-prefix"])
    func everySeedPassesForEveryComposition(name: String) throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../workloads/compositions/\(name).yaml").standardized.path
        let spec = try CompositionSpec.parse(SpecFile.read(path), file: path)
        var steps = 0
        let failed = (UInt64(1)...10).compactMap { seed -> String? in
            var options = SimulationOptions(seed: seed)
            options.composition = spec
            options.compositionPath = path
            var simulator = Simulator(options: options)
            let report = simulator.run()
            steps += report.extensionSteps
            return report.passed ? nil : "\(report.violations.joined(separator: "; ")) | replay: \(options.replayCommand)"
        }
        #expect(failed.isEmpty, "\(failed.prefix(5).joined(separator: "\n"))")
        if spec.extendPutsIntoLog { #expect(steps > 100) }
    }

    /// Seed 297 stalled for ever before the leader clipped its retransmitted skip runs: a no-op
    /// run from slot 40 through 55 of a leader that had since delivered up to 55 (a state
    /// transfer) was ignored by peers compacted past 40, so slot 55 was never decided.
    @Test func aSkipRunReachingBelowThePeersCompactionPointStillGetsDecided() {
        var simulator = Simulator(options: SimulationOptions(seed: 297, mode: .multiLeader))
        let report = simulator.run()
        #expect(report.passed, "\(report.violations)")
        #expect(report.faultLog.contains { $0.contains(" installed ") })
    }

    /// Seed 46 (single-leader) stalled for ever before a leader retired proposals whose slots it
    /// had delivered meanwhile: five batches below its delivered point filled its pipeline, and
    /// compacted peers never acknowledged them.
    @Test func aProposalDeliveredMeanwhileLeavesThePipeline() {
        var simulator = Simulator(options: SimulationOptions(seed: 46, mode: .singleLeader))
        let report = simulator.run()
        #expect(report.passed, "\(report.violations)")
    }

    /// Seed 2040 (single-leader) left a client's `openSession` unanswered for ever before a
    /// state transfer cleared the requests of the slots it skipped from the leader's pending set:
    /// the leader took every retry for a request already under way.
    @Test func aStateTransferForgetsThePendingRequestsOfTheSlotsItCovers() {
        var simulator = Simulator(options: SimulationOptions(seed: 2040, mode: .singleLeader))
        let report = simulator.run()
        #expect(report.passed, "\(report.violations)")
    }

    /// Seed 1447 (single-leader, five replicas) had no leader after the heal point before a
    /// replica whose presumed leader forwarded it a request called the election itself.
    @Test func aForwardFromThePresumedLeaderStartsAnElectionInAGroupOfFive() {
        var simulator = Simulator(options: SimulationOptions(seed: 1447, mode: .singleLeader, replicaCount: 5))
        let report = simulator.run()
        #expect(report.passed, "\(report.violations)")
    }

    @Test func aSeedReplaysExactly() {
        for mode in LeadershipMode.allCases {
            var first = Simulator(options: SimulationOptions(seed: 99, mode: mode))
            var second = Simulator(options: SimulationOptions(seed: 99, mode: mode))
            let one = first.run(), two = second.run()
            #expect(one.faultLog == two.faultLog)
            #expect(one.messagesSent == two.messagesSent)
            #expect(one.slotsDecided == two.slotsDecided)
            #expect(one.simulatedMilliseconds == two.simulatedMilliseconds)
        }
    }

    @Test func faultsReallyHappen() {
        var crashes = 0, partitions = 0
        for seed in UInt64(1)...40 {
            var simulator = Simulator(options: SimulationOptions(seed: seed))
            let log = simulator.run().faultLog
            crashes += log.filter { $0.contains(" crash ") }.count
            partitions += log.filter { $0.contains(" partition ") }.count
        }
        #expect(crashes >= 20)
        #expect(partitions >= 20)
    }

    /// Across a few seeds, the disk faults and what they lead to all happen: crashes that lose
    /// unsynced records, torn writes, crashes aimed after a reply and in phase 1, restarts from a
    /// checkpoint and state transfers.
    @Test func diskFaultsAndStateTransfersReallyHappen() {
        var log: [String] = []
        for seed in UInt64(1)...40 {
            var simulator = Simulator(options: SimulationOptions(seed: seed, mode: seed % 2 == 0 ? .multiLeader : .singleLeader))
            log += simulator.run().faultLog
        }
        #expect(log.filter { $0.contains(" crash ") && !$0.contains(": 0 unsynced") }.count >= 5)
        #expect(log.filter { $0.contains("torn after") }.count >= 1)
        #expect(log.filter { $0.contains("after effects left") }.count >= 3)
        #expect(log.filter { $0.contains("in phase 1") }.count >= 3)
        #expect(log.filter { $0.contains("from the checkpoint at slot") }.count >= 3)
        #expect(log.filter { $0.contains(" installed ") }.count >= 3)
    }

    @Test func withoutFaultsEveryOperationCompletes() {
        var simulator = Simulator(options: SimulationOptions(seed: 5, faults: false))
        let report = simulator.run()
        #expect(report.passed)
        #expect(report.operationsCompleted == 4 * 25)
        // "faults: none", the links and the skip-ahead setting, and the heal: nothing else happened.
        #expect(report.faultLog.count == 3)
    }
}

@Suite struct ExecutionCheckerTests {
    @Test func twoValuesForOneSlotBreakAgreement() {
        var checker = ExecutionChecker(replicaCount: 2)
        checker.delivered(Delivery(slot: 0, value: .noop), by: 0)
        checker.delivered(Delivery(slot: 0, value: .batch([])), by: 1)
        #expect(checker.violations.count == 1)
        #expect(checker.violations[0].hasPrefix("agreement: slot 0"))
    }

    @Test func skippingASlotIsAGap() {
        var checker = ExecutionChecker(replicaCount: 1)
        checker.delivered(Delivery(slot: 0, value: .noop), by: 0)
        checker.delivered(Delivery(slot: 2, value: .noop), by: 0)
        #expect(checker.violations == ["gap: r0 delivered slot 2 when slot 1 was next"])
    }

    @Test func aRestartedReplicaStartsOverWithoutAGap() {
        var checker = ExecutionChecker(replicaCount: 1)
        checker.delivered(Delivery(slot: 0, value: .noop), by: 0)
        checker.restarted(replica: 0, fromSlot: 0)
        checker.delivered(Delivery(slot: 0, value: .noop), by: 0)
        #expect(checker.violations.isEmpty)
    }

    @Test func aReplicaRestartedFromACheckpointOrAStateTransferContinuesFromItsSlot() {
        var checker = ExecutionChecker(replicaCount: 1)
        checker.delivered(Delivery(slot: 0, value: .noop), by: 0)
        checker.restarted(replica: 0, fromSlot: 5)
        checker.delivered(Delivery(slot: 5, value: .noop), by: 0)
        checker.installed(slot: 9, by: 0)
        checker.delivered(Delivery(slot: 9, value: .noop), by: 0)
        #expect(checker.violations.isEmpty)
        checker.installed(slot: 4, by: 0)
        #expect(checker.violations == ["state transfer: r0 installed a checkpoint at slot 4 after delivering up to slot 10"])
    }

    @Test func differentDigestsAtOneSlotAreReported() {
        var checker = ExecutionChecker(replicaCount: 2)
        checker.digest(Digest(of: [1]), atSlot: 7, by: 0)
        checker.digest(Digest(of: [1]), atSlot: 7, by: 1)
        #expect(checker.violations.isEmpty)
        checker.digest(Digest(of: [2]), atSlot: 7, by: 1)
        #expect(checker.violations.count == 1)
    }
}
