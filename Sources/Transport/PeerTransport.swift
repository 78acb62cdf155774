import NIOCore
import NIOPosix
import Primitives
import Wire

/// How one replica reaches the others of its group.
public struct PeerTransportConfig: Sendable {
    public var cluster: ClusterIdentity
    public var group: UInt32
    /// This replica's id.
    public var replica: Int
    /// Where to accept peers (port 0 picks a free port; `start()` reports it).
    public var listenAddress: SocketAddress
    /// Every other replica of the group and its peer address. An entry for `replica` is ignored.
    public var peers: [Int: SocketAddress]
    public var limits: WireLimits
    /// Bytes queued per peer before new frames are dropped: frames waiting for a connection, for
    /// an emulated delay, or for the socket. Default (nil): two frames of `limits.frameBytesMax`.
    /// It must hold one delay's worth of traffic when a delay is set, and at least one frame.
    public var sendQueueBytesMax: Int
    /// First reconnect delay; it doubles per failed attempt up to `reconnectDelayMicrosecondsMax`,
    /// and each wait is drawn uniformly from its upper half (jitter). Recommended 10 ms and 1 s.
    public var reconnectDelayMicrosecondsInitial: Int64
    public var reconnectDelayMicrosecondsMax: Int64
    /// Emulated one-way delay per peer for frames leaving this replica (the kernel has no netem).
    public var delayMicroseconds: [Int: Int64]
    /// Seeds the reconnect jitter.
    public var jitterSeed: UInt64
    /// Groups whose replicas may open extension links to this replica (handshake role
    /// `extensionOrigin`), with their replica counts: the origin groups of extensions into this
    /// replica's group. Empty: none may.
    public var extensionOrigins: [UInt32: Int] = [:]

    public init(cluster: ClusterIdentity, group: UInt32, replica: Int, listenAddress: SocketAddress, peers: [Int: SocketAddress],
                limits: WireLimits = .standard, sendQueueBytesMax: Int? = nil,
                reconnectDelayMicrosecondsInitial: Int64 = 10_000, reconnectDelayMicrosecondsMax: Int64 = 1_000_000,
                delayMicroseconds: [Int: Int64] = [:], jitterSeed: UInt64 = 0) {
        self.cluster = cluster
        self.group = group
        self.replica = replica
        self.listenAddress = listenAddress
        self.peers = peers.filter { $0.key != replica }
        self.limits = limits
        self.sendQueueBytesMax = sendQueueBytesMax ?? 2 * (limits.frameBytesMax + 4)
        self.reconnectDelayMicrosecondsInitial = reconnectDelayMicrosecondsInitial
        self.reconnectDelayMicrosecondsMax = reconnectDelayMicrosecondsMax
        self.delayMicroseconds = delayMicroseconds
        self.jitterSeed = jitterSeed
    }

    func validate() {
        precondition(replica >= 0 && replica <= Int(UInt32.max), "replica id \(replica) does not fit a u32")
        for id in peers.keys { precondition(id >= 0 && id <= Int(UInt32.max), "peer id \(id) does not fit a u32") }
        precondition(sendQueueBytesMax >= limits.frameBytesMax + 4,
                     "sendQueueBytesMax \(sendQueueBytesMax) cannot hold one frame of \(limits.frameBytesMax) bytes")
        precondition(reconnectDelayMicrosecondsInitial > 0 && reconnectDelayMicrosecondsInitial <= reconnectDelayMicrosecondsMax,
                     "reconnect delays must satisfy 0 < initial (\(reconnectDelayMicrosecondsInitial)) <= max (\(reconnectDelayMicrosecondsMax))")
        for (peer, delay) in delayMicroseconds { precondition(delay >= 0, "negative delay \(delay) µs to peer \(peer)") }
    }
}

/// The links between one replica and the other replicas of its group, over TCP.
///
/// Connections: one per pair of replicas. The replica with the lower id dials, the higher one
/// accepts, so both ends agree on the one connection without negotiating. An accepted handshake
/// from a lower id replaces any connection already held for it (the peer restarted, and the old
/// connection's close has not been noticed yet). The dialer redials after a failed dial or a
/// close, waiting `reconnectDelayMicrosecondsInitial` doubling to `…Max`, with jitter; the wait
/// goes back to the initial value once the peer has sent a frame on the new connection.
///
/// Frames to a peer wait in its bounded `OutboundQueue` (see there: drop-newest when full, one
/// flush per loop turn, emulated delay), which survives reconnects: frames queued while a peer is
/// away leave when it is back.
///
/// Partitions (`block`): frames to a blocked peer are dropped where they leave and frames from
/// it are dropped on arrival, both counted. The connection stays up: healing is then instant (no
/// redial, no backoff, no handshake), and a cut made on one side only still cuts both directions
/// because this end drops what arrives as well. Extension links (other groups) are not blocked.
///
/// Sendable: every mutable field is touched only on `loop` (public methods hop onto it; channel
/// callbacks run on it because every channel of this transport, accepted or dialed, is created on
/// this one loop). That confinement is what makes the unchecked `Sendable` sound.
public final class PeerTransport: @unchecked Sendable {
    public typealias FrameCallback = @Sendable (_ from: Int, _ kind: UInt8, _ payload: [UInt8]) -> Void
    public typealias ExtensionFrameCallback = @Sendable (_ from: ExtensionLinkID, _ kind: UInt8, _ payload: [UInt8]) -> Void

    private enum State {
        case idle
        case started
        case stopped
    }

    /// One peer's link, across connections.
    private final class Link {
        let replica: Int
        let address: SocketAddress
        let queue: OutboundQueue
        var channel: Channel?
        var everConnected = false
        var heardOnConnection = false
        var reconnectAttempts = 0
        var reconnectTimer: Scheduled<Void>?

        init(replica: Int, address: SocketAddress, queue: OutboundQueue) {
            self.replica = replica
            self.address = address
            self.queue = queue
        }
    }

    public let loop: EventLoop
    public let config: PeerTransportConfig
    private let log: TransportLog
    private let onFrame: FrameCallback
    private let expectation: HandshakeExpectation
    private var state = State.idle
    private var links: [Int: Link] = [:]
    private var serverChannel: Channel?
    /// Every open connection (accepted ones before their handshake too), so `stop` closes all.
    private var channels: [ObjectIdentifier: Channel] = [:]
    /// The peer behind each established connection.
    private var owners: [ObjectIdentifier: Int] = [:]
    private var random: SplitMix64
    /// Peers cut off by a partition (`block`).
    private var blocked: Set<Int> = []
    /// Accepted extension links, by connection.
    private var extensionLinks: [ObjectIdentifier: (id: ExtensionLinkID, channel: Channel)] = [:]
    private var extensionLinkCount: UInt64 = 0
    private let onExtensionFrame: ExtensionFrameCallback?

    /// - Parameters:
    ///   - loop: the loop the replica runs on; every callback is invoked on it.
    ///   - log: one line per refused connection, protocol error or failed dial.
    ///   - onFrame: each frame received from a peer, in the order that peer sent it.
    ///   - onExtensionFrame: each frame received on an extension link (see
    ///     `PeerTransportConfig.extensionOrigins`), with the link's authenticated origin.
    public init(loop: EventLoop, config: PeerTransportConfig, log: @escaping TransportLog, onFrame: @escaping FrameCallback,
                onExtensionFrame: ExtensionFrameCallback? = nil) {
        config.validate()
        self.loop = loop
        self.config = config
        self.log = log
        self.onFrame = onFrame
        self.onExtensionFrame = onExtensionFrame
        expectation = HandshakeExpectation(cluster: config.cluster, group: config.group, role: .peer)
        random = SplitMix64(seed: config.jitterSeed)
        for (replica, address) in config.peers {
            let queue = OutboundQueue(loop: loop, sendQueueBytesMax: config.sendQueueBytesMax)
            queue.delayMicroseconds = config.delayMicroseconds[replica] ?? 0
            links[replica] = Link(replica: replica, address: address, queue: queue)
        }
    }

    private var label: String { "replica \(config.replica) peer port" }

    /// Binds the listening socket and starts dialing the peers with higher ids. The future holds
    /// the bound address.
    public func start() -> EventLoopFuture<SocketAddress> {
        loop.flatSubmit { self.startOnLoop() }
    }

    /// Closes the listener and every connection, and stops reconnecting. Queued frames are lost.
    public func stop() -> EventLoopFuture<Void> {
        loop.flatSubmit { self.stopOnLoop() }
    }

    /// Sends one frame of `kind` to `replica` (any thread). Dropped, and counted, when that
    /// peer's queue is full; ignored once stopped.
    public func send(to replica: Int, kind: UInt8, payload: some Collection<UInt8>) {
        var buffer = ByteBufferAllocator().buffer(capacity: FrameEncoding.headerBytes + payload.count)
        FrameEncoding.write(kind: kind, payload: payload, into: &buffer)
        send(to: replica, frame: buffer)
    }

    /// Sends one complete frame (for instance `WireFormat.encode`'s output) to `replica`.
    public func send(to replica: Int, frame: [UInt8]) {
        send(to: replica, frame: ByteBuffer(bytes: frame))
    }

    private func send(to replica: Int, frame: ByteBuffer) {
        guard loop.inEventLoop else {
            loop.execute { self.send(to: replica, frame: frame) }
            return
        }
        guard let link = links[replica] else { preconditionFailure("replica \(config.replica) has no peer \(replica)") }
        guard state != .stopped else { return }
        guard !blocked.contains(replica) else {
            link.queue.counters.framesBlockedSent += 1
            return
        }
        link.queue.enqueue(frame)
    }

    /// Sends one complete frame on every extension link from `group` (answers about an origin's
    /// steps concern all of its replicas that are connected here).
    public func send(toExtensionLinksOf group: UInt32, frame: [UInt8]) {
        loop.execute {
            guard self.state == .started else { return }
            for link in self.extensionLinks.values where link.id.group == group {
                link.channel.writeAndFlush(ByteBuffer(bytes: frame), promise: nil)
            }
        }
    }

    /// Changes the emulated one-way delay to `replica` for frames sent from now on.
    public func setDelay(to replica: Int, microseconds: Int64) {
        precondition(microseconds >= 0, "negative delay \(microseconds) µs")
        loop.execute {
            guard let link = self.links[replica] else { preconditionFailure("replica \(self.config.replica) has no peer \(replica)") }
            link.queue.delayMicroseconds = microseconds
        }
    }

    /// Cuts this replica off from `peers` (replacing the previous set; empty heals): from now on
    /// frames to them are dropped where they leave, frames still queued for them are dropped,
    /// and frames from them are dropped on arrival. Ids that are not peers are ignored.
    public func block(_ peers: Set<Int>) {
        loop.execute {
            self.blocked = peers.filter { self.links[$0] != nil }
            for peer in self.blocked {
                guard let link = self.links[peer] else { continue }
                link.queue.counters.framesBlockedSent += link.queue.discardPending()
            }
        }
    }

    /// The peers `block` cut off now.
    public func blockedPeers() -> EventLoopFuture<Set<Int>> {
        loop.submit { self.blocked }
    }

    /// The counters of every peer link.
    public func counters() -> EventLoopFuture<[Int: LinkCounters]> {
        loop.submit { self.links.mapValues { $0.queue.counters } }
    }

    // MARK: On the loop

    private func startOnLoop() -> EventLoopFuture<SocketAddress> {
        precondition(state == .idle, "PeerTransport.start called twice")
        state = .started
        let bootstrap = ServerBootstrap(group: loop)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                self.loop.preconditionInEventLoop()
                self.channels[ObjectIdentifier(channel)] = channel
                let handler = FrameHandler(
                    label: self.label, log: self.log,
                    onHandshake: { (handshake, channel) throws(HandshakeError) in try self.accept(handshake, on: channel) },
                    onFrame: { frame, channel in self.received(frame, on: channel) },
                    onWritable: { channel in self.writable(channel) },
                    onInactive: { channel in self.closed(channel) })
                return addFrameHandlers(to: channel, limits: self.config.limits.frameBytesMax, handler: handler)
            }
        return bootstrap.bind(to: config.listenAddress).flatMapThrowing { server in
            self.serverChannel = server
            if self.state == .stopped { server.close(promise: nil) }
            for link in self.links.values where link.replica > self.config.replica { self.dial(link) }
            guard let address = server.localAddress else { throw ChannelError.inappropriateOperationForState }
            return address
        }
    }

    private func stopOnLoop() -> EventLoopFuture<Void> {
        state = .stopped
        var closing: [EventLoopFuture<Void>] = []
        for link in links.values {
            link.reconnectTimer?.cancel()
            link.reconnectTimer = nil
            link.queue.clear()
            link.channel = nil
        }
        if let serverChannel { closing.append(serverChannel.close().recover { _ in }) }
        serverChannel = nil
        for channel in channels.values { closing.append(channel.close().recover { _ in }) }
        return EventLoopFuture.andAllComplete(closing, on: loop)
    }

    private func accept(_ handshake: Handshake, on channel: Channel) throws(HandshakeError) {
        if handshake.role == .extensionOrigin {
            try acceptExtension(handshake, on: channel)
            return
        }
        try expectation.check(handshake)
        let replica = Int(handshake.replica)
        guard replica != config.replica else { throw .replica(handshake.replica, reason: "it is this replica's own id") }
        guard let link = links[replica] else { throw .replica(handshake.replica, reason: "not a peer of replica \(config.replica)") }
        guard replica < config.replica else {
            throw .replica(handshake.replica, reason: "a higher id never dials replica \(config.replica) (the lower id dials)")
        }
        if let old = link.channel, old !== channel {
            owners[ObjectIdentifier(old)] = nil
            old.close(promise: nil)
        }
        adopt(channel, for: link)
    }

    /// An extension link: a replica of an origin group of this cluster, named by its handshake.
    /// Its frames reach `onExtensionFrame` only, never the group's consensus.
    private func acceptExtension(_ handshake: Handshake, on channel: Channel) throws(HandshakeError) {
        var origin = expectation
        origin.role = .extensionOrigin
        origin.group = handshake.group
        try origin.check(handshake)
        guard let replicas = config.extensionOrigins[handshake.group], onExtensionFrame != nil else {
            throw .group(got: handshake.group, expected: config.extensionOrigins.keys.min() ?? config.group)
        }
        guard Int(handshake.replica) < replicas else {
            throw .replica(handshake.replica, reason: "group \(handshake.group) has \(replicas) replicas")
        }
        extensionLinkCount += 1
        let id = ExtensionLinkID(group: handshake.group, replica: handshake.replica, connection: ObjectIdentifier(channel), number: extensionLinkCount)
        extensionLinks[ObjectIdentifier(channel)] = (id, channel)
    }

    private func adopt(_ channel: Channel, for link: Link) {
        if link.everConnected { link.queue.counters.reconnects += 1 }
        link.everConnected = true
        link.heardOnConnection = false
        link.channel = channel
        owners[ObjectIdentifier(channel)] = link.replica
        link.queue.detach()
        link.queue.attach(channel)
    }

    private func dial(_ link: Link) {
        guard state == .started, link.channel == nil else { return }
        // Closures below name the peer by id: `Link` is confined to the loop, not Sendable.
        let peer = link.replica
        let handshake = Handshake(cluster: config.cluster, role: .peer, group: config.group, replica: UInt32(config.replica))
        ClientBootstrap(group: loop)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(1))
            .channelInitializer { channel in
                let handler = FrameHandler(
                    label: "replica \(self.config.replica) link to replica \(peer)", log: self.log, onHandshake: nil,
                    onFrame: { frame, channel in self.received(frame, on: channel) },
                    onWritable: { channel in self.writable(channel) },
                    onInactive: { channel in self.closed(channel) })
                return addFrameHandlers(to: channel, limits: self.config.limits.frameBytesMax, handler: handler)
            }
            .connect(to: link.address)
            .whenComplete { result in self.dialed(peer, result: result, handshake: handshake) }
    }

    private func dialed(_ peer: Int, result: Result<Channel, any Error>, handshake: Handshake) {
        guard let link = links[peer] else { return }
        switch result {
        case let .success(channel):
            guard state == .started, channel.isActive, link.channel == nil else {
                channel.close(promise: nil)
                scheduleReconnect(link)
                return
            }
            channels[ObjectIdentifier(channel)] = channel
            // The handshake goes first: `adopt` writes the queued frames after it.
            channel.write(ByteBuffer(bytes: handshake.encodeFrame()), promise: nil)
            adopt(channel, for: link)
            channel.flush()
        case let .failure(error):
            log("replica \(config.replica): dialing replica \(peer) at \(link.address) failed: \(error)")
            scheduleReconnect(link)
        }
    }

    private func scheduleReconnect(_ link: Link) {
        guard state == .started, link.reconnectTimer == nil, link.replica > config.replica else { return }
        let shift = min(link.reconnectAttempts, 30)
        let ceiling = min(config.reconnectDelayMicrosecondsMax, config.reconnectDelayMicrosecondsInitial << Int64(shift))
        link.reconnectAttempts += 1
        let wait = ceiling / 2 + Int64(random.next() % UInt64(ceiling / 2 + 1))
        let peer = link.replica
        link.reconnectTimer = loop.scheduleTask(in: .microseconds(wait)) {
            guard let link = self.links[peer] else { return }
            link.reconnectTimer = nil
            self.dial(link)
        }
    }

    private func received(_ frame: RawFrame, on channel: Channel) {
        if let link = extensionLinks[ObjectIdentifier(channel)] {
            onExtensionFrame?(link.id, frame.kind, frame.payload)
            return
        }
        guard let replica = owners[ObjectIdentifier(channel)], let link = links[replica] else { return }
        guard !blocked.contains(replica) else {
            link.queue.counters.framesBlockedReceived += 1
            return
        }
        link.queue.counters.framesReceived += 1
        link.queue.counters.bytesReceived += FrameEncoding.headerBytes + frame.payload.count
        if !link.heardOnConnection {
            // The peer accepted us: the next outage starts its backoff from the beginning.
            link.heardOnConnection = true
            link.reconnectAttempts = 0
        }
        onFrame(replica, frame.kind, frame.payload)
    }

    private func writable(_ channel: Channel) {
        guard let replica = owners[ObjectIdentifier(channel)], let link = links[replica], link.channel === channel else { return }
        link.queue.drain()
    }

    private func closed(_ channel: Channel) {
        channels[ObjectIdentifier(channel)] = nil
        extensionLinks[ObjectIdentifier(channel)] = nil
        guard let replica = owners.removeValue(forKey: ObjectIdentifier(channel)), let link = links[replica],
              link.channel === channel else { return }
        link.channel = nil
        link.queue.detach()
        scheduleReconnect(link)
    }
}

/// One accepted extension link: the origin group and replica its handshake named, and the
/// connection (a replica that reconnects gets a new id).
public struct ExtensionLinkID: Hashable, Sendable, CustomStringConvertible {
    public let group: UInt32
    public let replica: UInt32
    let connection: ObjectIdentifier
    let number: UInt64

    public var description: String { "extension link \(number) from group \(group) replica \(replica)" }
}
