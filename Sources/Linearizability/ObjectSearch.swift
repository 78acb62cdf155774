import Primitives
import Services

/// Where the search of a non-linearizable object got furthest: the longest prefix it could
/// linearize, and the operation whose completion it could not get past.
struct DeadEnd: Sendable {
    /// Indices of the linearized operations, in linearization order.
    var prefix: [Int]
    /// The object's state after `prefix`.
    var state: ModelState
    /// The operation whose completion came next in real time: it, or something before it, had to
    /// take effect and none could.
    var blocking: Int
    /// The operations that could have taken effect next (invoked before `blocking` completed),
    /// in invocation order.
    var candidates: [Int]
}

enum SearchOutcome: Sendable {
    case linearizable
    case violation(DeadEnd)
    case undecided(explored: Int)
}

/// One explored configuration: which operations are linearized, the state they lead to, and,
/// inside a chain of pending operations, which completed operations may still end the chain
/// (see `ObjectSearch.run`); the last restricts what the search tries next, so it is part of the
/// configuration.
///
/// Sets of operations are kept as 128-bit Zobrist fingerprints (the XOR of a random 128-bit key
/// per member) rather than as bitsets, so a configuration takes a few dozen bytes however long
/// the history is: a bitset would cost n/8 bytes each, which for thousands of operations and
/// millions of configurations is gigabytes. Two different sets collide with probability 2^-128
/// per pair, so even two million configurations (2^41 pairs) leave a chance below 2^-87 that the
/// search wrongly skips a configuration. States are compared exactly.
private struct Configuration: Hashable {
    var linearizedLow: UInt64
    var linearizedHigh: UInt64
    var state: ModelState
    /// Zero outside a chain.
    var chainEndersLow: UInt64
    var chainEndersHigh: UInt64
}

/// A configuration outside any chain, less the pending operations it has linearized.
private struct CompletedConfiguration: Hashable {
    var completedLow: UInt64
    var completedHigh: UInt64
    var state: ModelState
}

/// One linearized operation on the search stack.
private struct Frame {
    var operation: Int
    /// The state before the operation.
    var before: ModelState
    /// For a pending operation, the completed operations that failed in every state of its chain
    /// so far, up to and including `before`: only they may end the chain. Nil for a completed
    /// operation.
    var chainEnders: [Int]?
    /// Whether the operation was the only one worth trying in its configuration (a read that
    /// fits, see `run`), so if it fails, the configuration fails.
    var isForced: Bool
}

/// The depth-first search for a linearization of one object's operations.
///
/// Operations are kept as a doubly linked list of their invocation and completion events in time
/// order. An operation may be linearized next exactly when its invocation comes before the first
/// completion still in the list; linearizing it unlinks both its events, and backtracking links
/// them back (the unlinked nodes remember their neighbours, as in Knuth's dancing links). The
/// search is a loop with an explicit stack, so its depth is bounded only by memory.
struct ObjectSearch {
    var model: SequentialModel
    let effects: [Effect]
    let operations: [HistoryOperation]
    let statesMax: Int

    private let earlierTwin: [Int]
    /// Each operation's Zobrist key, from a fixed seed so that runs are reproducible.
    private let zobrist: [(low: UInt64, high: UInt64)]
    private let isRead: [Bool]
    /// Each pending operation's index among the pending ones, -1 for completed operations.
    private let pendingRank: [Int]
    private var next: [Int] = []
    private var previous: [Int] = []

    init(model: SequentialModel, effects: [Effect], operations: [HistoryOperation], statesMax: Int) {
        self.model = model
        self.effects = effects
        self.operations = operations
        self.statesMax = statesMax
        earlierTwin = Self.earlierTwins(of: effects, operations)
        var random = SplitMix64(seed: 0x6c69_6e65_6172_697a)
        zobrist = effects.indices.map { _ in (random.next(), random.next()) }
        isRead = operations.map(\.command.isReadOnly)
        var pendingSeen = 0
        pendingRank = effects.map { effect in
            guard !effect.isCompleted else { return -1 }
            pendingSeen += 1
            return pendingSeen - 1
        }
    }

    // Event `2 * i` is operation i's invocation, `2 * i + 1` its completion, and `head` (2 * n)
    // the list's sentinel; -1 ends the list.
    private var head: Int { 2 * effects.count }

    /// Searches for a linearization; see the type's comment for the list, and below for how
    /// pending operations are placed.
    ///
    /// A pending operation may be linearized anywhere after its invocation, or left out. Trying it
    /// everywhere makes the search exponential in the number of pending operations, so the search
    /// only looks for linearizations of a normal form that exists whenever any linearization does.
    /// Call a maximal run of consecutive pending operations a chain. For all three models, if the
    /// completed operation X right after a chain would give its recorded reply both in some state
    /// of the chain and after it, then either X commutes with the rest of the chain (reads;
    /// appends and truncates past appends and truncates; a lock operation that changes nothing)
    /// or X overwrites that rest's whole effect (a put; an acquire or release that succeeds), so X
    /// can move ahead of it or it can be dropped. A chain that passes through one state twice can
    /// lose the loop, and one at the very end can be dropped. Each step drops pending operations
    /// or moves a completed operation ahead of them, so repeating them ends, in a linearization
    /// whose chains each lead, without loops, to a completed operation that fails in every state
    /// of the chain but the last and was available (invoked before the first outstanding
    /// completion) when the chain began. Accordingly the search
    /// - tries pending operations only when some available completed operation fails in the
    ///   current state and, inside a chain, in all its earlier states;
    /// - right after a chain, only tries completed operations that failed all through it;
    /// - never lets a chain return to a state it passed through, or stay in one;
    /// - of pending operations with equal effects, only tries the earliest (they are
    ///   interchangeable);
    /// - linearizes a completed read that fits the current state (and may end the current chain)
    ///   at once and tries nothing else there: moving a read forward to where it fits changes no
    ///   state and breaks no real-time order, since it is already available;
    /// - gives up on a branch as soon as an available completed operation fails in a way that no
    ///   later state can repair (`SequentialModel.isHopeless`);
    /// - stops as soon as every completed operation is linearized.
    mutating func run() -> SearchOutcome {
        let count = effects.count
        let completed = effects.map(\.isCompleted)
        var remaining = completed.count(where: { $0 })
        guard remaining > 0 else { return .linearizable }
        let hasPending = remaining < count
        link()

        var linearized = [UInt64](repeating: 0, count: (count + 63) / 64)
        var fingerprint: (low: UInt64, high: UInt64) = (0, 0)
        // Every configuration the search has entered; it never enters one twice, because the
        // first visit either succeeded or showed that none of its continuations does.
        var explored = Set<Configuration>()
        var configurations = 0
        // Outside chains, a configuration that has linearized more pending operations than an
        // explored one with the same completed operations and state can only do less: pending
        // operations are optional, so whatever it could still do, the other could too. So when
        // the history has pending operations, configurations outside chains are kept here instead
        // of in `explored`: per completed set and state, the sets of pending operations explored
        // with, and the search skips any superset of one. (Inside a chain the chain's history
        // restricts what the search tries, so there only equal configurations are skipped.)
        var completedFingerprint: (low: UInt64, high: UInt64) = (0, 0)
        var pendingUsed = [UInt64](repeating: 0, count: (pendingRank.count(where: { $0 >= 0 }) + 63) / 64)
        var pendingSetsExplored: [CompletedConfiguration: [[UInt64]]] = [:]
        var stack: [Frame] = []
        var state = ModelState.initial
        var deadEnd: DeadEnd?
        // Pass 0 tries the completed candidates, pass 1 the pending ones, so leaving a pending
        // operation out is always tried before putting it in. During pass 1, `enders` holds the
        // completed operations that could end the chain a pending operation would extend.
        var pass = 0
        var enders: [Int] = []
        var event = next[head]

        while remaining > 0 {
            let operation = event >> 1
            let chainEnders = stack.last?.chainEnders
            var stuck = false
            if event & 1 == 0 {
                var after: ModelState?
                if completed[operation] {
                    if pass == 0 {
                        after = model.apply(effects[operation], to: state)
                        if after == nil {
                            // An operation that can never succeed again dooms the whole branch.
                            stuck = model.isHopeless(effects[operation], in: state)
                        } else if let chainEnders, !chainEnders.contains(operation) {
                            after = nil
                        }
                    }
                } else if pass == 1 && mayTryPending(operation, linearized) {
                    after = model.apply(effects[operation], to: state)
                    if let candidate = after, candidate == state || chainRevisits(candidate, stack) { after = nil }
                }
                if let after {
                    let frameEnders = completed[operation] ? nil : enders
                    let isNew: Bool
                    if completed[operation] && hasPending {
                        let key = CompletedConfiguration(completedLow: completedFingerprint.low ^ zobrist[operation].low,
                                                         completedHigh: completedFingerprint.high ^ zobrist[operation].high,
                                                         state: after)
                        let seen = pendingSetsExplored[key, default: []]
                        isNew = !seen.contains { Self.isSubset($0, of: pendingUsed) }
                        if isNew { pendingSetsExplored[key, default: []].append(pendingUsed) }
                    } else {
                        let endersFingerprint = frameEnders.map(setFingerprint) ?? (low: 0, high: 0)
                        isNew = explored.insert(Configuration(
                            linearizedLow: fingerprint.low ^ zobrist[operation].low,
                            linearizedHigh: fingerprint.high ^ zobrist[operation].high,
                            state: after,
                            chainEndersLow: endersFingerprint.low, chainEndersHigh: endersFingerprint.high)).inserted
                    }
                    let isForced = completed[operation] && isRead[operation]
                    if isNew {
                        configurations += 1
                        if configurations > statesMax { return .undecided(explored: configurations) }
                        stack.append(Frame(operation: operation, before: state, chainEnders: frameEnders, isForced: isForced))
                        linearized[operation >> 6] |= 1 << UInt64(operation & 63)
                        fingerprint = (fingerprint.low ^ zobrist[operation].low, fingerprint.high ^ zobrist[operation].high)
                        if completed[operation] {
                            completedFingerprint = (completedFingerprint.low ^ zobrist[operation].low,
                                                    completedFingerprint.high ^ zobrist[operation].high)
                        } else {
                            pendingUsed[pendingRank[operation] >> 6] |= 1 << UInt64(pendingRank[operation] & 63)
                        }
                        state = after
                        unlink(operation)
                        if completed[operation] { remaining -= 1 }
                        pass = 0
                        event = next[head]
                        continue
                    }
                    // The read's configuration was explored and failed, so this one fails too.
                    stuck = isForced
                }
                if !stuck {
                    event = next[event]
                    continue
                }
            } else if pass == 0 && hasPending {
                enders = failing(chainEnders, before: event, in: state)
                if !enders.isEmpty {
                    pass = 1
                    event = next[head]
                    continue
                }
            }
            // Every candidate failed, or one never can succeed: record how far this branch got,
            // then undo the latest choice and try the candidate after it.
            if deadEnd.map({ stack.count > $0.prefix.count }) ?? true {
                let stop = firstCompletion()
                deadEnd = DeadEnd(prefix: stack.map(\.operation), state: state,
                                  blocking: stop >> 1, candidates: candidates(before: stop))
            }
            // A forced operation's failure is its configuration's, so undo past it too.
            var undone: Frame
            repeat {
                guard let top = stack.popLast() else { return .violation(deadEnd!) }
                undone = top
                state = undone.before
                linearized[undone.operation >> 6] &= ~(1 << UInt64(undone.operation & 63))
                fingerprint = (fingerprint.low ^ zobrist[undone.operation].low, fingerprint.high ^ zobrist[undone.operation].high)
                relink(undone.operation)
                if undone.chainEnders != nil {
                    pendingUsed[pendingRank[undone.operation] >> 6] &= ~(1 << UInt64(pendingRank[undone.operation] & 63))
                } else {
                    completedFingerprint = (completedFingerprint.low ^ zobrist[undone.operation].low,
                                            completedFingerprint.high ^ zobrist[undone.operation].high)
                    remaining += 1
                }
            } while undone.isForced
            if let undoneEnders = undone.chainEnders {
                pass = 1
                enders = undoneEnders
            } else {
                pass = 0
            }
            event = next[2 * undone.operation]
        }
        return .linearizable
    }

    /// The completed operations that fail in `state` and could end a chain through it: those of
    /// `chainEnders` inside a chain, otherwise every one invoked before `stop`.
    private mutating func failing(_ chainEnders: [Int]?, before stop: Int, in state: ModelState) -> [Int] {
        if let chainEnders {
            return chainEnders.filter { model.apply(effects[$0], to: state) == nil }
        }
        var result: [Int] = []
        var event = next[head]
        while event != stop, event >= 0 {
            let operation = event >> 1
            if event & 1 == 0, effects[operation].isCompleted, model.apply(effects[operation], to: state) == nil {
                result.append(operation)
            }
            event = next[event]
        }
        return result
    }

    private static func isSubset(_ small: [UInt64], of large: [UInt64]) -> Bool {
        zip(small, large).allSatisfy { $0 & ~$1 == 0 }
    }

    private func setFingerprint(_ operations: [Int]) -> (low: UInt64, high: UInt64) {
        var result: (low: UInt64, high: UInt64) = (0, 0)
        for operation in operations {
            result = (result.low ^ zobrist[operation].low, result.high ^ zobrist[operation].high)
        }
        return result
    }

    /// Whether `state` already occurred in the chain of pending operations on top of `stack`.
    private func chainRevisits(_ state: ModelState, _ stack: [Frame]) -> Bool {
        for frame in stack.reversed() {
            guard frame.chainEnders != nil else { return false }
            if frame.before == state { return true }
        }
        return false
    }

    /// Whether the search should try pending `operation` now. Pending operations with equal effects
    /// are interchangeable (both unconstrained, neither ever has to complete), so the search only
    /// tries the earliest one not yet linearized; otherwise it would try every subset of them.
    private func mayTryPending(_ operation: Int, _ linearized: [UInt64]) -> Bool {
        let twin = earlierTwin[operation]
        return twin < 0 || linearized[twin >> 6] & (1 << UInt64(twin & 63)) != 0
    }

    /// For each pending operation, the latest one invoked before it with an equal effect, or -1.
    private static func earlierTwins(of effects: [Effect], _ operations: [HistoryOperation]) -> [Int] {
        var twins = [Int](repeating: -1, count: effects.count)
        var latest: [Effect: Int] = [:]
        let pending = effects.indices.filter { !effects[$0].isCompleted }
        // The same order as the invocations in the event list, so twins are tried in list order.
        for index in pending.sorted(by: { (operations[$0].invokeNanoseconds, $0) < (operations[$1].invokeNanoseconds, $1) }) {
            twins[index] = latest.updateValue(index, forKey: effects[index]) ?? -1
        }
        return twins
    }

    /// Links all events in time order. At equal times invocations come first, so operations that
    /// merely touch are concurrent; a pending operation's completion is after everything.
    private mutating func link() {
        let count = effects.count
        var events: [(nanoseconds: UInt64, isCompletion: Int, event: Int)] = []
        events.reserveCapacity(2 * count)
        for (index, operation) in operations.enumerated() {
            events.append((operation.invokeNanoseconds, 0, 2 * index))
            // A completion stamped before its invocation is a clock glitch; treat it as instant.
            let completion = operation.completion.map { max($0.nanoseconds, operation.invokeNanoseconds) } ?? UInt64.max
            events.append((completion, 1, 2 * index + 1))
        }
        events.sort { ($0.nanoseconds, $0.isCompletion, $0.event) < ($1.nanoseconds, $1.isCompletion, $1.event) }
        next = [Int](repeating: -1, count: 2 * count + 1)
        previous = [Int](repeating: -1, count: 2 * count + 1)
        var last = head
        for item in events {
            next[last] = item.event
            previous[item.event] = last
            last = item.event
        }
    }

    private mutating func unlink(_ operation: Int) {
        remove(2 * operation)
        remove(2 * operation + 1)
    }

    /// Undoes `unlink(operation)`; valid because the search undoes its choices in reverse order.
    private mutating func relink(_ operation: Int) {
        restore(2 * operation + 1)
        restore(2 * operation)
    }

    private mutating func remove(_ event: Int) {
        next[previous[event]] = next[event]
        if next[event] >= 0 { previous[next[event]] = previous[event] }
    }

    private mutating func restore(_ event: Int) {
        next[previous[event]] = event
        if next[event] >= 0 { previous[next[event]] = event }
    }

    /// The first completion event still listed: some operation must be linearized before it.
    private func firstCompletion() -> Int {
        var event = next[head]
        while event & 1 == 0 { event = next[event] }
        return event
    }

    /// The operations whose invocations are still listed before `stop`.
    private func candidates(before stop: Int) -> [Int] {
        var result: [Int] = []
        var event = next[head]
        while event != stop, event >= 0 {
            if event & 1 == 0 { result.append(event >> 1) }
            event = next[event]
        }
        return result
    }
}
