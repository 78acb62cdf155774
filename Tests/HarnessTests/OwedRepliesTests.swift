import Paxos
import Primitives
@testable import Runtime
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

/// The bounded list itself, against a plain array that does the same in O(n).
@Suite struct OwedRepliesListTests {
    private func reply(_ client: UInt64, _ sequence: UInt64) -> RequestKey { RequestKey(client: ClientID(client), sequence: sequence) }

    @Test func repliesStayInArrivalOrderWhateverIsRemovedFromTheMiddle() {
        var owed = OwedReplies()
        for sequence in UInt64(1)...5 { owed.insert(reply(1, sequence)) }
        let removed = [owed.remove(reply(1, 3)), owed.remove(reply(1, 3)), owed.remove(reply(1, 1)), owed.remove(reply(1, 5))]
        #expect(removed == [true, false, true, true])
        owed.insert(reply(1, 6))
        // Inserting one already owed keeps its place.
        owed.insert(reply(1, 2))
        #expect(owed.inOrder == [reply(1, 2), reply(1, 4), reply(1, 6)])
        #expect(owed.count == 3)
    }

    @Test func theBoundForgetsTheOldestStillOwed() {
        var owed = OwedReplies()
        owed.countMax = 3
        for sequence in UInt64(1)...3 { owed.insert(reply(1, sequence)) }
        let removedFirst = owed.remove(reply(1, 1))
        #expect(removedFirst)
        owed.insert(reply(1, 4))
        owed.insert(reply(1, 5))
        #expect(owed.inOrder == [reply(1, 3), reply(1, 4), reply(1, 5)])
        #expect(owed.forgotten == 1)
        let removedForgotten = owed.remove(reply(1, 2))
        #expect(!removedForgotten)
    }

    @Test func answeredRepliesLeaveNothingBehind() {
        // A replica answers almost everything it owes: the nodes it keeps are the most owed at
        // once, however many requests pass through.
        var owed = OwedReplies()
        for sequence in UInt64(1)...200_000 {
            owed.insert(reply(sequence % 16, sequence))
            if sequence > 8 {
                let removed = owed.remove(reply((sequence - 8) % 16, sequence - 8))
                #expect(removed)
            }
        }
        #expect(owed.count == 8)
        #expect(owed.nodesAllocated == 9)
        #expect(owed.forgotten == 0)
    }

    @Test func randomInsertsAndRemovalsMatchAPlainArray() {
        var random = SplitMix64(seed: 12)
        for round in 0..<20 {
            var owed = OwedReplies()
            owed.countMax = 1 + Int(random.next() % 40)
            var reference: [RequestKey] = []
            var forgotten: UInt64 = 0
            for _ in 0..<2_000 {
                let candidate = reply(random.next() % 4, random.next() % 60)
                if random.chance(0.55) {
                    owed.insert(candidate)
                    if !reference.contains(candidate) {
                        if reference.count >= owed.countMax {
                            reference.removeFirst()
                            forgotten += 1
                        }
                        reference.append(candidate)
                    }
                } else {
                    let wasOwed = reference.contains(candidate)
                    reference.removeAll { $0 == candidate }
                    let removed = owed.remove(candidate)
                    #expect(removed == wasOwed, "round \(round)")
                }
            }
            #expect(owed.inOrder == reference, "round \(round)")
            #expect(owed.count == reference.count)
            #expect(owed.forgotten == forgotten)
            #expect(owed.nodesAllocated <= owed.countMax)
        }
    }
}
