import Linearizability
import Primitives
import Runtime
import Services

/// A simulated client: opens a session, then issues its operations one at a time, retrying a
/// request on a timeout at the next replica, and records what it saw for the linearizability check.
struct SimulatedClient {
    let index: Int
    /// Routes the reply to `openSession` before the session id is known.
    let nonce: ClientID
    private(set) var session: ClientID?
    private var sequence: UInt64 = 0
    private var remaining: Int
    private var current: (request: Request, historyIndex: Int?)?
    private var target = 0
    private(set) var attempt = 0
    private(set) var history: [HistoryOperation] = []
    /// One past the highest log index this client has seen, to aim retrieves and truncates.
    private var logEndSeen: UInt64 = 0

    init(index: Int, operations: Int) {
        self.index = index
        nonce = ClientID((1 << 48) + UInt64(index))
        remaining = operations
    }

    var isIdle: Bool { current == nil }
    var isDone: Bool { session != nil && remaining == 0 && current == nil }

    func owns(_ client: ClientID) -> Bool { client == nonce || client == session }

    var statusDescription: String {
        guard let current else { return "client \(index): idle, \(remaining) left" }
        return "client \(index): waiting for \(current.request), \(remaining) left, attempt \(attempt)"
    }

    /// The next request to send, and where; nil when busy or done.
    mutating func next(now: Instant, random: inout SplitMix64, replicaCount: Int) -> (Int, Request)? {
        guard current == nil else { return nil }
        target = Int(random.next() % UInt64(replicaCount))
        attempt += 1
        guard let session else {
            let request = Request(client: nonce, sequence: 1, command: .openSession)
            current = (request, nil)
            return (target, request)
        }
        guard remaining > 0 else { return nil }
        sequence += 1
        let request = Request(client: session, sequence: sequence, command: generate(&random))
        history.append(HistoryOperation(client: session, command: request.command, invokeNanoseconds: now.nanoseconds, completion: nil))
        current = (request, history.count - 1)
        return (target, request)
    }

    /// The same request again, at the next replica.
    mutating func retry(replicaCount: Int) -> (Int, Request)? {
        guard let current else { return nil }
        target = (target + 1) % replicaCount
        attempt += 1
        return (target, current.request)
    }

    mutating func receive(_ reply: ClientReplyOut, now: Instant) {
        guard let current, reply.client == current.request.client, reply.sequence == current.request.sequence else { return }
        if let historyIndex = current.historyIndex {
            history[historyIndex].completion = HistoryOperation.Completion(nanoseconds: now.nanoseconds, reply: reply.reply)
            remaining -= 1
            switch reply.reply {
            case let .index(index): logEndSeen = max(logEndSeen, index + 1)
            case let .entries(first, entries): logEndSeen = max(logEndSeen, first + UInt64(entries.count))
            default: break
            }
        } else if case let .session(id) = reply.reply {
            session = id
        }
        self.current = nil
    }

    /// A small key space so that clients contend, over every operation of the three services.
    private mutating func generate(_ random: inout SplitMix64) -> Command {
        let key = "k\(random.next() % 3)"
        let lock = "L\(random.next() % 2)"
        switch random.next() % 100 {
        case 0..<18: return .kvGet(key: key)
        case 18..<36: return .kvPut(key: key, value: "c\(index).\(sequence)")
        case 36..<48: return .lockAcquire(name: lock)
        case 48..<60: return .lockRelease(name: lock)
        case 60..<80: return .logAppend(entry: "c\(index).\(sequence)")
        case 80..<95:
            let first = logEndSeen == 0 ? 0 : random.next() % logEndSeen
            return .logRetrieve(first: first, last: first + random.next() % 3)
        default:
            return .logTruncate(index: logEndSeen == 0 ? 0 : random.next() % (logEndSeen / 2 + 1))
        }
    }
}
