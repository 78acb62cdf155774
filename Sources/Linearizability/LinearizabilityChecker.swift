import Primitives
import Services

/// The verdict on a history, or on one object of it.
public enum LinearizabilityResult: Hashable, Sendable {
    /// Some order of the operations, consistent with real time, replays on the sequential services
    /// with exactly the recorded replies.
    case linearizable
    /// No such order exists for `object`; `explanation` says where every attempt got stuck.
    case violation(object: String, explanation: String)
    /// The search gave up on `object` before deciding, because it hit `searchStatesMax`.
    case undecided(object: String, reason: String)
}

/// Decides whether a client history is linearizable with respect to the csmr services.
///
/// The history is split per object (one per kv key, one per lock name, one for the whole log),
/// which is sound because linearizability is compositional (Herlihy and Wing): a history is
/// linearizable exactly when each object's sub-history is. Each object is then searched in the
/// style of Wing and Gong, as refined by Lowe ("Testing for linearizability", 2017): a depth-first
/// search that linearizes one minimal operation at a time, replays it on a sequential model, and
/// remembers every (linearized set, model state) pair it has already explored, so no
/// configuration is searched twice.
///
/// How the history is read:
/// - `openSession` operations belong to no object and are ignored.
/// - Operations refused with `sessionExpired` or `staleSequence` were never executed, so they
///   are dropped.
/// - An operation without a completion may have taken effect at any time after its invocation, or
///   never; its reply is unconstrained. Pending reads change nothing and are dropped.
/// - Operation A must precede B only when A completed strictly before B was invoked: operations
///   whose times touch count as concurrent, so the checker never blames clock granularity.
public struct LinearizabilityChecker: Sendable {
    /// Most (linearized set, model state) pairs explored per object before giving up.
    public let searchStatesMax: Int
    /// The service limits of the system that produced the history; `log.retrieve` replies depend
    /// on `retrieveEntriesMax`.
    public let limits: ServiceLimits

    public init(searchStatesMax: Int = 2_000_000, limits: ServiceLimits = ServiceLimits()) {
        precondition(searchStatesMax >= 1, "searchStatesMax must be at least 1, got \(searchStatesMax)")
        self.searchStatesMax = searchStatesMax
        self.limits = limits
    }

    /// The first violation, taking objects in order of their names; otherwise the first undecided
    /// object; otherwise `.linearizable`.
    public func check(_ history: [HistoryOperation]) -> LinearizabilityResult {
        let results = checkAll(history)
        let names = results.keys.sorted()
        for name in names {
            if case .violation = results[name]! { return results[name]! }
        }
        for name in names {
            if case .undecided = results[name]! { return results[name]! }
        }
        return .linearizable
    }

    /// One result per object name (`kv:<key>`, `lock:<name>`, `log`) the history touches.
    public func checkAll(_ history: [HistoryOperation]) -> [String: LinearizabilityResult] {
        var objects: [String: (kind: ObjectKind, operations: [HistoryOperation])] = [:]
        for operation in history where Self.wasExecuted(operation) {
            guard let (name, kind) = Self.object(of: operation.command) else { continue }
            objects[name, default: (kind, [])].operations.append(operation)
        }
        var results: [String: LinearizabilityResult] = [:]
        for (name, object) in objects {
            results[name] = checkObject(name: name, kind: object.kind, operations: object.operations)
        }
        return results
    }

    /// The object an operation acts on, or nil for `openSession`, which acts on none, and for
    /// `logAppendFrom`, which histories record as the plain append it became (with the index it
    /// got), since only the replicas know which of its sends appended it.
    static func object(of command: Command) -> (name: String, kind: ObjectKind)? {
        switch command {
        case let .kvGet(key), let .kvPut(key, _): ("kv:\(key)", .register)
        case let .lockAcquire(name), let .lockRelease(name): ("lock:\(name)", .lock)
        case .logAppend, .logRetrieve, .logTruncate: ("log", .log)
        case .openSession, .logAppendFrom: nil
        }
    }

    /// False for operations the session table or the client port refused: they changed nothing
    /// and saw nothing.
    static func wasExecuted(_ operation: HistoryOperation) -> Bool {
        switch operation.completion?.reply {
        case .failure(.sessionExpired), .failure(.staleSequence), .failure(.notPermitted): false
        default: true
        }
    }

    private func checkObject(name: String, kind: ObjectKind, operations all: [HistoryOperation]) -> LinearizabilityResult {
        // A pending read cannot have influenced anything, so it can always be left out. Neither
        // can a pending put of a value no get returned: whatever follows it is a put that
        // overwrites it or a get that cannot match it, so a linearization that uses it is still
        // one without it.
        var valuesRead: Set<String> = []
        for operation in all {
            if case let .value(value?)? = operation.completion?.reply { valuesRead.insert(value) }
        }
        let operations = all.filter { operation in
            guard operation.completion == nil else { return true }
            if case let .kvPut(_, value) = operation.command { return valuesRead.contains(value) }
            return !operation.command.isReadOnly
        }
        var model = SequentialModel(kind: kind, retrieveEntriesMax: limits.retrieveEntriesMax, operations: operations)
        var effects: [Effect] = []
        effects.reserveCapacity(operations.count)
        for operation in operations {
            switch model.compile(operation) {
            case let .success(effect):
                effects.append(effect)
            case let .failure(impossible):
                return .violation(object: name, explanation: Explanation.impossibleReply(
                    object: name, operation: operation, reason: impossible.reason))
            }
        }
        var search = ObjectSearch(model: model, effects: effects, operations: operations, statesMax: searchStatesMax)
        switch search.run() {
        case .linearizable:
            return .linearizable
        case let .violation(deadEnd):
            return .violation(object: name, explanation: Explanation.deadEnd(
                object: name, deadEnd: deadEnd, operations: operations, effects: effects, model: search.model))
        case let .undecided(explored):
            return .undecided(object: name, reason:
                "gave up after exploring \(explored) (linearized set, state) pairs, more than searchStatesMax "
                + "\(searchStatesMax), on \(operations.count) operations of \(name)")
        }
    }
}
