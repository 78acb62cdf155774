#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Primitives

// Checkpoints: a snapshot of the replicated state at a slot, so the log before it can be dropped.
//
//     file = magic "CSMRCKPT"  version:u8  slot:u64  payloadLength:u64  crc32c:u32  payload
//
// A checkpoint is written to a temporary file, fsync'd, renamed into place and the directory
// fsync'd, so a crash leaves either the old set or the new one, never a half-written checkpoint
// under its final name. The newest two are kept: if the newest turns out damaged the operator
// still has the previous one, but recovery refuses to fall back on its own (a damaged newest
// checkpoint means the disk is lying, and the log it allowed us to drop may be gone).

public enum CheckpointFormat {
    public static let magic: [UInt8] = Array("CSMRCKPT".utf8)
    public static let version: UInt8 = 1
    /// Magic, version, slot, payload length and checksum.
    public static let headerBytes = 8 + 1 + 8 + 8 + 4

    public static func encode(slot: UInt64, payload: [UInt8]) -> [UInt8] {
        var writer = ByteWriter(capacity: headerBytes + payload.count)
        writer.append(raw: magic)
        writer.write(version)
        writer.write(slot)
        writer.write(UInt64(payload.count))
        writer.write(CRC32C.checksum(payload))
        writer.append(raw: payload)
        return writer.bytes
    }

    /// Decodes a checkpoint file's bytes; `file` only names the file in errors.
    public static func decode(_ bytes: [UInt8], file: String) throws(StorageError) -> (slot: UInt64, payload: [UInt8]) {
        guard bytes.count >= headerBytes else {
            throw .corrupt(file: file, offset: bytes.count, reason: "file of \(bytes.count) bytes is shorter than the \(headerBytes)-byte header")
        }
        guard Array(bytes[0..<8]) == magic else { throw .corrupt(file: file, offset: 0, reason: "bad magic, not a csmr checkpoint") }
        guard bytes[8] == version else { throw .corrupt(file: file, offset: 8, reason: "unknown checkpoint version \(bytes[8])") }
        var reader = ByteReader(bytes[9..<headerBytes])
        // The header is complete (checked above), so these reads cannot fail.
        guard let slot = try? reader.readUInt64(), let length = try? reader.readUInt64(), let stored = try? reader.readUInt32() else {
            preconditionFailure("a \(headerBytes)-byte checkpoint header did not read")
        }
        let held = bytes.count - headerBytes
        guard length == UInt64(held) else {
            throw .corrupt(file: file, offset: 17, reason: "payload length \(length) but the file holds \(held) payload bytes")
        }
        let payload = Array(bytes[headerBytes...])
        let computed = CRC32C.checksum(payload)
        guard computed == stored else {
            throw .corrupt(file: file, offset: headerBytes,
                           reason: "payload bytes \(headerBytes)..<\(bytes.count) fail their checksum (stored \(WALFormat.hex(stored)), computed \(WALFormat.hex(computed)))")
        }
        return (slot, payload)
    }

    /// `checkpoint-<slot as 16 hex digits>.ckpt`.
    public static func fileName(slot: UInt64) -> String { "checkpoint-\(WALFormat.hex16(slot)).ckpt" }

    public static func slot(fileName: String) -> UInt64? { WALFormat.parseHex16(fileName, prefix: "checkpoint-", suffix: ".ckpt") }
}

/// Checkpoint files in one directory. Not thread-safe: one owner calls it.
public struct CheckpointStore: Sendable {
    public let directory: String
    /// Whether writes are fsync'd (only in `.fsync` mode, as for the log).
    public let mode: DurabilityMode
    /// How many checkpoints are kept.
    public static let keptCount = 2

    public init(directory: String, mode: DurabilityMode = .fsync) {
        self.directory = directory
        self.mode = mode
    }

    /// Writes the checkpoint of `slot` durably, then deletes all but the newest two.
    public func write(slot: UInt64, payload: [UInt8]) throws(StorageError) {
        let name = CheckpointFormat.fileName(slot: slot)
        let path = FileIO.join(directory, name)
        let temporary = path + ".tmp"
        let fd = try FileIO.openFile(temporary, flags: O_WRONLY | O_CREAT | O_TRUNC)
        do {
            try FileIO.pwriteAll(fd, CheckpointFormat.encode(slot: slot, payload: payload), at: 0, path: temporary)
            if mode == .fsync { try FileIO.syncFile(fd, path: temporary) }
        } catch {
            close(fd)
            throw error
        }
        close(fd)
        try FileIO.renameFile(temporary, path)
        if mode == .fsync { try FileIO.fsyncDirectory(directory) }
        for old in try slots().dropLast(Self.keptCount) {
            try FileIO.removeFile(FileIO.join(directory, CheckpointFormat.fileName(slot: old)))
        }
    }

    /// Deletes temporary files a crash left behind mid-write (they never were checkpoints).
    public func removeTemporaryFiles() throws(StorageError) {
        for name in try FileIO.list(directory) where name.hasPrefix("checkpoint-") && name.hasSuffix(".ckpt.tmp") {
            try FileIO.removeFile(FileIO.join(directory, name))
        }
    }

    /// The slots of the checkpoint files present, ascending.
    public func slots() throws(StorageError) -> [UInt64] {
        try FileIO.list(directory).compactMap { CheckpointFormat.slot(fileName: $0) }.sorted()
    }

    /// The newest checkpoint, nil if there is none. A damaged newest checkpoint throws: it is
    /// never silently replaced by an older one.
    public func newest() throws(StorageError) -> (slot: UInt64, payload: [UInt8])? {
        guard let slot = try slots().last else { return nil }
        return try read(slot: slot)
    }

    /// The checkpoint of `slot` (to send to a peer, or to restore).
    public func read(slot: UInt64) throws(StorageError) -> (slot: UInt64, payload: [UInt8]) {
        let path = FileIO.join(directory, CheckpointFormat.fileName(slot: slot))
        let checkpoint = try CheckpointFormat.decode(try FileIO.readAll(path), file: path)
        guard checkpoint.slot == slot else {
            throw .corrupt(file: path, offset: 9, reason: "header names slot \(checkpoint.slot), the file name slot \(slot)")
        }
        return checkpoint
    }
}
