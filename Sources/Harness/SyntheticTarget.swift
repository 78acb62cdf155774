import Composition
import DequeModule
import NIOCore
import Services
import Workload

/// A target of known capacity: one unreplicated state machine that completes at most
/// `capacityOperationsPerSecond` requests a second, first come first served, whatever the load.
///
/// It is what the harness's own accounting is checked against (offered, achieved and unfinished
/// under overload; the saturation knee): a system whose true throughput is a number, not a
/// measurement. Service time is paced by a token bucket refilled from the clock, so a timer that
/// fires late completes the requests it owes at once and the long-run rate stays exact.
public final class SyntheticTarget: LoadTarget, @unchecked Sendable {
    // Everything mutable is touched only on `loop` (the unchecked Sendable rests on that).
    public let router: Router
    public let capacityOperationsPerSecond: Double
    private let loop: EventLoop
    private let onReply: @Sendable (Int, ClientReply) -> Void
    private var machine = StateMachine()
    private var queue = Deque<Request>()
    /// Completions owed but not yet served; capped at `burstOperationsMax` so an idle target does
    /// not save up capacity.
    private var tokens = 0.0
    private let burstOperationsMax: Double
    private var lastRefillNanoseconds: UInt64 = 0
    private var timer: RepeatedTask?
    public private(set) var completed: UInt64 = 0

    /// - Parameters:
    ///   - tickMicroseconds: how often the pacing timer fires; completions are handed out in
    ///     bursts of at most one tick's worth.
    ///   - rampSeconds: the capacity grows linearly from a quarter to all of it over this long after
    ///     the start (a system warming up: caches, JIT, leader election), so a sweep's steadiness
    ///     detection has a start to discard; 0: full capacity at once.
    public init(capacityOperationsPerSecond: Double, loop: EventLoop, tickMicroseconds: Int64 = 1_000, rampSeconds: Double = 0,
                onReply: @escaping @Sendable (Int, ClientReply) -> Void) {
        precondition(rampSeconds >= 0, "rampSeconds must not be negative, got \(rampSeconds)")
        self.rampSeconds = rampSeconds
        precondition(capacityOperationsPerSecond > 0, "capacity must be positive, got \(capacityOperationsPerSecond)")
        router = Router(spec: CompositionSpec(name: "synthetic",
                                              groups: [CompositionSpec.Group(name: "synthetic", replicas: 1, toleratedFailures: 0, mode: .multiLeader,
                                                                             services: [.kv, .lock, .log])],
                                              extendPutsIntoLog: false, partition: nil))
        self.capacityOperationsPerSecond = capacityOperationsPerSecond
        self.loop = loop
        self.onReply = onReply
        burstOperationsMax = max(1, capacityOperationsPerSecond * Double(tickMicroseconds) / 1e6)
        self.tickMicroseconds = tickMicroseconds
    }

    private let tickMicroseconds: Int64
    private let rampSeconds: Double
    private var startNanoseconds: UInt64 = 0

    /// The capacity `elapsedSeconds` after the start.
    private func capacity(elapsedSeconds: Double) -> Double {
        guard rampSeconds > 0, elapsedSeconds < rampSeconds else { return capacityOperationsPerSecond }
        return capacityOperationsPerSecond * (0.25 + 0.75 * elapsedSeconds / rampSeconds)
    }

    public var groupCount: Int { 1 }
    public func replicaCount(of group: Int) -> Int { 1 }

    public func start() {
        loop.execute { [self] in
            lastRefillNanoseconds = loop.now.uptimeNanoseconds
            startNanoseconds = lastRefillNanoseconds
            timer = loop.scheduleRepeatedTask(initialDelay: .microseconds(tickMicroseconds), delay: .microseconds(tickMicroseconds)) { [self] _ in
                serve()
            }
        }
    }

    public func stop() -> EventLoopFuture<Void> {
        // Once stopped (on the loop), nothing more is served or answered: the load generator's
        // loop may be shut down right after this future completes.
        loop.submit { [self] in
            timer?.cancel()
            stopped = true
        }
    }

    public func submit(_ request: Request, group: Int, replica: Int) {
        loop.execute { [self] in queue.append(request) }
    }

    /// Faults do not apply to a synthetic target; timed events are only labelled.
    public func inject(_ action: TimedEvent.Action, group: Int) {}

    private var stopped = false

    private func serve() {
        guard !stopped else { return }
        let now = loop.now.uptimeNanoseconds
        tokens += Double(now &- lastRefillNanoseconds) / 1e9 * capacity(elapsedSeconds: Double(now &- startNanoseconds) / 1e9)
        lastRefillNanoseconds = now
        // Late timers owe what they missed while there is work; idle time saves nothing.
        if queue.isEmpty { tokens = min(tokens, burstOperationsMax) }
        while tokens >= 1, let request = queue.popFirst() {
            tokens -= 1
            completed += 1
            let (reply, _) = machine.applyReportingExecution(request)
            onReply(0, ClientReply(client: request.client, sequence: request.sequence, reply: reply))
        }
        if queue.isEmpty { tokens = min(tokens, burstOperationsMax) }
    }
}
