import NIOCore
import Wire

// Raw frames on a TCP stream. The transport does not interpret payloads (the Paxos and client
// messages are decoded by their owners); it only checks the framing `Wire` defines:
//
//     length:u32  version:u8  kind:u8  payload      (length counts version + kind + payload)

/// Where the transport's one-line reports go (refused handshakes, protocol errors, reconnects).
/// Called on the connection's event loop; keep it cheap.
public typealias TransportLog = @Sendable (String) -> Void

/// One frame as received: its kind and its payload, uninterpreted.
public struct RawFrame: Hashable, Sendable {
    public var kind: UInt8
    public var payload: [UInt8]

    public init(kind: UInt8, payload: [UInt8]) {
        self.kind = kind
        self.payload = payload
    }
}

public enum FrameEncoding {
    /// Bytes before the payload: length (4), version (1), kind (1).
    public static let headerBytes = 6

    /// One complete frame of the current wire version.
    public static func frame(kind: UInt8, payload: some Collection<UInt8>) -> [UInt8] {
        precondition(payload.count <= Int(UInt32.max) - 2, "payload of \(payload.count) bytes cannot be framed")
        var bytes: [UInt8] = []
        bytes.reserveCapacity(headerBytes + payload.count)
        let length = UInt32(payload.count + 2)
        for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: length >> UInt32(shift))) }
        bytes.append(WireFormat.version)
        bytes.append(kind)
        bytes.append(contentsOf: payload)
        return bytes
    }

    /// Writes one frame into `buffer` without an intermediate array.
    static func write(kind: UInt8, payload: some Collection<UInt8>, into buffer: inout ByteBuffer) {
        precondition(payload.count <= Int(UInt32.max) - 2, "payload of \(payload.count) bytes cannot be framed")
        buffer.writeInteger(UInt32(payload.count + 2))
        buffer.writeInteger(WireFormat.version)
        buffer.writeInteger(kind)
        buffer.writeBytes(payload)
    }
}

/// Splits a TCP stream into `RawFrame`s.
///
/// The length field is checked against `WireLimits.frameBytesMax` as soon as its four bytes are
/// in, and the version as soon as its byte is in, so a forged length makes us buffer at most what
/// one socket read delivered, never the announced size. Every violation is a thrown `WireError`,
/// which the pipeline hands to `FrameHandler.errorCaught` (log, close); nothing here traps.
struct RawFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = RawFrame

    let frameBytesMax: Int

    init(frameBytesMax: Int) { self.frameBytesMax = frameBytesMax }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try nextFrame(&buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A partial frame at the end of the stream is dropped with the connection.
        try decode(context: context, buffer: &buffer)
    }

    /// The next frame if it is complete; consumes nothing otherwise. Pure, for tests.
    func nextFrame(_ buffer: inout ByteBuffer) throws(WireError) -> RawFrame? {
        guard let length32 = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        let length = Int(length32)
        guard length <= frameBytesMax else { throw .frameTooLarge(length: length, limit: frameBytesMax) }
        guard length >= 2 else { throw .frameTooShort(length: length) }
        if let version = buffer.getInteger(at: buffer.readerIndex + 4, as: UInt8.self), version != WireFormat.version {
            throw .unknownVersion(version)
        }
        guard buffer.readableBytes >= 4 + length else { return nil }
        buffer.moveReaderIndex(forwardBy: 5)
        // Both reads are within the readable bytes checked above.
        let kind = buffer.readInteger(as: UInt8.self) ?? 0
        let payload = buffer.readBytes(length: length - 2) ?? []
        return RawFrame(kind: kind, payload: payload)
    }
}
