import Primitives

/// The three services of the seed talk.
/// `session` is the group's client-session table, which every group runs beside its services.
public enum ServiceKind: UInt8, CaseIterable, Hashable, Sendable, CustomStringConvertible {
    case kv = 1
    case lock = 2
    case log = 3
    case session = 4

    public var description: String {
        switch self {
        case .kv: "kv"
        case .lock: "lock"
        case .log: "log"
        case .session: "session"
        }
    }
}

/// One operation on one service. Lock ownership is the calling client session, carried by the
/// enclosing `Request`, so it is not a field here.
public enum Command: Hashable, Sendable {
    /// Opens a client session; the reply names it. Sent with any client id and sequence (they only
    /// route the reply); every later request of the client carries the returned id.
    case openSession
    case kvGet(key: String)
    case kvPut(key: String, value: String)
    case lockAcquire(name: String)
    case lockRelease(name: String)
    case logAppend(entry: String)
    /// Entries `first ... last`, both inclusive.
    case logRetrieve(first: UInt64, last: UInt64)
    /// Drops every entry below `index`.
    case logTruncate(index: UInt64)
    /// An extension step of a composed service: entry `index` (1, 2, 3, …) of origin group
    /// `origin`'s stream, appended only if it is the next one of that stream, so every step lands
    /// exactly once and in the origin's order however often it is sent. Not a client operation.
    case logAppendFrom(origin: UInt32, index: UInt64, entry: String)

    public var service: ServiceKind {
        switch self {
        case .kvGet, .kvPut: .kv
        case .lockAcquire, .lockRelease: .lock
        case .logAppend, .logRetrieve, .logTruncate, .logAppendFrom: .log
        case .openSession: .session
        }
    }

    /// Whether the session table guards this command. `openSession` creates sessions and
    /// `logAppendFrom` carries its own exactly-once rule.
    public var usesSession: Bool {
        switch self {
        case .openSession, .logAppendFrom: false
        default: true
        }
    }

    /// The operation's name as workload files and CSV columns spell it (`kv.put`).
    public var operationName: String {
        switch self {
        case .kvGet: "kv.get"
        case .kvPut: "kv.put"
        case .lockAcquire: "lock.acquire"
        case .lockRelease: "lock.release"
        case .logAppend: "log.append"
        case .logRetrieve: "log.retrieve"
        case .logTruncate: "log.truncate"
        case .openSession: "session.open"
        case .logAppendFrom: "log.append-from"
        }
    }

    /// Whether the command only reads service state.
    public var isReadOnly: Bool {
        switch self {
        case .kvGet, .logRetrieve: true
        case .kvPut, .lockAcquire, .lockRelease, .logAppend, .logTruncate, .openSession, .logAppendFrom: false
        }
    }

    /// The state this command reads or writes. Two commands conflict when they share a key and at
    /// least one of them writes it; the log is one object, because an append's index depends on
    /// every append and truncate before it.
    public var accesses: [Access] {
        let mode: Access.Mode = isReadOnly ? .read : .write
        switch self {
        case let .kvGet(key), let .kvPut(key, _): return [Access(key: .kv(key), mode: mode)]
        case let .lockAcquire(name), let .lockRelease(name): return [Access(key: .lock(name), mode: mode)]
        case .logAppend, .logRetrieve, .logTruncate, .logAppendFrom: return [Access(key: .log, mode: mode)]
        case .openSession: return [Access(key: .sessions, mode: .write)]
        }
    }
}

/// A unit of service state for conflict detection.
public enum ConflictKey: Hashable, Sendable, CustomStringConvertible {
    case kv(String)
    case lock(String)
    case log
    /// The session table's id counter: only `openSession` touches it.
    case sessions

    public var description: String {
        switch self {
        case let .kv(key): "kv:\(key)"
        case let .lock(name): "lock:\(name)"
        case .log: "log"
        case .sessions: "sessions"
        }
    }
}

/// A command's use of one conflict key.
public struct Access: Hashable, Sendable {
    public enum Mode: Hashable, Sendable { case read, write }
    public var key: ConflictKey
    public var mode: Mode

    public init(key: ConflictKey, mode: Mode) {
        self.key = key
        self.mode = mode
    }

    public func conflicts(with other: Access) -> Bool {
        key == other.key && (mode == .write || other.mode == .write)
    }
}

extension Command {
    /// Whether executing the two commands in either order could give different results.
    public func conflicts(with other: Command) -> Bool {
        accesses.contains { mine in other.accesses.contains { mine.conflicts(with: $0) } }
    }
}

/// A client's request: the command plus its session, so replicas can execute it at most once.
/// Sequences start at 1 after `openSession` and grow by one per new request of the session.
public struct Request: Hashable, Sendable, CustomStringConvertible {
    public var client: ClientID
    public var sequence: UInt64
    public var command: Command

    public init(client: ClientID, sequence: UInt64, command: Command) {
        self.client = client
        self.sequence = sequence
        self.command = command
    }

    public var description: String { "\(client)#\(sequence) \(command)" }
}

/// A request's identity, its client and sequence number: what the proposer de-duplicates on and
/// what a reply answers.
public struct RequestKey: Hashable, Sendable {
    public var client: ClientID
    public var sequence: UInt64

    public init(client: ClientID, sequence: UInt64) {
        self.client = client
        self.sequence = sequence
    }

    public init(_ request: Request) {
        self.init(client: request.client, sequence: request.sequence)
    }
}

/// A reply on its way to a client, labelled with the request it answers.
public struct ClientReply: Hashable, Sendable {
    public var client: ClientID
    public var sequence: UInt64
    public var reply: Reply
    /// For a sampled request (latency breakdown): where its time went at the replica that answered.
    public var stages: ReplicaStages?

    public init(client: ClientID, sequence: UInt64, reply: Reply, stages: ReplicaStages? = nil) {
        self.client = client
        self.sequence = sequence
        self.reply = reply
        self.stages = stages
    }
}

/// A sampled request's time at the replica that answered it, as durations on that replica's clock
/// (never instants: a client must not subtract another machine's clock from its own).
///
/// - queue: received until first seen in a proposal (this replica's own accept, or, when another
///   replica leads, the leader's accept arriving here: forwarding counts as queueing).
/// - ordering: proposed until delivered (decided, and every earlier slot delivered).
/// - execution: delivered until its reply was ready (waiting behind earlier commands included).
/// - hold: reply ready until it left (waiting for the records it depends on to be durable).
///
/// The client attributes the rest of its round trip to the way there and back.
public struct ReplicaStages: Hashable, Sendable {
    public var queueNanoseconds: UInt64
    public var orderingNanoseconds: UInt64
    public var executionNanoseconds: UInt64
    public var holdNanoseconds: UInt64
    /// When the reply was ready, on the replica's clock (local to it; not on the wire): the driver
    /// that releases the reply turns it into `holdNanoseconds`.
    public var readyAtNanoseconds: UInt64

    public init(queueNanoseconds: UInt64, orderingNanoseconds: UInt64, executionNanoseconds: UInt64, holdNanoseconds: UInt64 = 0,
                readyAtNanoseconds: UInt64 = 0) {
        self.queueNanoseconds = queueNanoseconds
        self.orderingNanoseconds = orderingNanoseconds
        self.executionNanoseconds = executionNanoseconds
        self.holdNanoseconds = holdNanoseconds
        self.readyAtNanoseconds = readyAtNanoseconds
    }

    /// The replica's whole share of the round trip.
    public var totalNanoseconds: UInt64 { queueNanoseconds &+ orderingNanoseconds &+ executionNanoseconds &+ holdNanoseconds }

    /// The reply leaves at `nowNanoseconds`: the time since it was ready is the hold.
    public mutating func released(atNanoseconds nowNanoseconds: UInt64) {
        if readyAtNanoseconds > 0, nowNanoseconds > readyAtNanoseconds { holdNanoseconds = nowNanoseconds - readyAtNanoseconds }
    }
}

/// What a command returns.
public enum Reply: Hashable, Sendable {
    /// `kv.get`: the value, or nil for an unknown key.
    case value(String?)
    /// `kv.put`.
    case stored
    /// `lock.acquire`, `lock.release`, `log.truncate`.
    case flag(Bool)
    /// `log.append`: the new entry's index.
    case index(UInt64)
    /// `log.retrieve`: the entries from `first` on.
    case entries(first: UInt64, [String])
    /// `openSession`: the new session's id.
    case session(ClientID)
    /// `logAppendFrom`: the index the entry got if this request appended it (nil when it was
    /// already there or an earlier step is missing), and how many steps of the origin the log
    /// holds now.
    case extensionStep(appendedAt: UInt64?, applied: UInt64)
    /// The command was refused; nothing changed.
    case failure(ServiceError)
}

/// Why a command was refused. These are answers to the client, never traps.
public enum ServiceError: Error, Hashable, Sendable, CustomStringConvertible {
    /// `log.retrieve` asked for entries outside `available` (the retained index range).
    case outOfRange(first: UInt64, last: UInt64, available: Range<UInt64>)
    /// `log.retrieve` with `first > last`.
    case emptyRange(first: UInt64, last: UInt64)
    /// `log.retrieve` asked for more than `limit` entries at once.
    case rangeTooLong(requested: UInt64, limit: UInt64)
    /// The session is unknown: never opened, or evicted. The request was not executed; the client
    /// must open a new session.
    case sessionExpired
    /// A retry of a request older than the session's latest; its reply is no longer kept.
    case staleSequence(sequence: UInt64, latest: UInt64)
    /// The command is not accepted from where it came: an extension step (`logAppendFrom`) or an
    /// `openSession` without a nonce on a client port. Nothing was executed; resending it will
    /// not help.
    case notPermitted
    /// The target lost the request after sending it (its connection closed under it), so it may
    /// or may not have executed. Only targets without csmr sessions answer it (etcd, where a
    /// second copy of a put would apply twice); csmr's replicas never do. The load driver counts
    /// it as an error and a recorded history keeps the command pending.
    case outcomeUnknown

    public var description: String {
        switch self {
        case let .outOfRange(first, last, available):
            "entries \(first)...\(last) are outside the retained range \(available.lowerBound)..<\(available.upperBound)"
        case let .emptyRange(first, last): "empty range: first \(first) is after last \(last)"
        case let .rangeTooLong(requested, limit): "\(requested) entries requested, at most \(limit) per retrieve"
        case .sessionExpired: "session expired: open a new session"
        case let .staleSequence(sequence, latest): "request \(sequence) is older than the session's latest \(latest)"
        case .notPermitted: "not permitted here"
        case .outcomeUnknown: "the connection failed after the request was sent; it may or may not have executed"
        }
    }
}
