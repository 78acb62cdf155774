import NIOCore
import NIOPosix
import Wire

/// Names one accepted client connection for the life of its `FrameServer` (never reused).
public struct ConnectionID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64

    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    public static func < (lhs: ConnectionID, rhs: ConnectionID) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String { "connection \(rawValue)" }
}

public struct FrameServerConfig: Sendable {
    public var cluster: ClusterIdentity
    public var group: UInt32
    /// Where to accept clients (port 0 picks a free port; `start()` reports it).
    public var listenAddress: SocketAddress
    public var limits: WireLimits
    /// Bytes queued per connection before new frames to it are dropped. Default (nil): two frames
    /// of `limits.frameBytesMax`; at
    /// least one frame.
    public var sendQueueBytesMax: Int

    public init(cluster: ClusterIdentity, group: UInt32, listenAddress: SocketAddress, limits: WireLimits = .standard,
                sendQueueBytesMax: Int? = nil) {
        let sendQueueBytesMax = sendQueueBytesMax ?? 2 * (limits.frameBytesMax + 4)
        precondition(sendQueueBytesMax >= limits.frameBytesMax + 4,
                     "sendQueueBytesMax \(sendQueueBytesMax) cannot hold one frame of \(limits.frameBytesMax) bytes")
        self.cluster = cluster
        self.group = group
        self.listenAddress = listenAddress
        self.limits = limits
        self.sendQueueBytesMax = sendQueueBytesMax
    }
}

/// Accepts client connections on one event loop, checks each one's client handshake, and hands
/// its frames to `onFrame`. Replies go back through `send(to:…)`, with the same bounded queue and
/// once-per-turn flush as peer links. A connection that breaks the protocol is closed with a log
/// line; the others are not affected.
///
/// Sendable for the same reason as `PeerTransport`: all mutable state is confined to `loop`, on
/// which every accepted channel lives.
public final class FrameServer: @unchecked Sendable {
    public typealias FrameCallback = @Sendable (_ connection: ConnectionID, _ kind: UInt8, _ payload: [UInt8]) -> Void
    public typealias ConnectionCallback = @Sendable (_ connection: ConnectionID, _ handshake: Handshake?) -> Void

    private final class Connection {
        let id: ConnectionID
        let channel: Channel
        let queue: OutboundQueue
        var established = false

        init(id: ConnectionID, channel: Channel, queue: OutboundQueue) {
            self.id = id
            self.channel = channel
            self.queue = queue
        }
    }

    public let loop: EventLoop
    public let config: FrameServerConfig
    private let log: TransportLog
    private let onFrame: FrameCallback
    private let onConnection: ConnectionCallback?
    private let expectation: HandshakeExpectation
    private var serverChannel: Channel?
    private var connections: [ObjectIdentifier: Connection] = [:]
    private var byID: [ConnectionID: Connection] = [:]
    private var nextID: UInt64 = 1
    private var stopped = false

    /// - Parameters:
    ///   - onFrame: each frame of an established connection, on `loop`, in arrival order.
    ///   - onConnection: called with the handshake when a connection is established, and with nil
    ///     when an established connection closes.
    public init(loop: EventLoop, config: FrameServerConfig, log: @escaping TransportLog,
                onConnection: ConnectionCallback? = nil, onFrame: @escaping FrameCallback) {
        self.loop = loop
        self.config = config
        self.log = log
        self.onFrame = onFrame
        self.onConnection = onConnection
        expectation = HandshakeExpectation(cluster: config.cluster, group: config.group, role: .client)
    }

    /// Binds the listening socket; the future holds the bound address.
    public func start() -> EventLoopFuture<SocketAddress> {
        loop.flatSubmit {
            let label = "group \(self.config.group) client port"
            return ServerBootstrap(group: self.loop)
                .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { channel in
                    self.registerConnection(channel)
                    let handler = FrameHandler(
                        label: label, log: self.log,
                        onHandshake: { (handshake, channel) throws(HandshakeError) in try self.accept(handshake, on: channel) },
                        onFrame: { frame, channel in self.received(frame, on: channel) },
                        onWritable: { channel in self.connections[ObjectIdentifier(channel)]?.queue.drain() },
                        onInactive: { channel in self.closed(channel) })
                    return addFrameHandlers(to: channel, limits: self.config.limits.frameBytesMax, handler: handler)
                }
                .bind(to: self.config.listenAddress)
                .flatMapThrowing { server in
                    self.serverChannel = server
                    if self.stopped { server.close(promise: nil) }
                    guard let address = server.localAddress else { throw ChannelError.inappropriateOperationForState }
                    return address
                }
        }
    }

    /// Closes the listener and every connection.
    public func stop() -> EventLoopFuture<Void> {
        loop.flatSubmit {
            self.stopped = true
            var closing: [EventLoopFuture<Void>] = []
            if let server = self.serverChannel { closing.append(server.close().recover { _ in }) }
            self.serverChannel = nil
            for connection in self.connections.values {
                connection.queue.clear()
                closing.append(connection.channel.close().recover { _ in })
            }
            return EventLoopFuture.andAllComplete(closing, on: self.loop)
        }
    }

    /// Sends one frame to `connection` (any thread). Ignored if the connection is gone; dropped,
    /// and counted, when its queue is full.
    public func send(to connection: ConnectionID, kind: UInt8, payload: some Collection<UInt8>) {
        var buffer = ByteBufferAllocator().buffer(capacity: FrameEncoding.headerBytes + payload.count)
        FrameEncoding.write(kind: kind, payload: payload, into: &buffer)
        send(to: connection, frame: buffer)
    }

    /// Sends one complete frame (for instance `WireFormat.encode`'s output).
    public func send(to connection: ConnectionID, frame: [UInt8]) {
        send(to: connection, frame: ByteBuffer(bytes: frame))
    }

    private func send(to connection: ConnectionID, frame: ByteBuffer) {
        guard loop.inEventLoop else {
            loop.execute { self.send(to: connection, frame: frame) }
            return
        }
        guard let link = byID[connection], link.established else { return }
        link.queue.enqueue(frame)
    }

    /// Closes one connection (for instance a client the owner decided to refuse).
    public func close(_ connection: ConnectionID) {
        loop.execute { self.byID[connection]?.channel.close(promise: nil) }
    }

    /// The counters of every open, established connection.
    public func counters() -> EventLoopFuture<[ConnectionID: LinkCounters]> {
        loop.submit {
            var result: [ConnectionID: LinkCounters] = [:]
            for (id, connection) in self.byID where connection.established { result[id] = connection.queue.counters }
            return result
        }
    }

    // MARK: On the loop

    private func registerConnection(_ channel: Channel) {
        loop.preconditionInEventLoop()
        let id = ConnectionID(nextID)
        nextID += 1
        let connection = Connection(id: id, channel: channel,
                                    queue: OutboundQueue(loop: loop, sendQueueBytesMax: config.sendQueueBytesMax))
        connections[ObjectIdentifier(channel)] = connection
        byID[id] = connection
    }

    private func accept(_ handshake: Handshake, on channel: Channel) throws(HandshakeError) {
        try expectation.check(handshake)
        guard let connection = connections[ObjectIdentifier(channel)] else { return }
        connection.established = true
        connection.queue.attach(channel)
        onConnection?(connection.id, handshake)
    }

    private func received(_ frame: RawFrame, on channel: Channel) {
        guard let connection = connections[ObjectIdentifier(channel)] else { return }
        connection.queue.counters.framesReceived += 1
        connection.queue.counters.bytesReceived += FrameEncoding.headerBytes + frame.payload.count
        onFrame(connection.id, frame.kind, frame.payload)
    }

    private func closed(_ channel: Channel) {
        guard let connection = connections.removeValue(forKey: ObjectIdentifier(channel)) else { return }
        byID[connection.id] = nil
        connection.queue.clear()
        if connection.established { onConnection?(connection.id, nil) }
    }
}
