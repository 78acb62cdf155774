import Composition
import Linearizability
import Primitives
import Services

/// A simulated client: a thin shell over `ProxyCore`, the request path the real client and the
/// load driver use, so the simulator tests the proxy that gets benchmarked. The shell generates
/// operations one at a time, hands the core's sends to the simulator, and records what it saw
/// for the linearizability check.
struct SimulatedClient {
    /// A replica to send to, in a group.
    typealias Send = (group: Int, replica: Int, Request)

    let index: Int
    private var proxy: ProxyCore
    private var remaining: Int
    /// The operation in flight and its history entry.
    private var current: (operation: ProxyCore.OperationID, historyIndex: Int)?
    private var recorded: [HistoryOperation] = []
    /// One past the highest log index this client has seen, to aim retrieves and truncates.
    private var logEndSeen: UInt64 = 0
    /// Operations generated so far.
    private var generated = 0

    init(index: Int, operations: Int, proxy: ProxyCore) {
        self.index = index
        self.proxy = proxy
        remaining = operations
    }

    var isIdle: Bool { current == nil }
    var isDone: Bool { remaining == 0 && current == nil }
    /// When the core next wants a `tick`.
    var nextDeadline: Instant? { proxy.nextDeadlineNanoseconds.map(Instant.init(nanoseconds:)) }

    /// Whether a reply from `group` addressed to `client` is this client's.
    func owns(_ client: ClientID, group: Int) -> Bool { proxy.owns(client, group: group) }

    /// The history so far. An operation still in flight is labelled with the session it was sent
    /// in (it may take effect), one still waiting for its session with the nonce (it cannot).
    var history: [HistoryOperation] {
        guard let current, let request = proxy.request(of: current.operation) else { return recorded }
        var history = recorded
        history[current.historyIndex].client = request.client
        return history
    }

    var statusDescription: String {
        guard let current else { return "client \(index): idle, \(remaining) left" }
        let group = proxy.router.group(for: recorded[current.historyIndex].command)
        let request = proxy.outstanding(ofGroup: group).map { "\($0)" } ?? "nothing"
        return "client \(index): \(current.operation) waiting in group \(group) with \(request) out to replica \(proxy.target(ofGroup: group)), \(remaining) left"
    }

    /// Starts the next operation; returns what to send (nothing when busy or done).
    mutating func next(now: Instant, random: inout SplitMix64) -> [Send] {
        guard current == nil, remaining > 0 else { return [] }
        let command = generate(&random)
        let submission = proxy.submit(command, nowNanoseconds: now.nanoseconds)
        // The invocation starts now: opening a session is part of the operation's latency.
        current = (submission.operation, recorded.count)
        recorded.append(HistoryOperation(client: proxy.nonce, command: command, invokeNanoseconds: now.nanoseconds, completion: nil))
        return carryOut(submission.directives, now: now)
    }

    mutating func receive(_ reply: ClientReply, group: Int, now: Instant) -> [Send] {
        carryOut(proxy.receive(reply, group: group, nowNanoseconds: now.nanoseconds), now: now)
    }

    mutating func tick(now: Instant) -> [Send] {
        carryOut(proxy.tick(nowNanoseconds: now.nanoseconds), now: now)
    }

    private mutating func carryOut(_ directives: [ProxyCore.Directive], now: Instant) -> [Send] {
        var sends: [Send] = []
        for directive in directives {
            switch directive {
            case let .send(request, group, replica):
                sends.append((group, replica, request))
            case let .completed(operation, request, reply):
                guard let current, current.operation == operation else {
                    preconditionFailure("client \(index): \(operation) completed, but \(String(describing: self.current)) is in flight")
                }
                recorded[current.historyIndex].client = request.client
                recorded[current.historyIndex].completion = HistoryOperation.Completion(nanoseconds: now.nanoseconds, reply: reply)
                self.current = nil
                remaining -= 1
                switch reply {
                case let .index(index): logEndSeen = max(logEndSeen, index + 1)
                case let .entries(first, entries): logEndSeen = max(logEndSeen, first + UInt64(entries.count))
                default: break
                }
            case let .failed(operation, command, failure):
                // Simulated operations have no deadline and wait alone, so neither can happen.
                preconditionFailure("client \(index): \(operation) \(command) failed: \(failure)")
            }
        }
        return sends
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
