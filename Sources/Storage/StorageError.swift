#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why storage could not be read or written. Every case names the file, and where bytes are at
/// fault, the byte offset in it, so an operator can inspect the damage; recovery never works
/// around one of these by starting from shorter state.
public enum StorageError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A system call on `file` failed with `errno`.
    case io(file: String, operation: String, errno: Int32)
    /// The bytes of `file` at `offset` are not what was written: a checksum, magic, length or
    /// decoding failure that is not a torn write at the end of the log.
    case corrupt(file: String, offset: Int, reason: String)
    /// The segment `file` starts at LSN `foundLSN` where `expectedLSN` was due: the records in
    /// between are gone (an earlier segment was deleted or truncated).
    case missingRecords(file: String, expectedLSN: UInt64, foundLSN: UInt64)

    public var description: String {
        switch self {
        case let .io(file, operation, code):
            "\(file): \(operation) failed: \(String(cString: strerror(code))) (errno \(code))"
        case let .corrupt(file, offset, reason):
            "\(file): corrupt at byte offset \(offset): \(reason)"
        case let .missingRecords(file, expectedLSN, foundLSN):
            "\(file): byte offset 0: segment starts at LSN \(foundLSN) but LSN \(expectedLSN) was expected; "
                + "records are missing (an earlier segment was deleted or truncated)"
        }
    }
}
