import Composition
import Linearizability
import Primitives
import Runtime
import Services

/// A simulated client with the proxy built in: it routes each operation by the composition's
/// `Router`, opens a session in a group the first time it needs one, issues its operations one
/// at a time, retries a request on a timeout at the next replica of the same group, and records
/// what it saw for the linearizability check.
struct SimulatedClient {
    let index: Int
    /// Routes the reply to `openSession` before the session id is known.
    let nonce: ClientID
    private var sessions: [Int: ClientID] = [:]
    private var sequences: [Int: UInt64] = [:]
    private var remaining: Int
    /// The request in flight, its group, and its history entry (nil for `openSession`).
    private var current: (request: Request, group: Int, historyIndex: Int?)?
    /// The operation waiting for its group's session to open.
    private var waitingCommand: (command: Command, historyIndex: Int)?
    private var target = 0
    private(set) var attempt = 0
    private(set) var history: [HistoryOperation] = []
    /// One past the highest log index this client has seen, to aim retrieves and truncates.
    private var logEndSeen: UInt64 = 0
    /// Operations generated so far.
    private var generated = 0

    init(index: Int, operations: Int) {
        self.index = index
        nonce = ClientID((1 << 48) + UInt64(index))
        remaining = operations
    }

    var isIdle: Bool { current == nil }
    var isDone: Bool { remaining == 0 && current == nil }

    /// Whether a reply from `group` addressed to `client` is this client's.
    func owns(_ client: ClientID, group: Int) -> Bool { client == nonce || sessions[group] == client }

    var statusDescription: String {
        guard let current else { return "client \(index): idle, \(remaining) left" }
        return "client \(index): waiting for \(current.request) in group \(current.group), \(remaining) left, attempt \(attempt)"
    }

    /// The next request to send, to which group and replica; nil when busy or done.
    mutating func next(now: Instant, random: inout SplitMix64, router: Router, replicas: (Int) -> Int) -> (group: Int, replica: Int, Request)? {
        guard current == nil, remaining > 0 else { return nil }
        let command = generate(&random)
        let group = router.group(for: command)
        attempt += 1
        target = Int(random.next() % UInt64(replicas(group)))
        let historyIndex = history.count
        guard let session = sessions[group] else {
            // The invocation starts now: opening the session is part of this operation's latency.
            history.append(HistoryOperation(client: nonce, command: command, invokeNanoseconds: now.nanoseconds, completion: nil))
            waitingCommand = (command, historyIndex)
            let open = Request(client: nonce, sequence: 1, command: .openSession)
            current = (open, group, nil)
            return (group, target, open)
        }
        history.append(HistoryOperation(client: session, command: command, invokeNanoseconds: now.nanoseconds, completion: nil))
        return send(command, group: group, session: session, historyIndex: historyIndex)
    }

    private mutating func send(_ command: Command, group: Int, session: ClientID, historyIndex: Int) -> (group: Int, replica: Int, Request) {
        sequences[group, default: 0] += 1
        let request = Request(client: session, sequence: sequences[group]!, command: command)
        history[historyIndex].client = session
        current = (request, group, historyIndex)
        return (group, target, request)
    }

    /// The same request again, at the next replica of its group.
    mutating func retry(replicas: (Int) -> Int) -> (group: Int, replica: Int, Request)? {
        guard let current else { return nil }
        target = (target + 1) % replicas(current.group)
        attempt += 1
        return (current.group, target, current.request)
    }

    /// Handles a reply from `group`; returns a follow-up request to send at once (the operation
    /// that waited for its session).
    mutating func receive(_ reply: ClientReply, group: Int, now: Instant) -> (group: Int, replica: Int, Request)? {
        guard let current, current.group == group, reply.client == current.request.client, reply.sequence == current.request.sequence else { return nil }
        self.current = nil
        guard let historyIndex = current.historyIndex else {
            guard case let .session(id) = reply.reply, let waiting = waitingCommand else {
                self.current = current
                return nil
            }
            sessions[group] = id
            waitingCommand = nil
            return send(waiting.command, group: group, session: id, historyIndex: waiting.historyIndex)
        }
        history[historyIndex].completion = HistoryOperation.Completion(nanoseconds: now.nanoseconds, reply: reply.reply)
        remaining -= 1
        switch reply.reply {
        case let .index(index): logEndSeen = max(logEndSeen, index + 1)
        case let .entries(first, entries): logEndSeen = max(logEndSeen, first + UInt64(entries.count))
        default: break
        }
        return nil
    }

    /// A small key space so that clients contend, over every operation of the three services.
    private mutating func generate(_ random: inout SplitMix64) -> Command {
        let key = "k\(random.next() % 3)"
        let lock = "L\(random.next() % 2)"
        // Unique per client and operation, so a lost or stale write is visible in the final state.
        generated += 1
        let tag = "c\(index)#\(generated)"
        switch random.next() % 100 {
        case 0..<18: return .kvGet(key: key)
        case 18..<36: return .kvPut(key: key, value: tag)
        case 36..<48: return .lockAcquire(name: lock)
        case 48..<60: return .lockRelease(name: lock)
        case 60..<80: return .logAppend(entry: tag)
        case 80..<95:
            let first = logEndSeen == 0 ? 0 : random.next() % logEndSeen
            return .logRetrieve(first: first, last: first + random.next() % 3)
        default:
            return .logTruncate(index: logEndSeen == 0 ? 0 : random.next() % (logEndSeen / 2 + 1))
        }
    }
}
