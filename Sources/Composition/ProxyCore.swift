import Primitives
import Services

/// The client side of csmr's request path, for one client, as a pure value: sessions, sequence
/// numbers, routing by the composition's `Router`, one outstanding request per group, retries and
/// redirects. No clock, no socket: time is an argument, and every input returns the work to do as
/// `ProxyCore.Directive`s, which a shell carries out (the simulator's client, `CSMRClient`, and
/// later the load driver and `csmr proxy`).
///
/// The protocol, per group:
/// - The first command for a group opens a session there: `openSession` is sent with the
///   client's nonce (`ClientID.nonceRange`) and the group's open count as sequence; the reply
///   names the session. Commands that arrive meanwhile wait.
/// - A command gets the session's next sequence (1, 2, …) and is the group's outstanding request
///   until its reply comes; later commands for the group wait in order. One outstanding request
///   per session and group is what the replicas' session table allows: it keeps only the latest
///   reply of each session.
/// - A request unanswered for `retryTimeoutNanoseconds` is sent again, unchanged (same session,
///   same sequence), to the next replica of its group, so it executes at most once wherever it
///   lands, and the retry gets the stored reply if the first copy executed.
/// - A redirect naming another replica moves the target there and resends at once (at most one
///   group's worth of times in a row, so two replicas pointing at each other cannot make it spin);
///   one without a hint waits for the retry timeout like silence does. A replica the shell knows
///   to be unreachable (its connection broke) is left at once, for the next one.
/// - `openSessions` opens every group's session ahead of the first command, for shells that keep
///   session opening out of what they measure.
/// - A reply `sessionExpired` completes its command (it was not executed) and forgets the
///   session; the group's next command opens a new one.
/// - A command with a deadline that passes fails with `timedOut`. If it was sent, its outcome is
///   unknown; its sequence is never reused, so a late copy can only be refused as stale once the
///   next request of the session executes.
public struct ProxyCore: Sendable {
    public struct Config: Hashable, Sendable {
        /// Replicas per group, in the router's group order.
        public var replicaCounts: [Int]
        /// The replica each group's requests go to first (the shell spreads clients over them).
        public var firstReplicas: [Int]
        /// Resend an unanswered request to the next replica after this long. Recommended a few
        /// times the group's commit latency: 250 ms on a LAN; the simulator uses 40–80 ms.
        public var retryTimeoutNanoseconds: UInt64
        /// Commands waiting behind a group's outstanding request, at most; more fail with
        /// `queueFull`. Recommended 1,024.
        public var waitingCommandsMax: Int

        public init(replicaCounts: [Int], firstReplicas: [Int]? = nil, retryTimeoutNanoseconds: UInt64 = 250_000_000,
                    waitingCommandsMax: Int = 1_024) {
            precondition(!replicaCounts.isEmpty && replicaCounts.allSatisfy { $0 >= 1 }, "every group needs a replica: \(replicaCounts)")
            let firstReplicas = firstReplicas ?? Array(repeating: 0, count: replicaCounts.count)
            precondition(firstReplicas.count == replicaCounts.count && zip(firstReplicas, replicaCounts).allSatisfy { $0 >= 0 && $0 < $1 },
                         "first replicas \(firstReplicas) do not fit the groups \(replicaCounts)")
            precondition(retryTimeoutNanoseconds > 0 && waitingCommandsMax >= 1,
                         "retryTimeoutNanoseconds \(retryTimeoutNanoseconds) and waitingCommandsMax \(waitingCommandsMax) must be positive")
            self.replicaCounts = replicaCounts
            self.firstReplicas = firstReplicas
            self.retryTimeoutNanoseconds = retryTimeoutNanoseconds
            self.waitingCommandsMax = waitingCommandsMax
        }
    }

    /// Names one submitted command for the life of its core: 1, 2, 3, …
    public struct OperationID: Hashable, Comparable, Sendable, CustomStringConvertible {
        public let rawValue: UInt64
        public init(_ rawValue: UInt64) { self.rawValue = rawValue }
        public static func < (lhs: OperationID, rhs: OperationID) -> Bool { lhs.rawValue < rhs.rawValue }
        public var description: String { "op\(rawValue)" }
    }

    /// Why a command ended without a reply.
    public enum Failure: Hashable, Sendable, CustomStringConvertible {
        /// Its deadline passed. `sent`: it reached the network, so it may have executed.
        case timedOut(sent: Bool)
        /// Too many commands were already waiting for its group; it was never sent.
        case queueFull

        public var description: String {
            switch self {
            case let .timedOut(sent): sent ? "timed out (it may have executed)" : "timed out before it was sent"
            case .queueFull: "too many commands waiting for the group"
            }
        }
    }

    /// Work for the shell, in the order it must be done.
    public enum Directive: Hashable, Sendable {
        /// Send `request` to replica `replica` (an index within group `group`).
        case send(Request, group: Int, replica: Int)
        /// The command of `operation` was answered. `request` is the last form it was sent in
        /// (its session and sequence); `reply` may be a refusal, such as `sessionExpired`.
        case completed(OperationID, Request, Reply)
        case failed(OperationID, Command, Failure)
    }

    /// What `submit` hands back: the new operation's id and the work to do.
    public struct Submission: Hashable, Sendable {
        public var operation: OperationID
        public var directives: [Directive]
    }

    private struct Waiting: Hashable, Sendable {
        var operation: OperationID
        var command: Command
        var deadlineNanoseconds: UInt64?
    }

    private struct Outstanding: Hashable, Sendable {
        /// nil for the group's `openSession`.
        var operation: OperationID?
        var request: Request
        var deadlineNanoseconds: UInt64?
        var lastSentNanoseconds: UInt64
        var redirectsInRow = 0
    }

    private struct Group: Hashable, Sendable {
        var session: ClientID?
        var sequence: UInt64 = 0
        /// How many `openSession`s this client sent the group: the next one's sequence is this
        /// plus one, so a re-open is never mistaken for a retry of an old one.
        var opens: UInt64 = 0
        var target: Int
        var outstanding: Outstanding?
        var waiting: [Waiting] = []
        /// Open the session even with no command waiting (`openSessions`).
        var sessionWanted = false
    }

    public let config: Config
    public let router: Router
    /// The id `openSession` requests carry; replies to them come back addressed to it.
    public let nonce: ClientID
    private var groups: [Group]
    private var nextOperation: UInt64 = 1

    public init(nonce: ClientID, router: Router, config: Config) {
        precondition(nonce.isNonce, "\(nonce) is outside ClientID.nonceRange")
        precondition(config.replicaCounts.count == router.spec.groups.count,
                     "\(config.replicaCounts.count) replica counts for \(router.spec.groups.count) groups")
        self.nonce = nonce
        self.router = router
        self.config = config
        groups = config.firstReplicas.map { Group(target: $0) }
    }

    // MARK: Inputs

    /// A new command. It is sent at once if its group has a session and nothing outstanding,
    /// else it waits. `deadlineNanoseconds` (absolute, on the caller's clock) bounds how long it
    /// may take, retries included; nil waits for ever.
    public mutating func submit(_ command: Command, nowNanoseconds now: UInt64, deadlineNanoseconds: UInt64? = nil) -> Submission {
        precondition(command.usesSession, "\(command) is not a client command: the proxy opens sessions itself, and only replicas send extension steps")
        var directives: [Directive] = []
        let operation = OperationID(nextOperation)
        nextOperation += 1
        let group = router.group(for: command)
        if groups[group].waiting.count >= config.waitingCommandsMax {
            directives.append(.failed(operation, command, .queueFull))
        } else {
            groups[group].waiting.append(Waiting(operation: operation, command: command, deadlineNanoseconds: deadlineNanoseconds))
            pump(group, now: now, into: &directives)
        }
        return Submission(operation: operation, directives: directives)
    }

    /// A reply from a replica of `group`. Replies to anything but the group's outstanding request
    /// (duplicates, answers to an earlier copy, late answers after a timeout) are ignored.
    public mutating func receive(_ reply: ClientReply, group: Int, nowNanoseconds now: UInt64) -> [Directive] {
        var directives: [Directive] = []
        guard let outstanding = groups[group].outstanding, outstanding.request.client == reply.client,
              outstanding.request.sequence == reply.sequence else { return directives }
        if let operation = outstanding.operation {
            groups[group].outstanding = nil
            if reply.reply == .failure(.sessionExpired) { groups[group].session = nil }
            directives.append(.completed(operation, outstanding.request, reply.reply))
        } else if case let .session(session) = reply.reply {
            groups[group].outstanding = nil
            groups[group].session = session
            groups[group].sequence = 0
            groups[group].sessionWanted = false
        }
        // Any other answer to `openSession` is a refusal by the port; retrying elsewhere is all
        // a client can do, so the request stays outstanding.
        pump(group, now: now, into: &directives)
        return directives
    }

    /// A replica of `group` answered `request` (client, sequence) with: try `replica` instead
    /// (nil: no idea, the group may be down).
    public mutating func redirected(client: ClientID, sequence: UInt64, group: Int, toReplica replica: Int?,
                                    nowNanoseconds now: UInt64) -> [Directive] {
        var directives: [Directive] = []
        guard var outstanding = groups[group].outstanding, outstanding.request.client == client,
              outstanding.request.sequence == sequence else { return directives }
        if let replica, replica >= 0, replica < config.replicaCounts[group], replica != groups[group].target,
           outstanding.redirectsInRow < config.replicaCounts[group] {
            outstanding.redirectsInRow += 1
            outstanding.lastSentNanoseconds = now
            groups[group].target = replica
            groups[group].outstanding = outstanding
            directives.append(.send(outstanding.request, group: group, replica: replica))
        }
        return directives
    }

    /// The shell lost its connection to `replica` of `group` (or could not make one): requests
    /// outstanding there go to the next replica now instead of after the retry timeout, and new
    /// ones start there. Nothing happens in a group of one replica: there is nowhere else to go.
    public mutating func unreachable(group: Int, replica: Int, nowNanoseconds now: UInt64) -> [Directive] {
        var directives: [Directive] = []
        guard config.replicaCounts[group] > 1, groups[group].target == replica else { return directives }
        groups[group].target = (replica + 1) % config.replicaCounts[group]
        if var outstanding = groups[group].outstanding {
            outstanding.lastSentNanoseconds = now
            outstanding.redirectsInRow = 0
            groups[group].outstanding = outstanding
            directives.append(.send(outstanding.request, group: group, replica: groups[group].target))
        }
        return directives
    }

    /// Opens a session in every group that has none and is not opening one, without a command.
    public mutating func openSessions(nowNanoseconds now: UInt64) -> [Directive] {
        var directives: [Directive] = []
        for group in groups.indices where groups[group].session == nil {
            groups[group].sessionWanted = true
            pump(group, now: now, into: &directives)
        }
        return directives
    }

    /// Whether every group has an open session.
    public var sessionsOpen: Bool { groups.allSatisfy { $0.session != nil } }

    /// Time passes: commands past their deadline fail, and requests unanswered for the retry
    /// timeout go to the next replica. Call it at `nextDeadlineNanoseconds` (earlier is harmless).
    public mutating func tick(nowNanoseconds now: UInt64) -> [Directive] {
        var directives: [Directive] = []
        for group in groups.indices {
            groups[group].waiting.removeAll { waiting in
                guard let deadline = waiting.deadlineNanoseconds, deadline <= now else { return false }
                directives.append(.failed(waiting.operation, waiting.command, .timedOut(sent: false)))
                return true
            }
            guard var outstanding = groups[group].outstanding else { continue }
            if outstanding.operation == nil, groups[group].waiting.isEmpty, !groups[group].sessionWanted {
                // Every command that wanted this session is gone: stop opening it. A late reply
                // opens a session nobody uses, which the table evicts in time.
                groups[group].outstanding = nil
            } else if let operation = outstanding.operation, let deadline = outstanding.deadlineNanoseconds, deadline <= now {
                // The sequence stays used: the next command gets a higher one.
                groups[group].outstanding = nil
                directives.append(.failed(operation, outstanding.request.command, .timedOut(sent: true)))
                pump(group, now: now, into: &directives)
            } else if now &- outstanding.lastSentNanoseconds >= config.retryTimeoutNanoseconds {
                groups[group].target = (groups[group].target + 1) % config.replicaCounts[group]
                outstanding.lastSentNanoseconds = now
                outstanding.redirectsInRow = 0
                groups[group].outstanding = outstanding
                directives.append(.send(outstanding.request, group: group, replica: groups[group].target))
            }
        }
        return directives
    }

    // MARK: Queries

    /// The earliest time `tick` has something to do, nil when nothing is outstanding or waiting
    /// with a deadline.
    public var nextDeadlineNanoseconds: UInt64? {
        var earliest: UInt64?
        func consider(_ time: UInt64?) {
            guard let time else { return }
            earliest = min(earliest ?? time, time)
        }
        for group in groups {
            for waiting in group.waiting { consider(waiting.deadlineNanoseconds) }
            guard let outstanding = group.outstanding else { continue }
            consider(outstanding.lastSentNanoseconds &+ config.retryTimeoutNanoseconds)
            consider(outstanding.deadlineNanoseconds)
        }
        return earliest
    }

    /// Nothing outstanding and nothing waiting, in any group.
    public var isIdle: Bool { groups.allSatisfy { $0.outstanding == nil && $0.waiting.isEmpty } }

    /// The session open in `group`, if any.
    public func session(ofGroup group: Int) -> ClientID? { groups[group].session }

    /// The replica `group`'s requests go to now.
    public func target(ofGroup group: Int) -> Int { groups[group].target }

    /// The request in flight for `group` (its `openSession` included).
    public func outstanding(ofGroup group: Int) -> Request? { groups[group].outstanding?.request }

    /// The request `operation` is in flight as, if it is.
    public func request(of operation: OperationID) -> Request? {
        groups.lazy.compactMap(\.outstanding).first { $0.operation == operation }?.request
    }

    /// Whether a reply addressed to `client` from `group` may be this core's: its nonce or its
    /// session there.
    public func owns(_ client: ClientID, group: Int) -> Bool { client == nonce || groups[group].session == client }

    // MARK: Sending

    /// Sends the group's next request if nothing is outstanding: its session's opening, or the
    /// first waiting command.
    private mutating func pump(_ group: Int, now: UInt64, into directives: inout [Directive]) {
        guard groups[group].outstanding == nil else { return }
        let request: Request
        if let session = groups[group].session, let first = groups[group].waiting.first {
            groups[group].waiting.removeFirst()
            groups[group].sequence += 1
            request = Request(client: session, sequence: groups[group].sequence, command: first.command)
            groups[group].outstanding = Outstanding(operation: first.operation, request: request, deadlineNanoseconds: first.deadlineNanoseconds,
                                                    lastSentNanoseconds: now)
        } else if groups[group].session == nil, !groups[group].waiting.isEmpty || groups[group].sessionWanted {
            groups[group].opens += 1
            request = Request(client: nonce, sequence: groups[group].opens, command: .openSession)
            groups[group].outstanding = Outstanding(operation: nil, request: request, deadlineNanoseconds: nil, lastSentNanoseconds: now)
        } else {
            return
        }
        directives.append(.send(request, group: group, replica: groups[group].target))
    }
}
