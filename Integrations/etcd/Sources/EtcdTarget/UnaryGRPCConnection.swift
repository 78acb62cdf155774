import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix

/// Why a unary call failed.
enum UnaryCallError: Error, Equatable, CustomStringConvertible {
    /// The server never processed the call (a GOAWAY's last stream is below it, or the stream was
    /// refused): sending it again cannot apply it twice.
    case notProcessed(String)
    /// The connection or the stream ended while the call was out: it may or may not have applied.
    case unavailable(String)
    /// The server answered with a gRPC status other than OK.
    case status(code: Int, message: String)
    /// No answer within the call's timeout (the stream was cancelled).
    case deadlineExceeded
    /// The answer was not a well-formed gRPC response.
    case malformed(String)

    var description: String {
        switch self {
        case let .notProcessed(why): "not processed: \(why)"
        case let .unavailable(why): "unavailable: \(why)"
        case let .status(code, message): "gRPC status \(code): \(message)"
        case .deadlineExceeded: "deadline exceeded"
        case let .malformed(why): "malformed response: \(why)"
        }
    }

    /// Whether a call that failed so may be sent again without risking a second application.
    var neverApplied: Bool {
        if case .notProcessed = self { return true }
        return false
    }
}

typealias UnaryCompletion = @Sendable (Result<ByteBuffer, UnaryCallError>) -> Void

/// One HTTP/2 connection to one server, carrying unary gRPC calls as plain frames: a call is a
/// HEADERS and a DATA frame out, HEADERS, DATA and trailers back, matched by stream id.
///
/// Why not a gRPC library's client: on this 2-core machine the load generator shares the CPU
/// with the servers it measures, so its cost per call is taken from them. grpc-swift-2 runs
/// each call as a task with its own HTTP/2 stream channel and async hops, and got about 0.55x the
/// calls that etcd's Go client gets from the same cluster (BENCHMARKS.md, "The etcd target").
/// Here a call costs one hop onto the connection's event loop, two frames, and a dictionary
/// entry; writes made in one turn of the loop leave in one flush.
///
/// All state lives on `loop`; the public entry points hop onto it. The connection reconnects
/// (after 0.1 s, doubling to 2 s) when its channel closes, until `close()`; calls made meanwhile
/// wait for the next channel, within their timeout.
final class UnaryGRPCConnection: @unchecked Sendable {
    // Unchecked Sendable: every mutable field is touched on `loop` only (asserted in debug).
    let loop: any EventLoop
    let host: String
    let port: Int
    private let authority: String
    private var handler: UnaryCallHandler?
    /// Channels that take no more calls (a GOAWAY came, or their stream ids ran out) but still
    /// answer the calls they carry; a call's timeout finds it there.
    private var retired: [UnaryCallHandler] = []
    private var queued: [UnaryCallHandler.Call] = []
    private var connecting = false
    private var closed = false
    private var reconnectDelayMilliseconds: Int64 = UnaryGRPCConnection.reconnectDelayMillisecondsMin
    private var nextCallID: UInt64 = 0
    /// Server PINGs answered (the HTTP/2 handler answers them), summed over this connection's channels.
    private var pingsSeenBefore = 0
    private let onEvent: @Sendable (String) -> Void

    static let reconnectDelayMillisecondsMin: Int64 = 100
    static let reconnectDelayMillisecondsMax: Int64 = 2_000

    init(host: String, port: Int, loop: any EventLoop, onEvent: @escaping @Sendable (String) -> Void) {
        self.host = host
        self.port = port
        self.loop = loop
        self.onEvent = onEvent
        authority = "\(host):\(port)"
        loop.execute { self.connect() }
    }

    /// Calls `path` with `message` (a serialized protobuf message, without gRPC's prefix) and
    /// hands the response message's bytes to `completion`, on `loop`.
    func call(path: String, message: [UInt8], timeout: TimeAmount? = nil, completion: @escaping UnaryCompletion) {
        if loop.inEventLoop {
            start(path: path, message: message, timeout: timeout, completion: completion)
        } else {
            loop.execute { self.start(path: path, message: message, timeout: timeout, completion: completion) }
        }
    }

    /// Server PINGs seen so far (etcd's server sends one after each burst of request bytes).
    func serverPings() -> EventLoopFuture<Int> {
        loop.submit { self.pingsSeenBefore + (self.handler?.serverPings ?? 0) }
    }

    /// Stops reconnecting, lets the calls still out finish for up to `graceSeconds`, then closes.
    func close(graceSeconds: Int64) -> EventLoopFuture<Void> {
        loop.flatSubmit {
            self.closed = true
            for call in self.queued { call.completion(.failure(.notProcessed("the client is closing"))) }
            self.queued.removeAll()
            guard let handler = self.handler else { return self.loop.makeSucceededVoidFuture() }
            return handler.drain(graceSeconds: graceSeconds, loop: self.loop)
        }
    }

    private func start(path: String, message: [UInt8], timeout: TimeAmount?, completion: @escaping UnaryCompletion) {
        loop.preconditionInEventLoop()
        if closed {
            completion(.failure(.notProcessed("the client is closed")))
            return
        }
        nextCallID += 1
        let id = nextCallID
        let call = UnaryCallHandler.Call(id: id, path: path, message: message, completion: completion)
        if let timeout {
            loop.scheduleTask(in: timeout) { [self] in
                if let index = queued.firstIndex(where: { $0.id == id }) {
                    queued.remove(at: index).completion(.failure(.deadlineExceeded))
                } else {
                    // A no-op wherever the call is not (answered already, or on another channel).
                    handler?.cancel(callID: id)
                    for old in retired { old.cancel(callID: id) }
                }
            }
        }
        if let handler, handler.isWritable {
            handler.start(call)
            return
        }
        queued.append(call)
        if let draining = handler {
            // A GOAWAY came, or the stream ids ran out: the old channel answers what it has out
            // and closes by itself; new calls go to a new one.
            pingsSeenBefore += draining.serverPings
            retired.append(draining)
            handler = nil
            draining.stopAccepting()
        }
        connect()
    }

    private func connect() {
        loop.preconditionInEventLoop()
        guard !closed, handler == nil, !connecting else { return }
        connecting = true
        var configuration = NIOHTTP2Handler.ConnectionConfiguration()
        // etcd's server (grpc-go) sends a PING after each burst of request bytes it reads to
        // estimate the link's bandwidth-delay product, indefinitely on a busy connection, and the
        // HTTP/2 handler by default closes a connection after 200 PING or SETTINGS frames in
        // 30 s. The peer is the server under test, not an adversary: allow what it sends.
        configuration.controlFrameRateLimit.maximumCount = 1_000_000
        let connectionConfiguration = configuration
        let callHandler = NIOLoopBound(UnaryCallHandler(authority: authority, onClose: { [self] handler, why in closedChannel(handler, why: why) }),
                                       eventLoop: loop)
        ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOHTTP2Handler(mode: .client, connectionConfiguration: connectionConfiguration))
                    try channel.pipeline.syncOperations.addHandler(callHandler.value)
                }
            }
            .connect(host: host, port: port)
            .whenComplete { [self] result in
                connecting = false
                switch result {
                case .success:
                    reconnectDelayMilliseconds = Self.reconnectDelayMillisecondsMin
                    let connected = callHandler.value
                    handler = connected
                    let waiting = queued
                    queued.removeAll()
                    for call in waiting { connected.start(call) }
                case let .failure(error):
                    retryLater("connect to \(authority) failed: \(error)")
                }
            }
    }

    private func closedChannel(_ closing: UnaryCallHandler, why: String) {
        loop.preconditionInEventLoop()
        retired.removeAll { $0 === closing }
        guard closing === handler else { return }
        pingsSeenBefore += closing.serverPings
        handler = nil
        if !closed { retryLater("connection to \(authority) closed: \(why)") }
    }

    private func retryLater(_ why: String) {
        guard !closed else { return }
        onEvent("etcd \(why); connecting again in \(reconnectDelayMilliseconds) ms")
        let delay = reconnectDelayMilliseconds
        reconnectDelayMilliseconds = min(reconnectDelayMilliseconds * 2, Self.reconnectDelayMillisecondsMax)
        loop.scheduleTask(in: .milliseconds(delay)) { [self] in connect() }
    }
}

/// The end of a client connection's pipeline, after `NIOHTTP2Handler`: opens a stream per call,
/// gathers each stream's response, returns the connection-level flow-control credit, and fails
/// the calls a GOAWAY, a reset or the connection's end leave unanswered.
final class UnaryCallHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    /// Flow-control windows the client offers, per connection and per stream (HTTP/2's default).
    /// Responses of a unary kv call are a few hundred bytes at most; credit is returned when half
    /// a window was used, so the server never waits for it in practice.
    static let connectionWindowBytes = 65_535
    static let streamWindowBytes = 65_535
    /// Client stream ids are odd and never reused; a connection that has used them all stops
    /// taking calls and the connection reconnects (after 2^30 calls).
    static let streamIDMax = Int32.max - 1

    struct Call {
        /// Unique within the connection, to find the call when its timeout passes.
        var id: UInt64
        var path: String
        /// The serialized request, framed (the 5-byte prefix) only when it is written.
        var message: [UInt8]
        var completion: UnaryCompletion
    }

    private struct Stream {
        var call: Call
        var responseHeadersSeen = false
        var response: ByteBuffer?
        var receivedSinceUpdateBytes = 0
    }

    private let authority: String
    private let onClose: (UnaryCallHandler, String) -> Void
    private var context: ChannelHandlerContext?
    private var streams: [HTTP2StreamID: Stream] = [:]
    private var streamOfCall: [UInt64: HTTP2StreamID] = [:]
    private var nextStreamID: Int32 = 1
    private var accepting = true
    private var flushScheduled = false
    private var connectionReceivedSinceUpdateBytes = 0
    private var draining: EventLoopPromise<Void>?
    private var closeReported = false
    private(set) var serverPings = 0

    init(authority: String, onClose: @escaping (UnaryCallHandler, String) -> Void) {
        self.authority = authority
        self.onClose = onClose
    }

    /// Whether a call started now would be sent on this connection.
    var isWritable: Bool { accepting && context != nil && nextStreamID <= Self.streamIDMax }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func stopAccepting() {
        accepting = false
        if streams.isEmpty { context?.close(promise: nil) }
    }

    func start(_ call: Call) {
        guard let context, isWritable else {
            call.completion(.failure(.notProcessed("the connection to \(authority) is not open")))
            return
        }
        let streamID = HTTP2StreamID(nextStreamID)
        nextStreamID += 2
        streams[streamID] = Stream(call: call)
        streamOfCall[call.id] = streamID
        let headers: HPACKHeaders = [
            ":method": "POST", ":scheme": "http", ":path": call.path, ":authority": authority,
            "content-type": "application/grpc", "te": "trailers",
        ]
        context.write(wrapOutboundOut(HTTP2Frame(streamID: streamID, payload: .headers(.init(headers: headers)))), promise: nil)
        var framed = context.channel.allocator.buffer(capacity: 5 + call.message.count)
        framed.writeInteger(UInt8(0))  // not compressed
        framed.writeInteger(UInt32(call.message.count))
        framed.writeBytes(call.message)
        context.write(wrapOutboundOut(HTTP2Frame(streamID: streamID, payload: .data(.init(data: .byteBuffer(framed), endStream: true)))), promise: nil)
        flushSoon()
        if nextStreamID > Self.streamIDMax { stopAccepting() }
    }

    /// Cancels a call still out (its timeout passed): RST_STREAM(CANCEL), answered `deadlineExceeded`.
    func cancel(callID: UInt64) {
        guard let streamID = streamOfCall[callID], let stream = finish(streamID) else { return }
        context?.write(wrapOutboundOut(HTTP2Frame(streamID: streamID, payload: .rstStream(.cancel))), promise: nil)
        flushSoon()
        stream.call.completion(.failure(.deadlineExceeded))
    }

    /// Takes no more calls; closes once the calls out are answered, or after `graceSeconds`.
    func drain(graceSeconds: Int64, loop: any EventLoop) -> EventLoopFuture<Void> {
        guard let context else { return loop.makeSucceededVoidFuture() }
        accepting = false
        let promise = loop.makePromise(of: Void.self)
        draining = promise
        if streams.isEmpty {
            context.close(promise: nil)
        } else {
            loop.assumeIsolated().scheduleTask(in: .seconds(graceSeconds)) { [weak self] in self?.context?.close(promise: nil) }
        }
        return promise.futureResult
    }

    private func flushSoon() {
        guard !flushScheduled, let context else { return }
        flushScheduled = true
        // Calls started in this turn of the loop (a burst of replies frees many clients at once)
        // leave in one write.
        context.eventLoop.assumeIsolated().execute { [self] in
            flushScheduled = false
            self.context?.flush()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.payload {
        case let .headers(headers):
            guard var stream = streams[frame.streamID] else { return }
            if !stream.responseHeadersSeen {
                stream.responseHeadersSeen = true
                if let status = headers.headers.first(name: ":status"), status != "200" {
                    complete(frame.streamID, .failure(.unavailable("HTTP status \(status)")), reset: !headers.endStream)
                    return
                }
                if !headers.endStream {
                    streams[frame.streamID] = stream
                    return
                }
            }
            // Trailers (or a trailers-only response): the call's outcome.
            guard headers.endStream else {
                complete(frame.streamID, .failure(.malformed("a second header block without END_STREAM")), reset: true)
                return
            }
            complete(frame.streamID, outcome(trailers: headers.headers, response: stream.response), reset: false)
        case let .data(payload):
            let bytes = payload.data.readableBytes + (payload.paddingBytes.map { $0 + 1 } ?? 0)
            returnCredit(connectionBytes: bytes, context: context)
            guard var stream = streams[frame.streamID] else { return }
            guard case let .byteBuffer(buffer) = payload.data else {
                complete(frame.streamID, .failure(.malformed("file region in a DATA frame")), reset: true)
                return
            }
            if stream.response == nil {
                stream.response = buffer
            } else {
                var appended = buffer
                stream.response!.writeBuffer(&appended)
            }
            stream.receivedSinceUpdateBytes += bytes
            if stream.receivedSinceUpdateBytes >= Self.streamWindowBytes / 2 && !payload.endStream {
                context.write(wrapOutboundOut(HTTP2Frame(streamID: frame.streamID, payload: .windowUpdate(windowSizeIncrement: stream.receivedSinceUpdateBytes))), promise: nil)
                stream.receivedSinceUpdateBytes = 0
                flushSoon()
            }
            streams[frame.streamID] = stream
            if payload.endStream {
                complete(frame.streamID, .failure(.malformed("the stream ended without trailers")), reset: false)
            }
        case let .rstStream(code):
            let failure: UnaryCallError = code == .refusedStream
                ? .notProcessed("stream refused") : .unavailable("stream reset (\(code))")
            complete(frame.streamID, .failure(failure), reset: false)
        case let .goAway(lastStreamID, code, _):
            accepting = false
            // Streams above the last one the server processed were never seen by it.
            for streamID in streams.keys.sorted() where streamID > lastStreamID {
                complete(streamID, .failure(.notProcessed("GOAWAY (\(code)) before this stream")), reset: false)
            }
            if streams.isEmpty { context.close(promise: nil) }
        case let .ping(_, ack):
            if !ack { serverPings += 1 }
        default:
            break
        }
    }

    private func returnCredit(connectionBytes: Int, context: ChannelHandlerContext) {
        connectionReceivedSinceUpdateBytes += connectionBytes
        guard connectionReceivedSinceUpdateBytes >= Self.connectionWindowBytes / 2 else { return }
        context.write(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: connectionReceivedSinceUpdateBytes))), promise: nil)
        connectionReceivedSinceUpdateBytes = 0
        flushSoon()
    }

    /// A response's outcome from its trailers: the message for status 0, the status otherwise.
    func outcome(trailers: HPACKHeaders, response: ByteBuffer?) -> Result<ByteBuffer, UnaryCallError> {
        guard let statusText = trailers.first(name: "grpc-status"), let status = Int(statusText) else {
            return .failure(.malformed("no grpc-status in the trailers"))
        }
        guard status == 0 else {
            return .failure(.status(code: status, message: trailers.first(name: "grpc-message") ?? ""))
        }
        return Self.message(in: response ?? ByteBuffer())
    }

    /// The one length-prefixed, uncompressed message a unary response carries.
    static func message(in framed: ByteBuffer) -> Result<ByteBuffer, UnaryCallError> {
        var framed = framed
        guard let compressed = framed.readInteger(as: UInt8.self), let length = framed.readInteger(as: UInt32.self) else {
            return .failure(.malformed("\(framed.readableBytes) bytes: shorter than a message prefix"))
        }
        guard compressed == 0 else { return .failure(.malformed("a compressed message (none was offered)")) }
        guard framed.readableBytes == Int(length), let message = framed.readSlice(length: Int(length)) else {
            return .failure(.malformed("a message of \(length) bytes in \(framed.readableBytes)"))
        }
        return .success(message)
    }

    @discardableResult
    private func finish(_ streamID: HTTP2StreamID) -> Stream? {
        guard let stream = streams.removeValue(forKey: streamID) else { return nil }
        streamOfCall.removeValue(forKey: stream.call.id)
        return stream
    }

    private func complete(_ streamID: HTTP2StreamID, _ result: Result<ByteBuffer, UnaryCallError>, reset: Bool) {
        guard let stream = finish(streamID) else { return }
        if reset, let context {
            context.write(wrapOutboundOut(HTTP2Frame(streamID: streamID, payload: .rstStream(.cancel))), promise: nil)
            flushSoon()
        }
        stream.call.completion(result)
        if streams.isEmpty && (!accepting || draining != nil) { context?.close(promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll("the connection closed")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll("\(error)")
        context.close(promise: nil)
    }

    private func failAll(_ why: String) {
        accepting = false
        let open = streams
        streams.removeAll()
        streamOfCall.removeAll()
        for (_, stream) in open { stream.call.completion(.failure(.unavailable(why))) }
        if !closeReported {
            closeReported = true
            onClose(self, why)
        }
        draining?.succeed()
        draining = nil
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        failAll("the handler was removed")
        self.context = nil
    }
}
