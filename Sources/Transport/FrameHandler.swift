import NIOCore

/// The inbound end of every connection: gates it on a handshake, then hands frames to its owner.
///
/// States: a dialed connection starts `established` (the dialer sent the handshake; the acceptor
/// sends none back). An accepted one starts `awaitingHandshake`: its first frame must be a valid
/// handshake, and anything else closes it. Every protocol error (bad framing from the decoder, a
/// refused handshake) is logged once, in one line naming the connection and what was wrong, and
/// the connection is closed. The owner learns of the close through `onInactive`.
final class FrameHandler: ChannelInboundHandler {
    typealias InboundIn = RawFrame

    private enum State {
        case awaitingHandshake
        case established
        /// A protocol error was logged and the close requested; later input is ignored.
        case refused
    }

    private var state: State
    private let label: String
    private let log: TransportLog
    /// Checks a handshake and registers the connection with its owner; throws to refuse it.
    private let onHandshake: ((Handshake, Channel) throws(HandshakeError) -> Void)?
    private let onFrame: (RawFrame, Channel) -> Void
    private let onWritable: (Channel) -> Void
    private let onInactive: (Channel) -> Void

    /// - Parameters:
    ///   - label: names the connection's owner in log lines ("replica 2 peer port").
    ///   - onHandshake: nil for a dialed connection (established from the start).
    init(label: String, log: @escaping TransportLog,
         onHandshake: ((Handshake, Channel) throws(HandshakeError) -> Void)?,
         onFrame: @escaping (RawFrame, Channel) -> Void,
         onWritable: @escaping (Channel) -> Void,
         onInactive: @escaping (Channel) -> Void) {
        state = onHandshake == nil ? .established : .awaitingHandshake
        self.label = label
        self.log = log
        self.onHandshake = onHandshake
        self.onFrame = onFrame
        self.onWritable = onWritable
        self.onInactive = onInactive
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch state {
        case .refused:
            return
        case .awaitingHandshake:
            do throws(HandshakeError) {
                guard frame.kind == Handshake.frameKind else { throw .notAHandshake(kind: frame.kind) }
                let handshake = try Handshake.decode(payload: frame.payload)
                guard let onHandshake else { preconditionFailure("awaitingHandshake without a handshake check") }
                try onHandshake(handshake, context.channel)
                state = .established
            } catch {
                refuse(context: context, reason: "handshake refused: \(error)")
            }
        case .established:
            guard frame.kind != Handshake.frameKind else {
                refuse(context: context, reason: "\(HandshakeError.repeated)")
                return
            }
            onFrame(frame, context.channel)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { onWritable(context.channel) }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        onInactive(context.channel)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch state {
        case .refused:
            return
        case .awaitingHandshake, .established:
            refuse(context: context, reason: "\(error)")
        }
    }

    private func refuse(context: ChannelHandlerContext, reason: String) {
        state = .refused
        let remote = context.channel.remoteAddress.map { "\($0)" } ?? "an unknown address"
        log("\(label): closing the connection with \(remote): \(reason)")
        context.close(promise: nil)
    }
}

/// Adds the decoder and `handler` to a new channel's pipeline (on its event loop). TCP_NODELAY is
/// set by the bootstraps, on both sides.
func addFrameHandlers(to channel: Channel, limits frameBytesMax: Int, handler: FrameHandler) -> EventLoopFuture<Void> {
    channel.eventLoop.makeCompletedFuture {
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RawFrameDecoder(frameBytesMax: frameBytesMax)))
        try channel.pipeline.syncOperations.addHandler(handler)
    }
}
