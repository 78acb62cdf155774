import Paxos
import Primitives
import Runtime
import Services
import Testing

/// Checkpoints come due by delivered client commands (`checkpointIntervalCommands`, and at least
/// four per item of the state at the last checkpoint) or by slots (`checkpointIntervalSlots`),
/// whichever first. Commands are what both protocols deliver alike; slots are not (multi-leader's
/// include skips, and its leaders cut smaller batches).
@Suite struct CheckpointIntervalTests {
    /// Runs 100 puts in batches of four (one slot each, plus the session's slot) through a
    /// one-replica group and returns the slots at which checkpoints were claimed.
    private func claims(commands: UInt64, slots: UInt64) throws -> (claimed: [UInt64], delivered: UInt64) {
        var config = PaxosConfig(replicaCount: 1, mode: .multiLeader)
        config.batchCommandsMax = 4
        // Requests wait for a full batch (or this long): four arriving together share a slot.
        config.batchDelayMicrosecondsMax = 10_000
        var node = ReplicaNode(core: PaxosReplica(config: config, id: ReplicaID(0), now: .zero), storage: MemoryStorage(),
                               checkpointIntervalSlots: slots)
        node.checkpointIntervalCommands = commands
        var claimed: [UInt64] = []
        var session: ClientID?
        var now = Instant(nanoseconds: 1_000)
        let opened = node.clientRequest(Request(client: ClientID(7), sequence: 1, command: .openSession), now: now)
        // The session's request waits alone for the batch delay: a tick after it proposes it.
        let ticked = node.tick(now: Instant(nanoseconds: 20_000_000))
        for output in [opened, ticked] {
            for reply in output.effects(durablePosition: node.storage.durablePosition).replies {
                if case let .session(id) = reply.reply { session = id }
            }
        }
        let id = try #require(session)
        now = Instant(nanoseconds: 30_000_000)
        for client in 0..<25 {
            for sequence in UInt64(1)...4 {
                let command = Command.kvPut(key: "k\(client)", value: "v\(sequence)")
                let output = node.clientRequest(Request(client: id, sequence: UInt64(client) * 4 + sequence, command: command), now: now)
                claimed += output.checkpoints
            }
        }
        return (claimed, node.core.deliveredBelow)
    }

    @Test func commandsDecideWhenSlotsHoldSeveralCommands() throws {
        // 101 commands in 26 slots, four per slot after the session's. The first checkpoint comes
        // after 40 commands (slot 11); its state holds 11 items (ten keys and the session), so the
        // next waits for max(40, 4 × 11) = 44 commands (slot 22), and the one after for 88.
        let byCommands = try claims(commands: 40, slots: 0)
        #expect(byCommands.delivered == 26)
        #expect(byCommands.claimed == [11, 22])
        // With a small interval the state sets the pace as it grows: 13 commands (slot 4, 4 items),
        // then 16 (slot 8, 8 items), then 32 (slot 16).
        #expect(try claims(commands: 12, slots: 0).claimed.prefix(3) == [4, 8, 16])
        // The same run counted in slots checkpoints four times as rarely.
        let bySlots = try claims(commands: 0, slots: 40)
        #expect(bySlots.claimed.isEmpty)
        // Both set: whichever comes due first.
        let both = try claims(commands: 60, slots: 10)
        #expect(both.claimed.first == 10)
        #expect(try claims(commands: 0, slots: 0).claimed.isEmpty)
    }
}
