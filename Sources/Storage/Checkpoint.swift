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

/// One piece of a checkpoint in transfer to a peer. Each chunk carries the whole's identity
/// (`slot`, `count`, `totalBytes`) so a chunk of another checkpoint or transfer is recognized,
/// and its own checksum so a damaged one is refused rather than assembled.
public struct CheckpointChunk: Hashable, Sendable {
    public var slot: UInt64
    public var index: Int
    public var count: Int
    public var totalBytes: Int
    public var crc32c: UInt32
    public var bytes: [UInt8]

    public init(slot: UInt64, index: Int, count: Int, totalBytes: Int, crc32c: UInt32, bytes: [UInt8]) {
        self.slot = slot
        self.index = index
        self.count = count
        self.totalBytes = totalBytes
        self.crc32c = crc32c
        self.bytes = bytes
    }

    /// Splits a checkpoint's payload into chunks of at most `chunkBytesMax` bytes (at least one
    /// chunk, even for an empty payload).
    public static func split(slot: UInt64, payload: [UInt8], chunkBytesMax: Int) -> [CheckpointChunk] {
        precondition(chunkBytesMax > 0, "chunkBytesMax must be positive, got \(chunkBytesMax)")
        let count = max(1, (payload.count + chunkBytesMax - 1) / chunkBytesMax)
        return (0..<count).map { index in
            let start = index * chunkBytesMax
            let bytes = Array(payload[start..<min(payload.count, start + chunkBytesMax)])
            return CheckpointChunk(slot: slot, index: index, count: count, totalBytes: payload.count, crc32c: CRC32C.checksum(bytes), bytes: bytes)
        }
    }
}

/// Why a chunk was refused during reassembly.
public enum ChunkError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The chunk belongs to another checkpoint or transfer (slot, count or total differ).
    case mismatched(index: Int, reason: String)
    case indexOutOfRange(index: Int, count: Int)
    case badChecksum(index: Int, stored: UInt32, computed: UInt32)
    /// The chunk's bytes would exceed the announced total, or the chunks together fall short of it.
    case wrongSize(index: Int, bytes: Int, expected: Int)

    public var description: String {
        switch self {
        case let .mismatched(index, reason): "chunk \(index) belongs to another checkpoint: \(reason)"
        case let .indexOutOfRange(index, count): "chunk index \(index) outside 0..<\(count)"
        case let .badChecksum(index, stored, computed):
            "chunk \(index) fails its checksum (stored \(WALFormat.hex(stored)), computed \(WALFormat.hex(computed)))"
        case let .wrongSize(index, bytes, expected): "chunk \(index) holds \(bytes) bytes, expected \(expected)"
        }
    }
}

/// Collects the chunks of one checkpoint, in any order, and gives the payload once all arrived.
/// Pure; a receiver feeds it chunks from the network.
public struct CheckpointAssembler: Sendable {
    public let slot: UInt64
    public let count: Int
    public let totalBytes: Int
    private var receivedBytes = 0
    private var parts: [[UInt8]?]
    public private(set) var receivedCount = 0

    /// Starts from the first chunk that arrives, which fixes the checkpoint's identity. Its
    /// counts are a peer's word: they are checked against `payloadBytesMax` before anything is
    /// allocated.
    public init(first chunk: CheckpointChunk, payloadBytesMax: Int) throws(ChunkError) {
        guard chunk.count >= 1, chunk.totalBytes >= 0, chunk.totalBytes <= payloadBytesMax,
              chunk.count <= max(1, chunk.totalBytes) else {
            throw .mismatched(index: chunk.index, reason: "count \(chunk.count) and total \(chunk.totalBytes) bytes are impossible or exceed \(payloadBytesMax)")
        }
        slot = chunk.slot
        count = chunk.count
        totalBytes = chunk.totalBytes
        parts = Array(repeating: nil, count: chunk.count)
        _ = try add(chunk)
    }

    public var isComplete: Bool { receivedCount == count }

    /// Adds a chunk; returns the payload once every chunk is in. A repeated chunk (after its
    /// checks) is ignored.
    @discardableResult
    public mutating func add(_ chunk: CheckpointChunk) throws(ChunkError) -> [UInt8]? {
        guard chunk.slot == slot, chunk.count == count, chunk.totalBytes == totalBytes else {
            throw .mismatched(index: chunk.index, reason: "slot \(chunk.slot), \(chunk.count) chunks, \(chunk.totalBytes) bytes; expected slot \(slot), \(count) chunks, \(totalBytes) bytes")
        }
        guard chunk.index >= 0, chunk.index < count else { throw .indexOutOfRange(index: chunk.index, count: count) }
        let computed = CRC32C.checksum(chunk.bytes)
        guard computed == chunk.crc32c else { throw .badChecksum(index: chunk.index, stored: chunk.crc32c, computed: computed) }
        if parts[chunk.index] != nil { return nil }
        // Sizes are the sender's choice, but together they must make exactly `totalBytes`; a
        // running sum keeps memory within the announced (and bounded) total.
        guard receivedBytes + chunk.bytes.count <= totalBytes else {
            throw .wrongSize(index: chunk.index, bytes: chunk.bytes.count, expected: totalBytes - receivedBytes)
        }
        receivedBytes += chunk.bytes.count
        parts[chunk.index] = chunk.bytes
        receivedCount += 1
        guard isComplete else { return nil }
        var payload: [UInt8] = []
        payload.reserveCapacity(totalBytes)
        for part in parts { payload.append(contentsOf: part ?? []) }
        guard payload.count == totalBytes else {
            throw .wrongSize(index: count - 1, bytes: payload.count, expected: totalBytes)
        }
        return payload
    }
}
