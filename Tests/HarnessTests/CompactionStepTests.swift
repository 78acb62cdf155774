import Paxos
import Primitives
import Runtime
import Services
import Testing

/// A stored checkpoint lets the core forget the slots it covers: at once, or a step per input
/// (`compactionStepSlots`), which keeps the freeing off any one input of a loop that serves clients.
@Suite struct CompactionStepTests {
    /// A one-replica group that has delivered a little over 100 slots and claimed a checkpoint at
    /// about slot 100, which its driver has to encode.
    private func nodeWithPendingCheckpoint(stepSlots: UInt64) throws -> (ReplicaNode<MemoryStorage>, PendingCheckpoint) {
        var config = PaxosConfig(replicaCount: 1, mode: .multiLeader)
        config.batchCommandsMax = 4
        var node = ReplicaNode(core: PaxosReplica(config: config, id: ReplicaID(0), now: .zero), storage: MemoryStorage(),
                               checkpointIntervalSlots: 100)
        node.encodesCheckpointsInline = false
        node.compactionStepSlots = stepSlots
        var session: ClientID?
        let opened = node.clientRequest(Request(client: ClientID(7), sequence: 1, command: .openSession), now: .zero)
        for reply in opened.effects(durablePosition: node.storage.durablePosition).replies {
            if case let .session(id) = reply.reply { session = id }
        }
        let id = try #require(session)
        var pending: PendingCheckpoint?
        for sequence in UInt64(1)...110 {
            let output = node.clientRequest(Request(client: id, sequence: sequence, command: .kvPut(key: "k\(sequence % 5)", value: "v\(sequence)")),
                                            now: Instant(nanoseconds: sequence * 1_000))
            if let claimed = output.pendingCheckpoint { pending = claimed }
        }
        return (node, try #require(pending))
    }

    @Test func withoutAStepTheCoreForgetsEveryCoveredSlotWhenTheCheckpointIsStored() throws {
        var (node, pending) = try nodeWithPendingCheckpoint(stepSlots: 0)
        #expect(pending.slot >= 100)
        node.checkpointEncoded(pending.encode())
        #expect(node.storage.newestCheckpoint?.slot == pending.slot)
        #expect(node.core.compactedBelow == pending.slot)
    }

    @Test func withAStepTheCoreForgetsAtMostThatManySlotsPerInputUntilItReachesTheCheckpoint() throws {
        var (node, pending) = try nodeWithPendingCheckpoint(stepSlots: 16)
        node.checkpointEncoded(pending.encode())
        // The checkpoint is stored at once (the disk's records before it may go); only the
        // core's memory is let go of gradually.
        #expect(node.storage.newestCheckpoint?.slot == pending.slot)
        #expect(node.core.compactedBelow == 16)
        var now = Instant(nanoseconds: 1_000_000)
        var seen = [node.core.compactedBelow]
        while node.core.compactedBelow < pending.slot, seen.count < 100 {
            now = Instant(nanoseconds: now.nanoseconds + 1_000)
            _ = node.tick(now: now)
            seen.append(node.core.compactedBelow)
        }
        #expect(seen.last == pending.slot)
        for (before, after) in zip(seen, seen.dropFirst()) { #expect(after > before && after - before <= 16) }
        // Nothing below the checkpoint is held, and nothing at or after it was forgotten.
        #expect(node.core.deliveredBelow > pending.slot)
        now = Instant(nanoseconds: now.nanoseconds + 1_000)
        _ = node.tick(now: now)
        #expect(node.core.compactedBelow == pending.slot)
    }
}
