import Paxos
import Primitives
import Runtime
import Services
import Testing

/// `ReplicaNode` keeps the replies it owes within `owedRepliesMax`.
@Suite struct OwedRepliesTests {
    @Test func aReplicaThatNeverDecidesForgetsItsOldestOwedRepliesAtTheBound() {
        // One replica of three with no peers: nothing it proposes is ever decided, so every
        // request stays owed (the leak the bound is for).
        let now = Instant(nanoseconds: 1_000)
        var node = ReplicaNode(core: PaxosReplica(config: PaxosConfig(replicaCount: 3, mode: .multiLeader), id: ReplicaID(0), now: now),
                               storage: MemoryStorage())
        node.owedRepliesMax = 4
        for sequence in UInt64(1)...10 {
            _ = node.clientRequest(Request(client: ClientID(7), sequence: sequence, command: .kvGet(key: "k")), now: now)
        }
        #expect(node.owedReplies == 4)
        #expect(node.owedRepliesForgotten == 6)
        // The same request again is owed once, not twice.
        _ = node.clientRequest(Request(client: ClientID(7), sequence: 10, command: .kvGet(key: "k")), now: now)
        #expect(node.owedReplies == 4)
        #expect(node.owedRepliesForgotten == 6)
        // Many more: the bound holds however long the node runs.
        for sequence in UInt64(11)...5_000 {
            _ = node.clientRequest(Request(client: ClientID(8), sequence: sequence, command: .kvGet(key: "k")), now: now)
        }
        #expect(node.owedReplies == 4)
        #expect(node.owedRepliesForgotten == 4_996)
    }
}
