// Binary writing and reading shared by service snapshots and the wire codec.
//
// Integers are big-endian and fixed-width so that equal values always give equal bytes (state
// digests depend on it). `ByteReader` treats its input as untrusted: every read checks what is
// left and reports a typed error instead of trapping.

/// Why bytes could not be decoded. Every case says where (`offset`) and, where it helps, what.
public enum DecodeError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The input ended `needed` bytes too early at `offset`.
    case truncated(offset: Int, needed: Int)
    /// A length or count at `offset` exceeds the limit it is checked against.
    case lengthTooLarge(offset: Int, length: Int, limit: Int)
    /// A tag at `offset` names no known case of `type`.
    case unknownTag(offset: Int, tag: UInt8, type: String)
    /// Bytes at `offset` do not form valid UTF-8.
    case invalidUTF8(offset: Int)
    /// A decoded value breaks a rule of its type (`reason` says which).
    case invalidValue(offset: Int, reason: String)
    /// Decoding finished with `count` bytes left over.
    case trailingBytes(count: Int)

    public var description: String {
        switch self {
        case let .truncated(offset, needed): "input ends \(needed) byte(s) early at offset \(offset)"
        case let .lengthTooLarge(offset, length, limit):
            "length \(length) at offset \(offset) exceeds the limit \(limit)"
        case let .unknownTag(offset, tag, type): "unknown \(type) tag \(tag) at offset \(offset)"
        case let .invalidUTF8(offset): "invalid UTF-8 in the string at offset \(offset)"
        case let .invalidValue(offset, reason): "invalid value at offset \(offset): \(reason)"
        case let .trailingBytes(count): "\(count) unexpected byte(s) after the end of the value"
        }
    }
}

/// Appends fixed-width big-endian integers and length-prefixed strings to a byte array.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public var count: Int { bytes.count }

    public mutating func write(_ value: UInt8) { bytes.append(value) }

    public mutating func write(_ value: Bool) { bytes.append(value ? 1 : 0) }

    public mutating func write(_ value: UInt16) { writeBigEndian(value) }

    public mutating func write(_ value: UInt32) { writeBigEndian(value) }

    public mutating func write(_ value: UInt64) { writeBigEndian(value) }

    /// A `UInt32` byte count, then the UTF-8 bytes.
    public mutating func write(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            precondition(utf8.count <= Int(UInt32.max), "string of \(utf8.count) bytes is too long to encode")
            write(UInt32(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    /// A `UInt32` byte count, then the bytes.
    public mutating func write(bytes value: some Collection<UInt8>) {
        precondition(value.count <= Int(UInt32.max), "blob of \(value.count) bytes is too long to encode")
        write(UInt32(value.count))
        bytes.append(contentsOf: value)
    }

    public mutating func append(raw value: some Sequence<UInt8>) { bytes.append(contentsOf: value) }

    /// Overwrites four bytes at `offset` (used to fill a length prefix once the body is known).
    public mutating func patch(_ value: UInt32, at offset: Int) {
        precondition(offset >= 0 && offset + 4 <= bytes.count, "patch at \(offset) outside \(bytes.count) bytes")
        for index in 0..<4 {
            bytes[offset + index] = UInt8(truncatingIfNeeded: value >> (24 - 8 * UInt32(index)))
        }
    }

    private mutating func writeBigEndian<T: FixedWidthInteger>(_ value: T) {
        var shift = T.bitWidth - 8
        while shift >= 0 {
            bytes.append(UInt8(truncatingIfNeeded: value >> shift))
            shift -= 8
        }
    }
}

/// Reads what `ByteWriter` wrote, from untrusted input: no read traps.
public struct ByteReader: Sendable {
    public let bytes: ArraySlice<UInt8>
    /// Absolute index into `bytes` of the next unread byte.
    public private(set) var position: Int

    public init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        position = bytes.startIndex
    }

    public init(_ bytes: [UInt8]) { self.init(bytes[...]) }

    /// Bytes not read yet.
    public var remaining: Int { bytes.endIndex - position }

    /// Offset of the next byte from the start of the input (for error messages).
    public var offset: Int { position - bytes.startIndex }

    public mutating func readUInt8() throws(DecodeError) -> UInt8 {
        try need(1)
        defer { position += 1 }
        return bytes[position]
    }

    public mutating func readBool() throws(DecodeError) -> Bool {
        let at = offset
        switch try readUInt8() {
        case 0: return false
        case 1: return true
        case let other: throw .invalidValue(offset: at, reason: "boolean byte \(other) is neither 0 nor 1")
        }
    }

    public mutating func readUInt16() throws(DecodeError) -> UInt16 { try readBigEndian() }

    public mutating func readUInt32() throws(DecodeError) -> UInt32 { try readBigEndian() }

    public mutating func readUInt64() throws(DecodeError) -> UInt64 { try readBigEndian() }

    /// A length-prefixed UTF-8 string of at most `maxBytes` bytes.
    ///
    /// Every replica decodes every command's key and value, so this is on the hot path of each. The
    /// standard library's `String(validating:as:)` takes a generic transcoding path here (about a
    /// twentieth of a replica's CPU at peak); ASCII bytes, what workloads send, are valid UTF-8 as
    /// they are and go straight to `String(decoding:as:)`, whose contiguous path only copies. Other
    /// bytes are still validated, and invalid ones refused.
    public mutating func readString(maxBytes: Int) throws(DecodeError) -> String {
        let at = offset
        let length = try readLength(maxBytes: maxBytes)
        let from = position - bytes.startIndex
        let string: String? = bytes.withUnsafeBufferPointer { all in
            let body = UnsafeBufferPointer(rebasing: all[from..<(from + length)])
            if Self.isASCII(body) { return String(decoding: body, as: UTF8.self) }
            return String(validating: body, as: UTF8.self)
        }
        guard let string else { throw .invalidUTF8(offset: at) }
        position += length
        return string
    }

    /// True if no byte has its high bit set; eight bytes at a time.
    @inline(__always)
    static func isASCII(_ body: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let base = body.baseAddress else { return true }
        let raw = UnsafeRawPointer(base)
        var index = 0
        var highBits: UInt64 = 0
        while index + 8 <= body.count {
            highBits |= raw.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            index += 8
        }
        while index < body.count {
            highBits |= UInt64(body[index])
            index += 1
        }
        return highBits & 0x8080_8080_8080_8080 == 0
    }

    /// A length-prefixed byte string of at most `maxBytes` bytes.
    public mutating func readBlob(maxBytes: Int) throws(DecodeError) -> ArraySlice<UInt8> {
        let length = try readLength(maxBytes: maxBytes)
        defer { position += length }
        return bytes[position..<(position + length)]
    }

    /// A `UInt32` length prefix, checked against `maxBytes` and against the bytes left; the body
    /// is not consumed.
    private mutating func readLength(maxBytes: Int) throws(DecodeError) -> Int {
        let at = offset
        let length = Int(try readUInt32())
        guard length <= maxBytes else { throw .lengthTooLarge(offset: at, length: length, limit: maxBytes) }
        try need(length)
        return length
    }

    /// A `UInt32` element count, checked against `max` and against the bytes left, given that
    /// each element takes at least `minElementBytes`; a forged count cannot make us allocate.
    public mutating func readCount(max: Int, minElementBytes: Int) throws(DecodeError) -> Int {
        let at = offset
        let count = Int(try readUInt32())
        guard count <= max else { throw .lengthTooLarge(offset: at, length: count, limit: max) }
        let least = count * Swift.max(minElementBytes, 0)
        guard least <= remaining else { throw .truncated(offset: offset, needed: least - remaining) }
        return count
    }

    public mutating func readRaw(_ count: Int) throws(DecodeError) -> ArraySlice<UInt8> {
        try need(count)
        defer { position += count }
        return bytes[position..<(position + count)]
    }

    /// Fails unless every byte has been read.
    public func expectEnd() throws(DecodeError) {
        guard remaining == 0 else { throw .trailingBytes(count: remaining) }
    }

    private func need(_ count: Int) throws(DecodeError) {
        guard count >= 0, remaining >= count else {
            throw .truncated(offset: offset, needed: count - remaining)
        }
    }

    private mutating func readBigEndian<T: FixedWidthInteger>() throws(DecodeError) -> T {
        let width = T.bitWidth / 8
        try need(width)
        var value: T = 0
        for index in position..<(position + width) {
            value = (value << 8) | T(bytes[index])
        }
        position += width
        return value
    }
}
