import Paxos
import Primitives
import Services

// Framing for every byte csmr sends between processes.
//
//     frame   = length:u32  version:u8  kind:u8  payload
//     length  = the number of bytes after the length field (version + kind + payload)
//
// Integers are big-endian. `length` is checked against `WireLimits.frameBytesMax` before anything
// is buffered, so a forged length cannot make a peer allocate. Version 1 is the only version;
// a frame of another version is refused with `WireError.unknownVersion`, so a future version can
// be negotiated instead of misread. Protocol messages join as new kinds.

/// Bounds on what a peer may send.
public struct WireLimits: Hashable, Sendable {
    /// Largest frame, length field excluded. Recommended 4 MiB; at least 64 bytes.
    public var frameBytesMax: Int
    /// Bounds on the values inside a frame.
    public var codec: CodecLimits

    public init(frameBytesMax: Int = 4 << 20, codec: CodecLimits = .standard) {
        precondition(frameBytesMax >= 64, "frameBytesMax must be at least 64, got \(frameBytesMax)")
        precondition(codec.stringBytesMax <= frameBytesMax,
                     "stringBytesMax \(codec.stringBytesMax) exceeds frameBytesMax \(frameBytesMax)")
        self.frameBytesMax = frameBytesMax
        self.codec = codec
    }

    public static let standard = WireLimits()
}

/// Why a frame was refused. After any of these a stream connection should be closed: the peer
/// speaks something else, or is broken.
public enum WireError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The length field announces more than `WireLimits.frameBytesMax`.
    case frameTooLarge(length: Int, limit: Int)
    /// The length field announces fewer bytes than a version and a kind.
    case frameTooShort(length: Int)
    case unknownVersion(UInt8)
    case unknownKind(UInt8)
    /// The payload of a frame of `kind` did not decode.
    case malformed(kind: UInt8, DecodeError)
    /// A one-shot decode got fewer bytes than the frame announced.
    case truncated(needed: Int)

    public var description: String {
        switch self {
        case let .frameTooLarge(length, limit): "frame of \(length) bytes exceeds the limit of \(limit)"
        case let .frameTooShort(length): "frame of \(length) bytes is too short for a header"
        case let .unknownVersion(version): "unknown wire version \(version) (this build speaks \(WireFormat.version))"
        case let .unknownKind(kind): "unknown message kind \(kind)"
        case let .malformed(kind, error): "malformed message of kind \(kind): \(error)"
        case let .truncated(needed): "frame truncated: \(needed) more byte(s) needed"
        }
    }
}

/// Everything that travels in a frame.
public enum Message: Hashable, Sendable {
    case request(Request)
    /// A request sampled for the latency breakdown: served like any other, answered by a reply
    /// that carries the replica's stage durations (kind 6).
    case sampledRequest(Request)
    /// A reply; one with `stages` travels as kind 6, any other as kind 2.
    case reply(ClientReply)
    /// A replica-to-replica consensus message; the sender is the peer at the other end of the
    /// connection, so the frame does not repeat it.
    case paxos(PaxosMessage)
    /// A client port's answer that a request should go elsewhere (docs/protocol.md).
    case redirect(Redirect)
    /// Extension step `index` of origin group `origin`, as its log entry: sent by a replica of
    /// the origin group to a replica of the log's group over an extension link (peer port,
    /// handshake role `extension`), never accepted from a client port.
    case extensionStep(origin: UInt32, index: UInt64, entry: String)
    /// The log's group answers an extension step: it holds `applied` steps of `origin` (step
    /// `index` among them, or not yet when `applied < index`).
    case extensionApplied(origin: UInt32, index: UInt64, applied: UInt64)

    /// The frame kind this message travels as.
    public var kind: UInt8 {
        switch self {
        case .request: FrameKind.request
        case .sampledRequest: FrameKind.sampledRequest
        case let .reply(reply): reply.stages == nil ? FrameKind.reply : FrameKind.stagedReply
        case .paxos: FrameKind.paxos
        case .redirect: FrameKind.redirect
        case .extensionStep: FrameKind.extensionStep
        case .extensionApplied: FrameKind.extensionApplied
        }
    }
}

/// The kinds of frame `Message`s travel as. 0x10 is the Transport handshake's; never reuse it.
public enum FrameKind {
    public static let request: UInt8 = 1
    public static let reply: UInt8 = 2
    public static let paxos: UInt8 = 3
    public static let redirect: UInt8 = 4
    /// Extension links only (docs/protocol.md, "Extension steps").
    public static let extensionStep: UInt8 = 5
    public static let extensionApplied: UInt8 = 6
    public static let sampledRequest: UInt8 = 7
    public static let stagedReply: UInt8 = 8
}

public enum WireFormat {
    public static let version: UInt8 = 1
    static let headerBytes = 4 + 2

    /// One complete frame for `message`.
    public static func encode(_ message: Message) -> [UInt8] {
        var writer = ByteWriter(capacity: 64)
        encode(message, into: &writer)
        return writer.bytes
    }

    /// Appends one frame to `writer` (several frames can share one buffer, as a pipelined stream).
    public static func encode(_ message: Message, into writer: inout ByteWriter) {
        let start = writer.count
        writer.write(UInt32(0))
        writer.write(version)
        writer.write(message.kind)
        switch message {
        case let .request(request), let .sampledRequest(request): request.encode(into: &writer)
        case let .reply(reply):
            writer.write(reply.client.rawValue)
            writer.write(reply.sequence)
            reply.reply.encode(into: &writer)
            if let stages = reply.stages {
                // Durations only: the replica's instants mean nothing on the client's clock.
                writer.write(stages.queueNanoseconds)
                writer.write(stages.orderingNanoseconds)
                writer.write(stages.executionNanoseconds)
                writer.write(stages.holdNanoseconds)
            }
        case let .paxos(message): message.encode(into: &writer)
        case let .redirect(redirect): redirect.encode(into: &writer)
        case let .extensionStep(origin, index, entry):
            writer.write(origin)
            writer.write(index)
            writer.write(entry)
        case let .extensionApplied(origin, index, applied):
            writer.write(origin)
            writer.write(index)
            writer.write(applied)
        }
        writer.patch(UInt32(writer.count - start - 4), at: start)
    }

    /// Decodes exactly one frame; extra or missing bytes are errors.
    public static func decode(_ bytes: [UInt8], limits: WireLimits = .standard) throws(WireError) -> Message {
        var decoder = FrameDecoder(limits: limits)
        decoder.append(bytes)
        guard let message = try decoder.next() else {
            throw .truncated(needed: decoder.bytesNeeded)
        }
        guard decoder.bufferedBytes == 0 else {
            throw .malformed(kind: message.kind, .trailingBytes(count: decoder.bufferedBytes))
        }
        return message
    }

    /// A frame's payload alone, for transports that write the header themselves
    /// (`FrameClient.send(kind:payload:)` with `message.kind`).
    public static func payload(of message: Message) -> [UInt8] {
        Array(encode(message).dropFirst(headerBytes))
    }

    /// Decodes the payload of one frame of `kind`, as a transport that split the stream delivers
    /// it. Never traps: every failure is a `WireError`.
    public static func decode(kind: UInt8, payload: [UInt8], limits: CodecLimits = .standard) throws(WireError) -> Message {
        try decodePayload(kind: kind, payload[...], limits: limits)
    }

    static func decodePayload(kind: UInt8, _ payload: ArraySlice<UInt8>, limits: CodecLimits) throws(WireError) -> Message {
        var reader = ByteReader(payload)
        do {
            let message: Message
            switch kind {
            case 1: message = .request(try Request.decode(from: &reader, limits: limits))
            case 7: message = .sampledRequest(try Request.decode(from: &reader, limits: limits))
            case 2, 8:
                let client = ClientID(try reader.readUInt64())
                let sequence = try reader.readUInt64()
                var reply = ClientReply(client: client, sequence: sequence, reply: try Reply.decode(from: &reader, limits: limits))
                if kind == 8 {
                    reply.stages = ReplicaStages(queueNanoseconds: try reader.readUInt64(), orderingNanoseconds: try reader.readUInt64(),
                                                 executionNanoseconds: try reader.readUInt64(), holdNanoseconds: try reader.readUInt64())
                }
                message = .reply(reply)
            case 3: message = .paxos(try PaxosMessage.decode(from: &reader, limits: limits))
            case 4: message = .redirect(try Redirect.decode(from: &reader, limits: limits))
            case 5:
                message = .extensionStep(origin: try reader.readUInt32(), index: try reader.readUInt64(),
                                         entry: try reader.readString(maxBytes: limits.stringBytesMax))
            case 6: message = .extensionApplied(origin: try reader.readUInt32(), index: try reader.readUInt64(), applied: try reader.readUInt64())
            default: throw WireError.unknownKind(kind)
            }
            try reader.expectEnd()
            return message
        } catch let error as DecodeError {
            throw .malformed(kind: kind, error)
        } catch let error as WireError {
            throw error
        } catch {
            preconditionFailure("unexpected error \(error) decoding kind \(kind)")
        }
    }
}

/// Turns a byte stream into messages, however the bytes are split: feed any chunks with `append`
/// and call `next` until it returns nil. Memory stays within one frame of `frameBytesMax`.
public struct FrameDecoder: Sendable {
    public let limits: WireLimits
    private var buffer: [UInt8] = []
    private var readIndex = 0

    public init(limits: WireLimits = .standard) { self.limits = limits }

    public mutating func append(_ bytes: some Sequence<UInt8>) {
        // Drop consumed bytes before growing, so a long stream does not accumulate them.
        if readIndex > 0, readIndex * 2 >= buffer.count {
            buffer.removeFirst(readIndex)
            readIndex = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// Bytes received but not yet returned as messages.
    public var bufferedBytes: Int { buffer.count - readIndex }

    /// Bytes still missing before the next frame is complete (a lower bound while the length
    /// field itself is incomplete).
    public var bytesNeeded: Int {
        guard bufferedBytes >= 4 else { return 4 - bufferedBytes }
        return max(0, 4 + Int(frameLength()) - bufferedBytes)
    }

    /// The next complete message, nil if more bytes are needed. A thrown error means the stream
    /// is unusable; the caller should drop the connection.
    public mutating func next() throws(WireError) -> Message? {
        guard bufferedBytes >= 4 else { return nil }
        let length = Int(frameLength())
        guard length <= limits.frameBytesMax else { throw .frameTooLarge(length: length, limit: limits.frameBytesMax) }
        guard length >= 2 else { throw .frameTooShort(length: length) }
        guard bufferedBytes >= 4 + length else { return nil }
        let start = readIndex + 4
        readIndex = start + length
        let version = buffer[start]
        guard version == WireFormat.version else { throw .unknownVersion(version) }
        return try WireFormat.decodePayload(kind: buffer[start + 1], buffer[(start + 2)..<(start + length)], limits: limits.codec)
    }

    private func frameLength() -> UInt32 {
        var length: UInt32 = 0
        for index in readIndex..<(readIndex + 4) { length = (length << 8) | UInt32(buffer[index]) }
        return length
    }
}
