import NIOCore
import NIOPosix
import Wire

/// One dialed connection: sends a handshake, then frames; hands received frames to a callback.
/// For tests today and the client library later.
///
/// Sendable: after `connect` the fields are immutable except the queue, which is confined to the
/// channel's loop (every method hops onto it).
public final class FrameClient: @unchecked Sendable {
    public typealias FrameCallback = @Sendable (_ kind: UInt8, _ payload: [UInt8]) -> Void

    public let channel: Channel
    private let queue: OutboundQueue

    private init(channel: Channel, sendQueueBytesMax: Int) {
        self.channel = channel
        queue = OutboundQueue(loop: channel.eventLoop, sendQueueBytesMax: sendQueueBytesMax)
    }

    /// Connects to `address` on `loop` and sends `handshake` first (nil sends none: only for tests
    /// of a peer that skips it). Frames the other side sends
    /// reach `onFrame` on `loop`; a framing error closes the connection and is logged.
    ///
    /// `delayMicroseconds` emulates a wide-area link on this client's side of it (one clock):
    /// every frame sent after the handshake waits that long before it leaves, and every frame
    /// received waits that long before `onFrame` sees it, in order. A round trip then costs at
    /// least twice the delay. 0: no delay.
    public static func connect(to address: SocketAddress, on loop: EventLoop, handshake: Handshake?,
                               limits: WireLimits = .standard, sendQueueBytesMax: Int? = nil, delayMicroseconds: Int64 = 0,
                               log: @escaping TransportLog, onFrame: @escaping FrameCallback) -> EventLoopFuture<FrameClient> {
        precondition(delayMicroseconds >= 0, "negative delay \(delayMicroseconds) µs")
        let inbound = delayMicroseconds > 0 ? InboundDelay(loop: loop, delayMicroseconds: delayMicroseconds, onFrame: onFrame) : nil
        return ClientBootstrap(group: loop)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                let handler = FrameHandler(
                    label: "client of \(address)", log: log, onHandshake: nil,
                    onFrame: { frame, _ in
                        if let inbound {
                            inbound.arrived(kind: frame.kind, payload: frame.payload)
                        } else {
                            onFrame(frame.kind, frame.payload)
                        }
                    },
                    // The queue exists only once connected; `WritabilityRelay` drains it.
                    onWritable: { _ in },
                    onInactive: { _ in })
                return addFrameHandlers(to: channel, limits: limits.frameBytesMax, handler: handler)
            }
            .connect(to: address)
            .flatMapThrowing { channel in
                let client = FrameClient(channel: channel, sendQueueBytesMax: sendQueueBytesMax ?? 2 * (limits.frameBytesMax + 4))
                client.queue.delayMicroseconds = delayMicroseconds
                channel.closeFuture.whenComplete { _ in inbound?.clear() }
                try channel.pipeline.syncOperations.addHandler(WritabilityRelay(queue: client.queue))
                if let handshake { channel.write(ByteBuffer(bytes: handshake.encodeFrame()), promise: nil) }
                client.queue.attach(channel)
                channel.flush()
                return client
            }
    }

    /// The async form of `connect`.
    public static func connect(to address: SocketAddress, on loop: EventLoop, handshake: Handshake?,
                               limits: WireLimits = .standard, sendQueueBytesMax: Int? = nil, delayMicroseconds: Int64 = 0,
                               log: @escaping TransportLog, onFrame: @escaping FrameCallback) async throws -> FrameClient {
        let future: EventLoopFuture<FrameClient> = connect(to: address, on: loop, handshake: handshake, limits: limits,
                                                           sendQueueBytesMax: sendQueueBytesMax, delayMicroseconds: delayMicroseconds,
                                                           log: log, onFrame: onFrame)
        return try await future.get()
    }

    /// Sends one frame of `kind` (any thread). Dropped when the queue is full.
    public func send(kind: UInt8, payload: some Collection<UInt8>) {
        var buffer = ByteBufferAllocator().buffer(capacity: FrameEncoding.headerBytes + payload.count)
        FrameEncoding.write(kind: kind, payload: payload, into: &buffer)
        enqueue(buffer)
    }

    /// Writes `bytes` as they are, with no framing: for tests that play a broken or hostile peer.
    public func sendUnframed(_ bytes: [UInt8]) {
        enqueue(ByteBuffer(bytes: bytes))
    }

    private func enqueue(_ buffer: ByteBuffer) {
        guard channel.eventLoop.inEventLoop else {
            channel.eventLoop.execute { self.enqueue(buffer) }
            return
        }
        queue.enqueue(buffer)
    }

    /// This connection's counters (sent frames and drops; received frames are not counted).
    public func counters() -> EventLoopFuture<LinkCounters> {
        channel.eventLoop.submit { self.queue.counters }
    }

    /// Completes when the connection is closed, by either side.
    public var closeFuture: EventLoopFuture<Void> { channel.closeFuture }

    public func close() -> EventLoopFuture<Void> {
        channel.close().recover { _ in }
    }

    public func close() async {
        let future: EventLoopFuture<Void> = close()
        try? await future.get()
    }
}

/// Drains the client's queue when the socket takes bytes again.
private final class WritabilityRelay: ChannelInboundHandler {
    typealias InboundIn = Never
    private let queue: OutboundQueue

    init(queue: OutboundQueue) { self.queue = queue }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { queue.drain() }
        context.fireChannelWritabilityChanged()
    }
}

/// Received frames held for an emulated one-way delay, then handed on in arrival order.
///
/// Sendable: confined to `loop` (frames arrive on it, its timer fires on it), which is what makes
/// the unchecked `Sendable` sound.
private final class InboundDelay: @unchecked Sendable {
    let loop: EventLoop
    let delayMicroseconds: Int64
    let onFrame: FrameClient.FrameCallback
    private var pending = CircularBuffer<(due: NIODeadline, kind: UInt8, payload: [UInt8])>()
    private var timer: Scheduled<Void>?

    init(loop: EventLoop, delayMicroseconds: Int64, onFrame: @escaping FrameClient.FrameCallback) {
        self.loop = loop
        self.delayMicroseconds = delayMicroseconds
        self.onFrame = onFrame
    }

    func arrived(kind: UInt8, payload: [UInt8]) {
        loop.preconditionInEventLoop()
        pending.append((NIODeadline.now() + .microseconds(delayMicroseconds), kind, payload))
        release()
    }

    /// Hands on every frame whose time has come, then waits for the next one.
    private func release() {
        let now = NIODeadline.now()
        while let head = pending.first, head.due <= now {
            pending.removeFirst()
            onFrame(head.kind, head.payload)
        }
        guard timer == nil, let head = pending.first else { return }
        timer = loop.scheduleTask(deadline: head.due) { [self] in
            timer = nil
            release()
        }
    }

    /// The connection closed (called on `loop`, by the close future): what it still held is
    /// dropped, as a real link would lose it.
    func clear() {
        loop.preconditionInEventLoop()
        timer?.cancel()
        timer = nil
        pending.removeAll()
    }
}
