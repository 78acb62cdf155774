import NIOConcurrencyHelpers
import NIOCore

/// Answers the server's HTTP/2 PING frames on a gRPC connection before the HTTP/2 handler sees
/// them, and passes every other byte through unchanged.
///
/// Why: etcd's gRPC server (grpc-go) probes the connection's bandwidth-delay product with a PING
/// after each burst of request bytes it receives, so a connection carrying a steady stream of
/// small calls gets a PING every few calls, indefinitely (its estimate never reaches the limit that
/// would stop it). swift-nio-http2 (from 1.46) counts inbound PING and SETTINGS frames as a
/// denial-of-service risk, at most 200 per 30 s per connection, and grpc-swift-nio-transport
/// does not expose that limit: after the 200th PING the client sends GOAWAY (ENHANCE_YOUR_CALM)
/// and closes the connection, and every call on it fails `unavailable: "Stream unexpectedly
/// closed."`. A trace of a 6-client run showed it after 327 calls on one connection (199 PINGs).
/// Answering the PINGs here is what etcd's Go client does too (one ACK each), so the comparison
/// stays fair; only PING (not ACK) frames on stream 0 with the 8-byte payload HTTP/2 requires are
/// taken out, so anything malformed still reaches the HTTP/2 handler and fails there.
///
/// Placed first in the connection's pipeline (next to the socket, plaintext only). The ACK it
/// writes cannot land inside another frame: the HTTP/2 handler writes a frame's bytes within one
/// call on this event loop, and this handler writes from `channelRead`, never inside such a call.
final class ServerPingAnswerer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let frameHeaderBytes = 9
    static let pingType: UInt8 = 6
    static let pingPayloadBytes = 8

    /// Bytes of the frame being passed through that are still to come.
    private var payloadRemaining = 0
    /// The start of a frame header (or of a PING) cut by the end of a read, kept for the next.
    private var held: ByteBuffer?
    private let answered: NIOLockedValueBox<Int>

    /// - Parameter answered: counts the PINGs answered here, over every connection that shares it.
    init(answered: NIOLockedValueBox<Int>) {
        self.answered = answered
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var input = unwrapInboundIn(data)
        if var before = held {
            held = nil
            before.writeBuffer(&input)
            input = before
        }
        let end = input.writerIndex
        var passFrom = input.readerIndex
        var cursor = passFrom
        var pings = 0
        while cursor < end {
            if payloadRemaining > 0 {
                let skipped = min(payloadRemaining, end - cursor)
                cursor += skipped
                payloadRemaining -= skipped
                continue
            }
            guard end - cursor >= Self.frameHeaderBytes,
                  let length0 = input.getInteger(at: cursor, as: UInt8.self),
                  let length12 = input.getInteger(at: cursor + 1, as: UInt16.self),
                  let type = input.getInteger(at: cursor + 3, as: UInt8.self),
                  let flags = input.getInteger(at: cursor + 4, as: UInt8.self),
                  let stream = input.getInteger(at: cursor + 5, as: UInt32.self) else { break }
            let length = Int(length0) << 16 | Int(length12)
            let isPing = type == Self.pingType && flags & 1 == 0 && stream & 0x7FFF_FFFF == 0 && length == Self.pingPayloadBytes
            guard isPing else {
                cursor += Self.frameHeaderBytes
                payloadRemaining = length
                continue
            }
            guard end - cursor >= Self.frameHeaderBytes + length else { break }
            if cursor > passFrom, let before = input.getSlice(at: passFrom, length: cursor - passFrom) {
                context.fireChannelRead(wrapInboundOut(before))
            }
            var ack = context.channel.allocator.buffer(capacity: Self.frameHeaderBytes + length)
            ack.writeInteger(UInt8(0))
            ack.writeInteger(UInt16(length))
            ack.writeInteger(Self.pingType)
            ack.writeInteger(UInt8(1))  // ACK
            ack.writeInteger(UInt32(0))
            if let opaque = input.getSlice(at: cursor + Self.frameHeaderBytes, length: length) { ack.writeImmutableBuffer(opaque) }
            context.write(wrapOutboundOut(ack), promise: nil)
            pings += 1
            cursor += Self.frameHeaderBytes + length
            passFrom = cursor
        }
        if cursor > passFrom, let rest = input.getSlice(at: passFrom, length: cursor - passFrom) {
            context.fireChannelRead(wrapInboundOut(rest))
        }
        if cursor < end { held = input.getSlice(at: cursor, length: end - cursor) }
        if pings > 0 {
            context.flush()
            answered.withLockedValue { $0 += pings }
        }
    }
}
