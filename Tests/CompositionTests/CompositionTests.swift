import Composition
import Foundation
import Primitives
import Services
import Testing
import Workload

private func errors(_ text: String) -> [String] {
    do {
        _ = try CompositionSpec.parse(text, file: "c.yaml")
        return []
    } catch {
        return error.errors.map(\.description)
    }
}

@Suite struct CompositionSpecTests {
    @Test func everyExampleCompositionLoadsWithItsStrategy() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../workloads/compositions").standardized
        let expected = ["monolithic": "monolithic", "addition-2": "addition", "addition-3": "addition", "extension-2": "extension",
                        "partition-2": "partition", "partition-3": "partition", "partition-prefix": "partition"]
        for (name, strategy) in expected {
            let path = folder.appendingPathComponent("\(name).yaml").path
            let spec = try CompositionSpec.parse(SpecFile.read(path), file: path)
            #expect(spec.strategy == strategy, "\(name)")
        }
    }

    // One test per load-time rule, asserting its message: file, line, column, field and rule.

    @Test func anOperationNoGroupServesIsRefused() {
        #expect(errors("groups:\n  - {name: a, services: [kv, lock]}\n")
            == ["c.yaml:2:3: groups: rule: every operation needs a group, but log.append, log.retrieve, log.truncate are served by no group"])
    }

    @Test func aGroupWithFewerThan2fPlus1ReplicasIsRefused() {
        #expect(errors("groups:\n  - {name: a, replicas: 3, tolerate_failures: 2, services: [kv, lock, log]}\n")
            == ["c.yaml:2:25: groups[0].replicas: rule: a group tolerating f = 2 failures needs 2f + 1 = 5 replicas, it has 3"])
        #expect(errors("groups:\n  - {name: a, replicas: 4, services: [kv, lock, log]}\n")
            == ["c.yaml:2:25: groups[0].replicas: rule: replicas must be odd (n = 2f + 1), got 4"])
    }

    @Test func theSameStateInTwoGroupsIsRefused() {
        #expect(errors("groups:\n  - {name: a, services: [kv, lock, log]}\n  - {name: b, services: [kv]}\n")
            == ["c.yaml:2:3: groups: rule: one state, one group: kv is served by a, b without a partition rule for it"])
    }

    @Test func overlappingRangesAreRefused() {
        let text = """
            groups:
              - {name: a, services: [kv, lock, log]}
              - {name: b, services: [kv]}
            partition:
              service: kv
              by: range
              ranges:
                - {group: a, below: "m"}
                - {group: b, below: "c"}
                - {group: a}
            """
        #expect(errors(text) == ["c.yaml:9:25: partition.ranges[1].below: rule: ranges overlap: \"c\" is not above the previous bound \"m\""])
    }

    @Test func aRangePartitionLeavingKeysUncoveredIsRefused() {
        let text = """
            groups:
              - {name: a, services: [kv, lock, log]}
              - {name: b, services: [kv]}
            partition:
              service: kv
              by: range
              ranges:
                - {group: a, below: "m"}
                - {group: b, below: "t"}
            """
        #expect(errors(text) == ["c.yaml:9:25: partition.ranges[1].below: rule: keys from \"t\" up are uncovered; the last range must have no upper bound"])
    }

    @Test func overlappingPrefixesAreRefused() {
        let text = """
            groups:
              - {name: a, services: [kv, lock, log]}
              - {name: b, services: [kv]}
            partition:
              service: kv
              by: prefix
              prefixes: {a: ["user"], b: ["us"]}
              default: a
            """
        #expect(errors(text) == ["c.yaml:7:31: partition.prefixes.b[0]: rule: partitions overlap: prefix \"us\" and prefix \"user\" (of a) both match some keys"])
    }

    @Test func aPrefixPartitionWithoutADefaultLeavesKeysUncovered() {
        let text = """
            groups:
              - {name: a, services: [kv, lock, log]}
              - {name: b, services: [kv]}
            partition:
              service: kv
              by: prefix
              prefixes: {a: ["a"], b: ["b"]}
            """
        #expect(errors(text) == ["c.yaml:6:7: partition.default: rule: keys matching no prefix are uncovered; name a default group"])
    }

    @Test func aHashPartitionListingAGroupTwiceOverlaps() {
        let text = """
            groups:
              - {name: a, services: [kv, lock, log]}
              - {name: b, services: [kv]}
            partition: {service: kv, by: hash, groups: [a, b, a]}
            """
        #expect(errors(text) == ["c.yaml:4:51: partition.groups[2]: rule: partitions overlap: a is listed twice"])
    }

    @Test func theLogCannotBePartitioned() {
        let text = """
            groups:
              - {name: a, services: [kv, lock, log]}
              - {name: b, services: [log]}
            partition: {service: log, by: hash, groups: [a, b]}
            """
        #expect(errors(text).contains("c.yaml:4:22: partition.service: rule: the log is one object (an append's index depends on all earlier ones) and cannot be partitioned"))
    }

    @Test func onlyPutIntoAppendExtends() {
        let text = """
            groups:
              - {name: a, services: [kv, lock, log]}
            extend:
              - {operation: lock.acquire, into: log.append}
            """
        #expect(errors(text) == ["c.yaml:4:5: extend[0]: rule: only kv.put into log.append is supported, got lock.acquire into log.append"])
    }
}

@Suite struct RouterTests {
    @Test func commandsGoToTheGroupServingTheirService() throws {
        let spec = try CompositionSpec.parse("""
            groups:
              - {name: store, services: [kv, lock]}
              - {name: journal, services: [log]}
            extend: [{operation: kv.put, into: log.append}]
            """, file: "c.yaml")
        let router = Router(spec: spec)
        #expect(router.group(for: .kvGet(key: "x")) == 0)
        #expect(router.group(for: .lockAcquire(name: "x")) == 0)
        #expect(router.group(for: .logAppend(entry: "x")) == 1)
        #expect(router.extensionOrigin == 0 && router.extensionTarget == 1)
    }

    @Test func partitionRulesSplitTheKeySpace() {
        #expect(Router.group(of: "apple", rule: .range(groups: [0, 1, 2], bounds: ["b", "m"])) == 0)
        #expect(Router.group(of: "kiwi", rule: .range(groups: [0, 1, 2], bounds: ["b", "m"])) == 1)
        #expect(Router.group(of: "melon", rule: .range(groups: [0, 1, 2], bounds: ["b", "m"])) == 2)
        #expect(Router.group(of: "user:1", rule: .prefix(prefixes: [("user:", 1)], defaultGroup: 0)) == 1)
        #expect(Router.group(of: "other", rule: .prefix(prefixes: [("user:", 1)], defaultGroup: 0)) == 0)
        var counts = [0, 0, 0]
        for index in 0..<3_000 { counts[Router.group(of: "k\(index)", rule: .hash(groups: [0, 1, 2]))] += 1 }
        #expect(counts.allSatisfy { abs($0 - 1_000) < 150 })
    }
}

@Suite struct ExtensionForwarderTests {
    @Test func stepsAreSentInOrderAndResentFromTheFirstUnapplied() {
        var forwarder = ExtensionForwarder(origin: 0, windowSteps: 3, resendNanoseconds: 100)
        for index in UInt64(1)...5 { forwarder.produced(index: index, entry: "e\(index)") }
        forwarder.produced(index: 9, entry: "out of order is ignored")
        #expect(forwarder.due(nowNanoseconds: 1_000).map(\.sequence) == [1, 2, 3])
        #expect(forwarder.due(nowNanoseconds: 1_010).isEmpty)
        forwarder.acknowledged(.extensionStep(appendedAt: 7, applied: 2))
        #expect(forwarder.due(nowNanoseconds: 1_020).map(\.sequence) == [4, 5])
        // Step 3 was lost: after the timeout everything from the first unapplied step goes again.
        #expect(forwarder.due(nowNanoseconds: 1_200).map(\.sequence) == [3, 4, 5])
        forwarder.acknowledged(.extensionStep(appendedAt: nil, applied: 5))
        #expect(forwarder.isDrained)
    }

    @Test func aReplicasForwarderKeepsOnlyUnappliedSteps() {
        var forwarder = ExtensionForwarder(origin: 1, windowSteps: 8, resendNanoseconds: 100, keepsApplied: false)
        for index in UInt64(1)...5 { forwarder.produced(index: index, entry: "e\(index)") }
        #expect(forwarder.due(nowNanoseconds: 1_000).map(\.sequence) == [1, 2, 3, 4, 5])
        forwarder.acknowledged(applied: 3)
        #expect(forwarder.steps == ["e4", "e5"] && forwarder.firstHeld == 4)
        forwarder.acknowledged(applied: 5)
        #expect(forwarder.steps.isEmpty && forwarder.isDrained)
        forwarder.produced(index: 6, entry: "e6")
        #expect(forwarder.due(nowNanoseconds: 1_010).map(\.sequence) == [6])
    }

    @Test func aRestartedReplicaStartsAtTheFirstStepItProducesAndLeavesEarlierOnesToOthers() {
        var forwarder = ExtensionForwarder(origin: 0, windowSteps: 8, resendNanoseconds: 100, keepsApplied: false)
        // Restarted from a checkpoint after step 40, it hears how far the log got before it
        // produced anything; its first step is then 41.
        forwarder.acknowledged(applied: 36)
        #expect(forwarder.steps.isEmpty && forwarder.isDrained)
        forwarder.produced(index: 41, entry: "e41")
        forwarder.produced(index: 42, entry: "e42")
        #expect(forwarder.firstHeld == 41 && forwarder.producedCount == 42)
        // The log holds 38: steps 39 and 40 come from the replicas that hold them; this one offers
        // what it has, and the log refuses it until they arrive.
        forwarder.acknowledged(applied: 38)
        #expect(forwarder.due(nowNanoseconds: 1_000).map(\.sequence) == [41, 42])
        forwarder.acknowledged(applied: 42)
        #expect(forwarder.isDrained && forwarder.steps.isEmpty)
    }

    @Test func aBackupProbesUntilTheLogStallsThenForwards() {
        var backup = ExtensionForwarder(origin: 0, windowSteps: 8, resendNanoseconds: 100, keepsApplied: false, isBackup: true)
        for index in UInt64(1)...3 { backup.produced(index: index, entry: "e\(index)") }
        // One probe per interval while the log keeps up (the primary forwards).
        #expect(backup.due(nowNanoseconds: 1_000).map(\.sequence) == [1])
        #expect(backup.due(nowNanoseconds: 1_050).isEmpty)
        backup.acknowledged(applied: 3)
        for index in UInt64(4)...6 { backup.produced(index: index, entry: "e\(index)") }
        #expect(backup.due(nowNanoseconds: 1_100).map(\.sequence) == [4])
        // Only the probe moved the log: steps held at the last probe are still unapplied, so the
        // primary is gone and the backup forwards them all.
        backup.acknowledged(applied: 4)
        #expect(backup.due(nowNanoseconds: 1_200).map(\.sequence) == [5, 6])
        backup.acknowledged(applied: 6)
        #expect(backup.due(nowNanoseconds: 1_300).isEmpty)
        // Drained, it is passive again: the next step is probed.
        backup.produced(index: 7, entry: "e7")
        backup.produced(index: 8, entry: "e8")
        #expect(backup.due(nowNanoseconds: 1_310).map(\.sequence) == [7])
    }

    @Test func anExtensionStepIsReadBackFromItsLogEntry() {
        let step = ExtensionStep(origin: 2, index: 17, key: "k9", value: "v=1 x")
        #expect(step.entry == "g2#17 put k9=v=1 x")
        #expect(ExtensionStep.parse(step.entry) == step)
        #expect(step.entry.hasPrefix(ExtensionStep.prefix(origin: 2)))
        #expect(ExtensionStep.parse("a client's entry") == nil)
        #expect(ExtensionStep.parse("g1#x put k=v") == nil)
    }

    @Test func theLogAppliesEachStepOnceAndInOrder() {
        var log = ReplicatedLog()
        let step = { (index: UInt64) in Command.logAppendFrom(origin: 3, index: index, entry: "s\(index)") }
        #expect(log.execute(step(2), retrieveLimit: 10) == .extensionStep(appendedAt: nil, applied: 0))
        #expect(log.execute(step(1), retrieveLimit: 10) == .extensionStep(appendedAt: 0, applied: 1))
        #expect(log.execute(step(1), retrieveLimit: 10) == .extensionStep(appendedAt: nil, applied: 1))
        #expect(log.execute(step(2), retrieveLimit: 10) == .extensionStep(appendedAt: 1, applied: 2))
        #expect(Array(log.entries) == ["s1", "s2"])
    }
}
