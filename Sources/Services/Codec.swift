import Primitives

/// Bounds applied when decoding untrusted bytes: no length read from the input can make a
/// decoder allocate more than these allow.
public struct CodecLimits: Hashable, Sendable {
    /// Longest key, value, lock name or log entry, in bytes. Recommended 64 KiB.
    public var stringBytesMax: Int
    /// Most entries in one reply (`log.retrieve`). Must cover `ServiceLimits.retrieveEntriesMax`.
    public var replyEntriesMax: Int
    /// Most items (keys, locks, entries, sessions) in one snapshot section.
    public var snapshotItemsMax: Int
    /// Most client requests in one batch (a Paxos slot value). Must cover
    /// `PaxosConfig.batchCommandsMax`; recommended 65,536, its largest valid value.
    public var batchRequestsMax: Int
    /// Most runs or reported slots in one Paxos message (`decided`, `promise`). Recommended
    /// 65,536: well above `catchUpSlotsMax` and a promise's report.
    public var runsMax: Int
    /// Largest replica id, and largest sublog number, accepted from a peer. Both index arrays of
    /// at most the group's size, so a peer cannot name an arbitrary `Int`. Recommended 1,024.
    public var replicaIDMax: Int
    /// Largest piece of a checkpoint in one state-transfer message. Recommended 1 MiB; the
    /// sender's chunks must not exceed it.
    public var checkpointChunkBytesMax: Int = 1 << 20

    public init(stringBytesMax: Int = 65_536, replyEntriesMax: Int = 4_096, snapshotItemsMax: Int = 50_000_000,
                batchRequestsMax: Int = 65_536, runsMax: Int = 65_536, replicaIDMax: Int = 1_024) {
        precondition(stringBytesMax > 0 && replyEntriesMax > 0 && snapshotItemsMax > 0 && batchRequestsMax > 0 && runsMax > 0,
                     "codec limits must be positive: \(stringBytesMax), \(replyEntriesMax), \(snapshotItemsMax), \(batchRequestsMax), \(runsMax)")
        precondition(replicaIDMax >= 0 && replicaIDMax <= Int(UInt32.max), "replicaIDMax must be 0 ... 2^32-1, got \(replicaIDMax)")
        self.stringBytesMax = stringBytesMax
        self.replyEntriesMax = replyEntriesMax
        self.snapshotItemsMax = snapshotItemsMax
        self.batchRequestsMax = batchRequestsMax
        self.runsMax = runsMax
        self.replicaIDMax = replicaIDMax
    }

    public static let standard = CodecLimits()
}

// Tags are part of the wire format and of snapshots: never renumber, only add.
extension Command {
    public func encode(into writer: inout ByteWriter) {
        switch self {
        case let .kvGet(key):
            writer.write(UInt8(1)); writer.write(key)
        case let .kvPut(key, value):
            writer.write(UInt8(2)); writer.write(key); writer.write(value)
        case let .lockAcquire(name):
            writer.write(UInt8(3)); writer.write(name)
        case let .lockRelease(name):
            writer.write(UInt8(4)); writer.write(name)
        case let .logAppend(entry):
            writer.write(UInt8(5)); writer.write(entry)
        case let .logRetrieve(first, last):
            writer.write(UInt8(6)); writer.write(first); writer.write(last)
        case let .logTruncate(index):
            writer.write(UInt8(7)); writer.write(index)
        case .openSession:
            writer.write(UInt8(8))
        case let .logAppendFrom(origin, index, entry):
            writer.write(UInt8(9)); writer.write(origin); writer.write(index); writer.write(entry)
        }
    }

    public static func decode(from reader: inout ByteReader, limits: CodecLimits) throws(DecodeError) -> Command {
        let at = reader.offset
        let max = limits.stringBytesMax
        switch try reader.readUInt8() {
        case 1: return .kvGet(key: try reader.readString(maxBytes: max))
        case 2: return .kvPut(key: try reader.readString(maxBytes: max), value: try reader.readString(maxBytes: max))
        case 3: return .lockAcquire(name: try reader.readString(maxBytes: max))
        case 4: return .lockRelease(name: try reader.readString(maxBytes: max))
        case 5: return .logAppend(entry: try reader.readString(maxBytes: max))
        case 6: return .logRetrieve(first: try reader.readUInt64(), last: try reader.readUInt64())
        case 7: return .logTruncate(index: try reader.readUInt64())
        case 8: return .openSession
        case 9: return .logAppendFrom(origin: try reader.readUInt32(), index: try reader.readUInt64(), entry: try reader.readString(maxBytes: max))
        case let tag: throw .unknownTag(offset: at, tag: tag, type: "command")
        }
    }
}

extension Request {
    public func encode(into writer: inout ByteWriter) {
        writer.write(client.rawValue)
        writer.write(sequence)
        command.encode(into: &writer)
    }

    public static func decode(from reader: inout ByteReader, limits: CodecLimits) throws(DecodeError) -> Request {
        let client = ClientID(try reader.readUInt64())
        let at = reader.offset
        let sequence = try reader.readUInt64()
        guard sequence >= 1 else { throw .invalidValue(offset: at, reason: "request sequence must start at 1") }
        return Request(client: client, sequence: sequence, command: try Command.decode(from: &reader, limits: limits))
    }
}

extension Reply {
    public func encode(into writer: inout ByteWriter) {
        switch self {
        case let .value(value):
            writer.write(UInt8(1))
            writer.write(value != nil)
            if let value { writer.write(value) }
        case .stored:
            writer.write(UInt8(2))
        case let .flag(flag):
            writer.write(UInt8(3)); writer.write(flag)
        case let .index(index):
            writer.write(UInt8(4)); writer.write(index)
        case let .entries(first, entries):
            writer.write(UInt8(5)); writer.write(first); writer.write(UInt32(entries.count))
            for entry in entries { writer.write(entry) }
        case let .failure(error):
            writer.write(UInt8(6)); error.encode(into: &writer)
        case let .session(client):
            writer.write(UInt8(7)); writer.write(client.rawValue)
        case let .extensionStep(appendedAt, applied):
            writer.write(UInt8(8)); writer.write(appendedAt != nil); writer.write(appendedAt ?? 0); writer.write(applied)
        }
    }

    public static func decode(from reader: inout ByteReader, limits: CodecLimits) throws(DecodeError) -> Reply {
        let at = reader.offset
        switch try reader.readUInt8() {
        case 1:
            return .value(try reader.readBool() ? try reader.readString(maxBytes: limits.stringBytesMax) : nil)
        case 2: return .stored
        case 3: return .flag(try reader.readBool())
        case 4: return .index(try reader.readUInt64())
        case 5:
            let first = try reader.readUInt64()
            let count = try reader.readCount(max: limits.replyEntriesMax, minElementBytes: 4)
            var entries: [String] = []
            entries.reserveCapacity(count)
            for _ in 0..<count { entries.append(try reader.readString(maxBytes: limits.stringBytesMax)) }
            return .entries(first: first, entries)
        case 6: return .failure(try ServiceError.decode(from: &reader))
        case 7: return .session(ClientID(try reader.readUInt64()))
        case 8:
            let appended = try reader.readBool()
            let index = try reader.readUInt64()
            return .extensionStep(appendedAt: appended ? index : nil, applied: try reader.readUInt64())
        case let tag: throw .unknownTag(offset: at, tag: tag, type: "reply")
        }
    }
}

extension ServiceError {
    public func encode(into writer: inout ByteWriter) {
        switch self {
        case let .outOfRange(first, last, available):
            writer.write(UInt8(1)); writer.write(first); writer.write(last)
            writer.write(available.lowerBound); writer.write(available.upperBound)
        case let .emptyRange(first, last):
            writer.write(UInt8(2)); writer.write(first); writer.write(last)
        case let .rangeTooLong(requested, limit):
            writer.write(UInt8(3)); writer.write(requested); writer.write(limit)
        case .sessionExpired:
            writer.write(UInt8(4))
        case let .staleSequence(sequence, latest):
            writer.write(UInt8(5)); writer.write(sequence); writer.write(latest)
        case .notPermitted:
            writer.write(UInt8(6))
        case .outcomeUnknown:
            writer.write(UInt8(7))
        }
    }

    public static func decode(from reader: inout ByteReader) throws(DecodeError) -> ServiceError {
        let at = reader.offset
        switch try reader.readUInt8() {
        case 1:
            let first = try reader.readUInt64(), last = try reader.readUInt64()
            let lower = try reader.readUInt64(), upper = try reader.readUInt64()
            guard lower <= upper else { throw .invalidValue(offset: at, reason: "range \(lower)..<\(upper) is inverted") }
            return .outOfRange(first: first, last: last, available: lower..<upper)
        case 2: return .emptyRange(first: try reader.readUInt64(), last: try reader.readUInt64())
        case 3: return .rangeTooLong(requested: try reader.readUInt64(), limit: try reader.readUInt64())
        case 4: return .sessionExpired
        case 5: return .staleSequence(sequence: try reader.readUInt64(), latest: try reader.readUInt64())
        case 6: return .notPermitted
        case 7: return .outcomeUnknown
        case let tag: throw .unknownTag(offset: at, tag: tag, type: "service error")
        }
    }
}
