import Primitives
import Services

/// The replies a node owes, bounded: oldest first out when full.
///
/// Every operation costs O(1), never amortized over a clean-up: the replies are a doubly linked
/// list in arrival order, kept in an array of nodes (a removed node goes on a free list and is
/// reused), and a dictionary says where each reply's node is. An earlier version kept arrival
/// order as a queue with lazy deletion and filtered the stale entries out once they outnumbered
/// twice the bound: a pass over 130,000 entries that stopped the replica's loop for 2–5 ms a few
/// times per quickstart run (every answered request left a stale entry behind).
struct OwedReplies: Sendable {
    /// Most replies kept; inserting beyond it forgets the oldest.
    var countMax = 65_536
    /// Replies forgotten at the bound so far.
    private(set) var forgotten: UInt64 = 0
    /// Where each owed reply's node is in `nodes`.
    private var position: [RequestKey: Int] = [:]
    /// Nodes of the list, and free ones (linked through `newer`).
    private var nodes: [Node] = []
    /// The oldest and newest owed reply's node, and the first free node (`none`: no such node).
    private var oldest = Self.none
    private var newest = Self.none
    private var firstFree = Self.none

    private static let none = -1

    private struct Node: Sendable {
        var reply: RequestKey
        var older: Int
        var newer: Int
    }

    var count: Int { position.count }

    /// Nodes allocated: the most replies ever owed at once, never more.
    var nodesAllocated: Int { nodes.count }

    /// Owes `reply`, unless it is owed already (its place in the order then stays).
    mutating func insert(_ reply: RequestKey) {
        guard position[reply] == nil else { return }
        while position.count >= countMax, oldest != Self.none {
            let victim = oldest
            position[nodes[victim].reply] = nil
            unlink(victim)
            forgotten += 1
        }
        let node = Node(reply: reply, older: newest, newer: Self.none)
        let index: Int
        if firstFree != Self.none {
            index = firstFree
            firstFree = nodes[index].newer
            nodes[index] = node
        } else {
            index = nodes.count
            nodes.append(node)
        }
        if newest != Self.none { nodes[newest].newer = index } else { oldest = index }
        newest = index
        position[reply] = index
    }

    /// Whether `reply` was owed (it no longer is).
    @discardableResult
    mutating func remove(_ reply: RequestKey) -> Bool {
        guard let index = position.removeValue(forKey: reply) else { return false }
        unlink(index)
        return true
    }

    /// The owed replies, oldest first (for tests).
    var inOrder: [RequestKey] {
        var replies: [RequestKey] = []
        var index = oldest
        while index != Self.none {
            replies.append(nodes[index].reply)
            index = nodes[index].newer
        }
        return replies
    }

    /// Takes node `index` out of the list and puts it on the free list.
    private mutating func unlink(_ index: Int) {
        let (older, newer) = (nodes[index].older, nodes[index].newer)
        if older != Self.none { nodes[older].newer = newer } else { oldest = newer }
        if newer != Self.none { nodes[newer].older = older } else { newest = older }
        nodes[index].older = Self.none
        nodes[index].newer = firstFree
        firstFree = index
    }
}
