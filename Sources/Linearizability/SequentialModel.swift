import Primitives
import Services

/// Which sequential specification an object follows.
enum ObjectKind: Hashable, Sendable {
    /// One kv key: a register that starts at nil.
    case register
    /// One lock name: free, or held by one client.
    case lock
    /// The whole log: appends, retrieves and truncations all act on one sequence.
    case log
}

/// The state of one object, packed into two words so the search can hash and compare it in
/// constant time.
///
/// - register: `node` is the interned value (0 for nil); `word` is unused.
/// - lock: `node` is 1 when held and 0 when free; `word` is the holder's client id.
/// - log: `word` is the first retained index; `node` is the trie node of every entry ever
///   appended, whose depth is the end index. Entries below `word` are truncated: they can no
///   longer be observed, so keeping them in the state only makes the memo slightly finer.
struct ModelState: Hashable, Sendable {
    var word: UInt64
    var node: Int

    static let initial = ModelState(word: 0, node: 0)
}

/// One operation compiled against its object's model: its arguments, with strings interned,
/// and what its recorded reply requires. A nil expectation means the operation is pending, so any
/// reply will do.
enum Effect: Hashable, Sendable {
    case get(expected: Int)
    case put(value: Int)
    case acquire(client: UInt64, granted: Bool?)
    case release(client: UInt64, released: Bool?)
    case append(entry: Int, index: UInt64?)
    case retrieve(first: UInt64, last: UInt64, expected: RetrieveExpectation)
    case truncate(index: UInt64, done: Bool?)

    /// Whether the operation has a recorded reply; pending writes have none.
    var isCompleted: Bool {
        switch self {
        case .get, .put, .retrieve: true
        case let .acquire(_, granted): granted != nil
        case let .release(_, released): released != nil
        case let .append(_, index): index != nil
        case let .truncate(_, done): done != nil
        }
    }
}

/// What a recorded `log.retrieve` reply requires of the log.
enum RetrieveExpectation: Hashable, Sendable {
    /// The range was valid and these (interned) entries were returned.
    case entries([Int])
    /// The arguments alone made it fail (`emptyRange`, `rangeTooLong`), whatever the state.
    case argumentError
    /// The range was outside the retained entries, which were exactly `available`.
    case outOfRange(available: Range<UInt64>)
}

/// A recorded reply that no state of the object could ever give, so the history is wrong without
/// any search.
struct ImpossibleReply: Error {
    var reason: String
}

/// The sequential specification of one object, replaying `Effect`s on `ModelState`s.
///
/// Its replies match `StateMachine.execute` exactly (the tests replay real executions to hold it
/// to that). It is not built on `ReplicatedLog` because the search keeps one state per explored
/// configuration: copying and hashing a whole log at every step would make checking quadratic in
/// the history length. Instead every log state is a node of a trie of entry sequences, interned so
/// equal sequences get the same node, which makes states two words long.
struct SequentialModel {
    let kind: ObjectKind
    let retrieveEntriesMax: UInt64

    /// Interned strings (kv values and log entries). Id 0 stands for nil and id 1 for every value
    /// that a pending operation wrote and no read returned; neither is ever a real string's id.
    private(set) var strings: [String] = ["", "(a value of a pending write that no read returned)"]
    private var stringIDs: [String: Int] = [:]
    static let unreadPendingValue = 1
    /// Every value some completed read returned. A pending write of any other value is compiled
    /// with `unreadPendingValue` instead: no read can tell the two apart, and merging them lets
    /// the search treat such writes as interchangeable instead of trying them in every order.
    private var readValues: Set<String> = []

    // The log trie. Node 0 is the empty log; every other node is its parent plus one entry.
    // `jump` is a skip pointer (Myers' skew-binary scheme) so reaching the ancestor at any depth
    // takes O(log depth) steps.
    private var parent: [Int] = [0]
    private var entry: [Int] = [0]
    private var depth: [UInt64] = [0]
    private var jump: [Int] = [0]
    private var children: [ChildKey: Int] = [:]

    private struct ChildKey: Hashable {
        var parent: Int
        var entry: Int
    }

    init(kind: ObjectKind, retrieveEntriesMax: UInt64, operations: [HistoryOperation]) {
        self.kind = kind
        self.retrieveEntriesMax = retrieveEntriesMax
        for operation in operations {
            switch operation.completion?.reply {
            case let .value(value?)?: readValues.insert(value)
            case let .entries(_, entries)?: readValues.formUnion(entries)
            default: break
            }
        }
    }

    /// The id a write of `value` is compiled with.
    private mutating func written(_ value: String, isPending: Bool) -> Int {
        isPending && !readValues.contains(value) ? Self.unreadPendingValue : intern(value)
    }

    // MARK: Compiling operations

    mutating func intern(_ string: String) -> Int {
        if let id = stringIDs[string] { return id }
        strings.append(string)
        stringIDs[string] = strings.count - 1
        return strings.count - 1
    }

    /// The operation's effect, or why its reply is impossible for its command whatever the state.
    mutating func compile(_ operation: HistoryOperation) -> Result<Effect, ImpossibleReply> {
        let reply = operation.completion?.reply
        let client = operation.client.rawValue
        switch operation.command {
        case .kvGet:
            guard case let .value(value)? = reply else { return .failure(ImpossibleReply(reason: "kv.get replies with a value")) }
            return .success(.get(expected: value.map { intern($0) } ?? 0))
        case let .kvPut(_, value):
            guard reply == nil || reply == .stored else { return .failure(ImpossibleReply(reason: "kv.put replies stored")) }
            return .success(.put(value: written(value, isPending: reply == nil)))
        case .lockAcquire:
            guard let granted = Self.flag(reply) else { return .failure(ImpossibleReply(reason: "lock.acquire replies with a flag")) }
            return .success(.acquire(client: client, granted: granted))
        case .lockRelease:
            guard let released = Self.flag(reply) else { return .failure(ImpossibleReply(reason: "lock.release replies with a flag")) }
            return .success(.release(client: client, released: released))
        case let .logAppend(entry):
            switch reply {
            case nil: return .success(.append(entry: written(entry, isPending: true), index: nil))
            case let .index(index)?: return .success(.append(entry: intern(entry), index: index))
            default: return .failure(ImpossibleReply(reason: "log.append replies with an index"))
            }
        case let .logTruncate(index):
            guard let done = Self.flag(reply) else { return .failure(ImpossibleReply(reason: "log.truncate replies with a flag")) }
            return .success(.truncate(index: index, done: done))
        case let .logRetrieve(first, last):
            return compileRetrieve(first: first, last: last, reply: reply)
        case .openSession, .logAppendFrom:
            preconditionFailure("\(operation.command.operationName) belongs to no object; the checker drops it before compiling")
        }
    }

    /// Some(nil) for a pending operation, Some(flag) for a flag reply, nil for any other reply.
    private static func flag(_ reply: Reply?) -> Bool?? {
        switch reply {
        case nil: .some(nil)
        case let .flag(flag)?: .some(flag)
        default: nil
        }
    }

    private mutating func compileRetrieve(first: UInt64, last: UInt64, reply: Reply?) -> Result<Effect, ImpossibleReply> {
        guard let reply else {
            preconditionFailure("pending reads are dropped before compiling")
        }
        if let error = argumentError(first: first, last: last) {
            guard reply == .failure(error) else {
                return .failure(ImpossibleReply(reason: "log.retrieve \(first)...\(last) always fails with: \(error)"))
            }
            return .success(.retrieve(first: first, last: last, expected: .argumentError))
        }
        switch reply {
        case let .entries(replyFirst, entries):
            guard replyFirst == first, UInt64(entries.count) == last - first + 1 else {
                return .failure(ImpossibleReply(reason: "log.retrieve \(first)...\(last) returns \(last - first + 1) entries from \(first)"))
            }
            return .success(.retrieve(first: first, last: last, expected: .entries(entries.map { intern($0) })))
        case let .failure(.outOfRange(replyFirst, replyLast, available)):
            guard replyFirst == first, replyLast == last else {
                return .failure(ImpossibleReply(reason: "log.retrieve \(first)...\(last) reports its own range when out of range"))
            }
            return .success(.retrieve(first: first, last: last, expected: .outOfRange(available: available)))
        default:
            return .failure(ImpossibleReply(reason: "log.retrieve replies with entries or an out-of-range failure"))
        }
    }

    /// The failure `ReplicatedLog.retrieve` gives for these arguments whatever the log holds.
    func argumentError(first: UInt64, last: UInt64) -> ServiceError? {
        guard first <= last else { return .emptyRange(first: first, last: last) }
        let requested = last - first &+ 1
        guard requested != 0, requested <= retrieveEntriesMax else {
            return .rangeTooLong(requested: requested == 0 ? UInt64.max : requested, limit: retrieveEntriesMax)
        }
        return nil
    }

    // MARK: Replaying operations

    /// The state after `effect`, or nil when the object would reply differently than recorded.
    mutating func apply(_ effect: Effect, to state: ModelState) -> ModelState? {
        switch effect {
        case let .get(expected):
            return state.node == expected ? state : nil
        case let .put(value):
            return ModelState(word: 0, node: value)
        case let .acquire(client, granted):
            let (after, result) = Self.acquire(client, state)
            return granted == nil || granted == result ? after : nil
        case let .release(client, released):
            let (after, result) = Self.release(client, state)
            return released == nil || released == result ? after : nil
        case let .append(entry, index):
            if let index, index != depth[state.node] { return nil }
            return ModelState(word: state.word, node: child(of: state.node, entry: entry))
        case let .truncate(index, done):
            let (after, result) = Self.truncate(below: index, state, end: depth[state.node])
            return done == nil || done == result ? after : nil
        case let .retrieve(first, last, expected):
            let end = depth[state.node]
            let inRange = first >= state.word && last < end
            switch expected {
            case .argumentError:
                return state
            case let .outOfRange(available):
                return !inRange && available == state.word..<end ? state : nil
            case let .entries(ids):
                guard inRange else { return nil }
                var node = ancestor(of: state.node, atDepth: last + 1)
                for id in ids.reversed() {
                    guard entry[node] == id else { return nil }
                    node = parent[node]
                }
                return state
            }
        }
    }

    /// Whether a completed `effect` that fails in `state` will fail in every state reachable from
    /// it, so the search can abandon the branch at once. Only the log is monotonic enough to tell:
    /// its end index and first retained index never decrease, and retained entries never change.
    func isHopeless(_ effect: Effect, in state: ModelState) -> Bool {
        guard kind == .log else { return false }
        let end = depth[state.node]
        switch effect {
        case let .append(_, index?):
            return index < end
        case let .truncate(index, done?):
            return !done && index <= end
        case let .retrieve(first, last, .entries):
            return first < state.word || last < end
        case let .retrieve(_, _, .outOfRange(available)):
            return available.lowerBound < state.word || available.upperBound < end
        case .get, .put, .acquire, .release, .append, .truncate, .retrieve:
            return false
        }
    }

    /// What the object would reply to `effect` in `state`, for explanations.
    func reply(to effect: Effect, in state: ModelState) -> Reply {
        switch effect {
        case .get:
            return .value(state.node == 0 ? nil : strings[state.node])
        case .put:
            return .stored
        case let .acquire(client, _):
            return .flag(Self.acquire(client, state).granted)
        case let .release(client, _):
            return .flag(Self.release(client, state).released)
        case .append:
            return .index(depth[state.node])
        case let .truncate(index, _):
            return .flag(Self.truncate(below: index, state, end: depth[state.node]).done)
        case let .retrieve(first, last, _):
            if let error = argumentError(first: first, last: last) { return .failure(error) }
            let end = depth[state.node]
            guard first >= state.word, last < end else {
                return .failure(.outOfRange(first: first, last: last, available: state.word..<end))
            }
            return .entries(first: first, entries(of: state.node, from: first, through: last))
        }
    }

    /// The state in words, for explanations.
    func describe(_ state: ModelState) -> String {
        switch kind {
        case .register:
            switch state.node {
            case 0: return "the value is nil"
            case Self.unreadPendingValue: return "the value is \(strings[state.node])"
            default: return "the value is \(strings[state.node].debugDescription)"
            }
        case .lock:
            return state.node == 0 ? "the lock is free" : "the lock is held by \(ClientID(state.word))"
        case .log:
            let end = depth[state.node]
            guard end > state.word else { return "the log retains no entries (next index \(end))" }
            let shownMin = max(state.word, end - min(end - state.word, 5))
            let shown = entries(of: state.node, from: shownMin, through: end - 1).map(\.debugDescription)
            let prefix = shownMin > state.word ? "…, " : ""
            return "the log retains \(state.word)..<\(end): [\(prefix)\(shown.joined(separator: ", "))]"
        }
    }

    private static func acquire(_ client: UInt64, _ state: ModelState) -> (after: ModelState, granted: Bool) {
        if state.node == 0 { return (ModelState(word: client, node: 1), true) }
        return (state, state.word == client)
    }

    private static func release(_ client: UInt64, _ state: ModelState) -> (after: ModelState, released: Bool) {
        guard state.node == 1, state.word == client else { return (state, false) }
        return (ModelState(word: 0, node: 0), true)
    }

    private static func truncate(below index: UInt64, _ state: ModelState, end: UInt64) -> (after: ModelState, done: Bool) {
        guard index <= end else { return (state, false) }
        guard index > state.word else { return (state, true) }
        return (ModelState(word: index, node: state.node), true)
    }

    // MARK: The log trie

    private mutating func child(of node: Int, entry id: Int) -> Int {
        let key = ChildKey(parent: node, entry: id)
        if let existing = children[key] { return existing }
        let created = parent.count
        // Myers' rule: jump twice as far whenever the parent's two jumps are equally long, which
        // keeps every ancestor query logarithmic.
        let parentJump = jump[node]
        let equalSpans = depth[node] - depth[parentJump] == depth[parentJump] - depth[jump[parentJump]]
        parent.append(node)
        entry.append(id)
        depth.append(depth[node] + 1)
        jump.append(node != 0 && equalSpans ? jump[parentJump] : node)
        children[key] = created
        return created
    }

    /// The node on `node`'s path from the root whose depth is `target` (at most `node`'s depth).
    private func ancestor(of node: Int, atDepth target: UInt64) -> Int {
        var node = node
        while depth[node] > target {
            node = depth[jump[node]] >= target ? jump[node] : parent[node]
        }
        return node
    }

    /// Entries `first ... last` of the sequence ending at `node`.
    private func entries(of node: Int, from first: UInt64, through last: UInt64) -> [String] {
        var node = ancestor(of: node, atDepth: last + 1)
        var result: [String] = []
        for _ in first...last {
            result.append(strings[entry[node]])
            node = parent[node]
        }
        return result.reversed()
    }
}
