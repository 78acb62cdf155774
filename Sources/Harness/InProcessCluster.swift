import NIOConcurrencyHelpers
import Execution
import NIOCore
import Paxos
import Primitives
import Runtime
import Services

/// A replica group inside this process, on SwiftNIO event loops, with the real clock.
///
/// Each replica is a `ReplicaHost` confined to one event loop; replicas talk by scheduling work on
/// each other's loops, so the replica code is the same `ReplicaNode` the simulator steps, and only
/// the clock and the network differ. Crashes keep a replica's storage and lose everything else;
/// partitions drop messages across the cut, as in the simulator.
public final class InProcessCluster: @unchecked Sendable {
    // `hosts` is written once in `init` and only read afterwards; every host's state is confined
    // to its own event loop. That is what makes the unchecked `Sendable` sound.
    private(set) var hosts: [ReplicaHost] = []
    private let blocked = NIOLockedValueBox(Set<LinkPair>())
    /// Set once the run is over: from then on nothing crosses between event loops, so no loop
    /// schedules work on one that is shutting down.
    private let halted = NIOLockedValueBox(false)
    private let replySink: @Sendable (ClientReply) -> Void
    private let extensionSink: (@Sendable ([(index: UInt64, entry: String)]) -> Void)?
    private let appendedSink: (@Sendable ([(origin: UInt32, index: UInt64, logIndex: UInt64)]) -> Void)?
    public let config: PaxosConfig?

    /// - Parameters:
    ///   - config: the Paxos configuration, or nil for one unreplicated copy of the services.
    ///   - loops: event loops to place replicas on (round robin).
    ///   - onReply: called, on the replying replica's loop, with every reply to a client.
    ///   - extensionOrigin: when set, every executed put yields an extension step, reported to
    ///     `onExtensionSteps` (on the replica's loop).
    public init(config: PaxosConfig?, execution: ExecutionConfig = ExecutionConfig(), loops: [EventLoop], firstLoop: Int = 0,
                extensionOrigin: UInt32? = nil,
                onReply: @escaping @Sendable (ClientReply) -> Void,
                onExtensionSteps: (@Sendable ([(index: UInt64, entry: String)]) -> Void)? = nil,
                onExtensionAppended: (@Sendable ([(origin: UInt32, index: UInt64, logIndex: UInt64)]) -> Void)? = nil) {
        self.config = config
        replySink = onReply
        extensionSink = onExtensionSteps
        appendedSink = onExtensionAppended
        let count = config?.replicaCount ?? 1
        hosts = (0..<count).map { index in
            ReplicaHost(index: index, loop: loops[(firstLoop + index) % loops.count], config: config, execution: execution,
                        extensionOrigin: extensionOrigin)
        }
        for host in hosts { host.cluster = self }
    }

    public var replicaCount: Int { hosts.count }

    /// Starts every replica's tick timer.
    public func start() {
        for host in hosts { host.loop.execute { host.start() } }
    }

    /// Stops the tickers; after it has completed, no replica sends anything anywhere.
    public func stop() -> EventLoopFuture<Void> {
        halted.withLockedValue { $0 = true }
        let futures = hosts.map { host in host.loop.submit { host.stop() } }
        return EventLoopFuture.andAllSucceed(futures, on: hosts[0].loop)
    }

    /// A client request arriving at `replica`.
    public func submit(_ request: Request, to replica: Int) {
        guard !isHalted else { return }
        let host = hosts[replica % hosts.count]
        host.loop.execute { host.clientRequest(request) }
    }

    public func crash(_ replica: Int) {
        let host = hosts[replica]
        host.loop.execute { host.crash() }
    }

    public func restart(_ replica: Int) {
        let host = hosts[replica]
        host.loop.execute { host.restart() }
    }

    /// The replica handles nothing for `milliseconds`, then everything that arrived meanwhile.
    public func pause(_ replica: Int, milliseconds: Int) {
        let host = hosts[replica]
        host.loop.execute { host.pause(milliseconds: milliseconds) }
    }

    /// Replicas on different sides can no longer talk.
    public func partition(_ sides: [[Int]]) {
        var cut = Set<LinkPair>()
        for (index, side) in sides.enumerated() {
            for other in sides[(index + 1)...] {
                for a in side {
                    for b in other {
                        cut.insert(LinkPair(a, b))
                        cut.insert(LinkPair(b, a))
                    }
                }
            }
        }
        blocked.withLockedValue { $0 = cut }
    }

    public func heal() { blocked.withLockedValue { $0 = [] } }

    func route(_ outgoing: Outgoing, from sender: Int) {
        let to = outgoing.to.rawValue
        guard !isHalted, to >= 0, to < hosts.count, !blocked.withLockedValue({ $0.contains(LinkPair(sender, to)) }) else { return }
        let host = hosts[to]
        host.loop.execute { host.receive(outgoing.message, from: sender) }
    }

    private var isHalted: Bool { halted.withLockedValue { $0 } }

    func reply(_ reply: ClientReply) {
        guard !isHalted else { return }
        replySink(reply)
    }

    func extensionSteps(_ steps: [(index: UInt64, entry: String)]) { extensionSink?(steps) }

    func extensionsAppended(_ appended: [(origin: UInt32, index: UInt64, logIndex: UInt64)]) { appendedSink?(appended) }
}

struct LinkPair: Hashable, Sendable {
    var from: Int
    var to: Int
    init(_ from: Int, _ to: Int) {
        self.from = from
        self.to = to
    }
}

/// One replica on its event loop. All methods run on `loop`.
final class ReplicaHost: @unchecked Sendable {
    let index: Int
    let loop: EventLoop
    let config: PaxosConfig?
    let execution: ExecutionConfig
    let extensionOrigin: UInt32?
    unowned var cluster: InProcessCluster!
    private var node: ReplicaNode<MemoryStorage>?
    /// The services alone, for an unreplicated run.
    private var machine: ParallelExecutor?
    private var disk = MemoryStorage()
    private var ticker: RepeatedTask?
    /// While paused, inputs wait here, in arrival order.
    private var held: [Input]?

    private enum Input {
        case request(Request)
        case message(PaxosMessage, from: Int)
    }

    init(index: Int, loop: EventLoop, config: PaxosConfig?, execution: ExecutionConfig, extensionOrigin: UInt32?) {
        self.index = index
        self.loop = loop
        self.config = config
        self.execution = execution
        self.extensionOrigin = extensionOrigin
        if let config {
            node = ReplicaNode(core: PaxosReplica(config: config, id: ReplicaID(index), now: Self.now()), storage: disk, execution: execution,
                               extensionOrigin: extensionOrigin)
        } else {
            machine = ParallelExecutor(config: execution)
        }
    }

    static func now() -> Instant { Instant(nanoseconds: NIODeadline.now().uptimeNanoseconds) }

    func start() {
        guard let config else { return }
        // Ticks drive heartbeats, retransmission and batch deadlines; a batch delay shorter than
        // a millisecond needs ticks at least that often.
        let period = max(100, min(1_000, config.batchDelayMicrosecondsMax == 0 ? 1_000 : config.batchDelayMicrosecondsMax))
        ticker = loop.scheduleRepeatedTask(initialDelay: .microseconds(Int64(period)), delay: .microseconds(Int64(period))) { [self] _ in
            tick()
        }
    }

    func stop() {
        ticker?.cancel()
        ticker = nil
    }

    func pause(milliseconds: Int) {
        guard held == nil else { return }
        held = []
        loop.scheduleTask(in: .milliseconds(Int64(milliseconds))) { [self] in
            let inputs = held ?? []
            held = nil
            for input in inputs {
                switch input {
                case let .request(request): clientRequest(request)
                case let .message(message, sender): receive(message, from: sender)
                }
            }
        }
    }

    func clientRequest(_ request: Request) {
        if held != nil {
            held!.append(.request(request))
            return
        }
        if let machine {
            let reply = machine.execute([request])[0]
            cluster.reply(ClientReply(client: request.client, sequence: request.sequence, reply: reply))
            return
        }
        guard node != nil else { return }
        let output = node!.clientRequest(request, now: Self.now())
        carryOut(output)
    }

    func receive(_ message: PaxosMessage, from sender: Int) {
        if held != nil {
            held!.append(.message(message, from: sender))
            return
        }
        guard node != nil else { return }
        let output = node!.receive(message, from: ReplicaID(sender), now: Self.now())
        carryOut(output)
    }

    func tick() {
        guard node != nil, held == nil else { return }
        let output = node!.tick(now: Self.now())
        carryOut(output)
    }

    func crash() {
        guard let current = node else { return }
        disk = current.storage
        node = nil
    }

    func restart() {
        guard node == nil, let config else { return }
        node = ReplicaNode(core: PaxosReplica(config: config, id: ReplicaID(index), now: Self.now(), restoring: disk.records), storage: disk,
                           execution: execution, extensionOrigin: extensionOrigin)
    }

    private func carryOut(_ output: NodeOutput) {
        for outgoing in output.messages { cluster.route(outgoing, from: index) }
        for reply in output.replies { cluster.reply(reply) }
        if !output.extensionSteps.isEmpty { cluster.extensionSteps(output.extensionSteps) }
        if !output.extensionsAppended.isEmpty { cluster.extensionsAppended(output.extensionsAppended) }
    }
}
