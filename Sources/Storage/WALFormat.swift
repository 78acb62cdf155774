import Paxos
import Primitives
import Services
import Wire

// The write-ahead log's bytes, without any file I/O.
//
//     record = length:u32  crc32c:u32  kind:u8  payload      (big-endian)
//     length = bytes of kind + payload (at least 1, at most `WALFormat.recordBytesMax`)
//     crc32c = CRC-32C of kind + payload
//
// Segments are preallocated, so a segment is its records followed by zeros. A crash while writing
// leaves a prefix of the last write on disk and zeros (or the end of the file) after it: a torn
// tail, which recovery cuts off. A bad record with non-zero bytes after it cannot come from a
// torn write and is corruption. A zero length can never start a record, which is what makes the
// zero fill unambiguous.

/// What the log stores: the acceptor state a replica must not forget, and checkpoint markers.
public enum WALEntry: Hashable, Sendable {
    /// A promise or an acceptance (`PersistRecord`, in the Wire codec).
    case persist(PersistRecord)
    /// A checkpoint of the state at `slot` is durable, so recovery may skip what it covers.
    case checkpointed(slot: UInt64)

    /// Record kinds: part of the on-disk format; never renumber, only add.
    static let persistKind: UInt8 = 1
    static let checkpointedKind: UInt8 = 2

    public var kind: UInt8 {
        switch self {
        case .persist: Self.persistKind
        case .checkpointed: Self.checkpointedKind
        }
    }

    public func encodePayload(into writer: inout ByteWriter) {
        switch self {
        case let .persist(record): record.encode(into: &writer)
        case let .checkpointed(slot): writer.write(slot)
        }
    }

    /// Decodes the payload of a record of `kind`; every byte must be used.
    public static func decode(kind: UInt8, payload: ArraySlice<UInt8>, limits: CodecLimits = .standard) throws(DecodeError) -> WALEntry {
        var reader = ByteReader(payload)
        let entry: WALEntry
        switch kind {
        case persistKind: entry = .persist(try PersistRecord.decode(from: &reader, limits: limits))
        case checkpointedKind: entry = .checkpointed(slot: try reader.readUInt64())
        default: throw .unknownTag(offset: 0, tag: kind, type: "WAL record kind")
        }
        try reader.expectEnd()
        return entry
    }
}

/// A record found by `WALFormat.scan`: where it starts in the segment and what it holds.
public struct ScannedRecord: Hashable, Sendable {
    public var offset: Int
    public var kind: UInt8
    public var payload: ArraySlice<UInt8>
}

/// How a segment's bytes end.
public enum WALEnd: Hashable, Sendable {
    /// Every byte from `offset` on is zero (or there is none): the records end there.
    case clean(offset: Int)
    /// The record at `offset` is incomplete or fails its checks, and only zeros (or nothing)
    /// follow it: a crash mid-write. Appends may continue at `offset`.
    case tornTail(offset: Int, reason: String)
    /// The record at `offset` is bad and something other than zeros follows it.
    case corrupt(offset: Int, reason: String)
}

public enum WALFormat {
    /// Bytes of length and checksum before a record's kind.
    public static let headerBytes = 8
    /// Largest `length` (kind + payload) of one record: 32 MiB, far above a 1 MiB batch.
    public static let recordBytesMax = 32 << 20

    /// Appends one record to `writer`.
    public static func encode(kind: UInt8, payload: some Collection<UInt8>, into writer: inout ByteWriter) {
        let length = 1 + payload.count
        precondition(length <= recordBytesMax, "record of \(length) bytes exceeds recordBytesMax \(recordBytesMax)")
        var body = [UInt8]()
        body.reserveCapacity(length)
        body.append(kind)
        body.append(contentsOf: payload)
        writer.write(UInt32(length))
        writer.write(CRC32C.checksum(body))
        writer.append(raw: body)
    }

    /// One encoded record holding `entry`.
    public static func encode(_ entry: WALEntry) -> [UInt8] {
        var payload = ByteWriter(capacity: 64)
        entry.encodePayload(into: &payload)
        var writer = ByteWriter(capacity: headerBytes + 1 + payload.count)
        encode(kind: entry.kind, payload: payload.bytes, into: &writer)
        return writer.bytes
    }

    /// The records of one segment and how its bytes end. Pure; never traps.
    public static func scan(_ bytes: [UInt8]) -> (records: [ScannedRecord], end: WALEnd) {
        var records: [ScannedRecord] = []
        var offset = 0
        // Segments are mostly zero fill until full; finding where the data ends once makes every
        // "only zeros follow" question a comparison.
        let dataEnd = endOfNonZeroBytes(bytes)
        while true {
            if offset == bytes.count { return (records, .clean(offset: offset)) }
            switch parse(bytes, at: offset) {
            case let .record(record, next):
                records.append(record)
                offset = next
            case let .bad(reason, extentEnd):
                if offset >= dataEnd { return (records, .clean(offset: offset)) }
                if extentEnd < dataEnd {
                    return (records, .corrupt(offset: offset, reason: "\(reason), and non-zero bytes follow it"))
                }
                // Only zeros follow the bad record as far as its header tells. But a damaged
                // length can make a record seem to reach the end of the data; a valid record
                // further on proves the bad one was not the last write, so it is corruption.
                if let later = firstValidRecord(bytes, after: offset, before: dataEnd) {
                    return (records, .corrupt(offset: offset, reason: "\(reason), and a valid record follows at offset \(later)"))
                }
                return (records, .tornTail(offset: offset, reason: reason))
            }
        }
    }

    enum Parsed {
        case record(ScannedRecord, next: Int)
        /// Not a valid record; `extentEnd` is where it would end (clamped to the data).
        case bad(reason: String, extentEnd: Int)
    }

    static func parse(_ bytes: [UInt8], at offset: Int) -> Parsed {
        let available = bytes.count - offset
        guard available >= headerBytes else {
            return .bad(reason: "incomplete record header (\(available) of \(headerBytes) bytes)", extentEnd: bytes.count)
        }
        let length = Int(readUInt32(bytes, at: offset))
        let headerEnd = offset + headerBytes
        guard length >= 1 else { return .bad(reason: "zero record length", extentEnd: headerEnd) }
        guard length <= recordBytesMax else {
            return .bad(reason: "record length \(length) exceeds recordBytesMax \(recordBytesMax)", extentEnd: headerEnd)
        }
        guard available - headerBytes >= length else {
            return .bad(reason: "incomplete record (\(available - headerBytes) of \(length) bytes)", extentEnd: bytes.count)
        }
        let body = bytes[headerEnd..<(headerEnd + length)]
        let stored = readUInt32(bytes, at: offset + 4)
        let computed = CRC32C.checksum(body)
        guard stored == computed else {
            return .bad(reason: "checksum mismatch (stored \(hex(stored)), computed \(hex(computed)))", extentEnd: headerEnd + length)
        }
        let record = ScannedRecord(offset: offset, kind: body[headerEnd], payload: body[(headerEnd + 1)...])
        return .record(record, next: headerEnd + length)
    }

    /// The offset of the first valid record that starts after `offset`, if any. A record's
    /// length is not zero, so none starts at or after `dataEnd` (the end of the non-zero bytes).
    static func firstValidRecord(_ bytes: [UInt8], after offset: Int, before dataEnd: Int) -> Int? {
        var candidate = offset + 1
        while candidate < dataEnd, candidate + headerBytes < bytes.count {
            let length = Int(readUInt32(bytes, at: candidate))
            if length >= 1, length <= bytes.count - candidate - headerBytes, case .record = parse(bytes, at: candidate) {
                return candidate
            }
            candidate += 1
        }
        return nil
    }

    /// One past the last non-zero byte (0 if all are zero). Reads eight bytes at a time: a
    /// preallocated segment is tens of MiB of zeros.
    static func endOfNonZeroBytes(_ bytes: [UInt8]) -> Int {
        bytes.withUnsafeBytes { raw in
            var end = raw.count
            while end >= 8, raw.loadUnaligned(fromByteOffset: end - 8, as: UInt64.self) == 0 { end -= 8 }
            while end > 0, raw[end - 1] == 0 { end -= 1 }
            return end
        }
    }

    static func readUInt32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8 | UInt32(bytes[offset + 3])
    }

    static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
    }

    /// `wal-<first LSN as 16 hex digits>.log`.
    public static func segmentName(firstLSN: UInt64) -> String { "wal-\(hex16(firstLSN)).log" }

    /// The first LSN a segment file name carries, nil for any other name.
    public static func segmentFirstLSN(name: String) -> UInt64? {
        parseHex16(name, prefix: "wal-", suffix: ".log")
    }

    static func hex16(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    static func parseHex16(_ name: String, prefix: String, suffix: String) -> UInt64? {
        guard name.hasPrefix(prefix), name.hasSuffix(suffix), name.utf8.count == prefix.utf8.count + 16 + suffix.utf8.count else { return nil }
        let digits = name.dropFirst(prefix.count).dropLast(suffix.count)
        guard digits.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else { return nil }
        return UInt64(digits, radix: 16)
    }
}
