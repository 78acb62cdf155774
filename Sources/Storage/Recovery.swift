#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Primitives
import Services

/// What was on disk when the log was opened.
public struct RecoveredFiles: Sendable {
    /// The newest checkpoint, if any.
    public var checkpoint: (slot: UInt64, payload: [UInt8])?
    /// Every log record, in LSN order; the caller decides which to use (for example, only those
    /// after the last `.checkpointed` marker at or below the checkpoint's slot).
    public var records: [(lsn: UInt64, entry: WALEntry)]
    /// The LSN the next append gets.
    public var nextLSN: UInt64
    /// Bytes cut off the end of the last segment as a torn write (0 when it ended cleanly).
    public var tornBytesCut: Int
}

/// Opens a storage directory: reads the newest checkpoint and every log segment, checks that
/// nothing is missing or damaged, cuts a torn tail off the last segment, and returns the log
/// ready for appends right after the last good record.
///
/// Rules: segments are read in LSN order, and each must start where the previous one ended
/// (`missingRecords` otherwise: a deleted or truncated segment). A torn tail is allowed only at
/// the end of the last segment, where a crash mid-write leaves one. Anything else that does not
/// check or decode is `corrupt`, naming the file and byte offset. Recovery never starts from
/// state shorter than what was acknowledged.
public enum Recovery {
    public static func open(directory: String, mode: DurabilityMode, segmentBytesMax: Int = 64 << 20,
                            limits: CodecLimits = .standard,
                            onDurable: @escaping @Sendable (UInt64) -> Void,
                            onFailure: @escaping @Sendable (StorageError) -> Void = { _ in })
        throws(StorageError) -> (wal: SegmentedWAL, recovered: RecoveredFiles) {
        precondition(mode != .none, "durability mode none keeps acceptor state in memory; there is nothing to recover")
        try FileIO.makeDirectory(directory)
        let checkpoints = CheckpointStore(directory: directory, mode: mode)
        try checkpoints.removeTemporaryFiles()
        let checkpoint = try checkpoints.newest()
        let names = try FileIO.list(directory)
        let segmentLSNs = names.compactMap { WALFormat.segmentFirstLSN(name: $0) }.sorted()

        var records: [(lsn: UInt64, entry: WALEntry)] = []
        var existing: [(firstLSN: UInt64, recordCount: UInt64, path: String)] = []
        var expectedLSN: UInt64?
        var appendOffset = 0
        var tornBytesCut = 0
        for (position, firstLSN) in segmentLSNs.enumerated() {
            let path = FileIO.join(directory, WALFormat.segmentName(firstLSN: firstLSN))
            guard firstLSN >= 1 else { throw .corrupt(file: path, offset: 0, reason: "segment names LSN 0; LSNs start at 1") }
            if let expectedLSN, firstLSN != expectedLSN {
                throw .missingRecords(file: path, expectedLSN: expectedLSN, foundLSN: firstLSN)
            }
            let bytes = try FileIO.readAll(path)
            let scan = WALFormat.scan(bytes)
            let isLast = position == segmentLSNs.count - 1
            for (index, record) in scan.records.enumerated() {
                do throws(DecodeError) {
                    let entry = try WALEntry.decode(kind: record.kind, payload: record.payload, limits: limits)
                    records.append((firstLSN + UInt64(index), entry))
                } catch {
                    throw .corrupt(file: path, offset: record.offset, reason: "record \(firstLSN + UInt64(index)) does not decode: \(error)")
                }
            }
            switch scan.end {
            case let .clean(offset):
                appendOffset = offset
            case let .tornTail(offset, reason):
                guard isLast else {
                    throw .corrupt(file: path, offset: offset, reason: "\(reason) in a segment that is not the last")
                }
                appendOffset = offset
                tornBytesCut = bytes.count - offset
            case let .corrupt(offset, reason):
                throw .corrupt(file: path, offset: offset, reason: reason)
            }
            existing.append((firstLSN, UInt64(scan.records.count), path))
            expectedLSN = firstLSN + UInt64(scan.records.count)
        }
        if tornBytesCut > 0, let last = existing.last {
            try cutTail(path: last.path, at: appendOffset, mode: mode)
        }
        let nextLSN = expectedLSN ?? 1
        let wal = try SegmentedWAL(directory: directory, mode: mode, segmentBytesMax: segmentBytesMax, existing: existing,
                                   appendOffset: appendOffset, nextLSN: nextLSN, onDurable: onDurable, onFailure: onFailure)
        return (wal, RecoveredFiles(checkpoint: checkpoint, records: records, nextLSN: nextLSN, tornBytesCut: tornBytesCut))
    }

    /// Removes a torn write: truncates the file at `offset` (the log preallocates it again on
    /// open, which reads as zeros), and makes the cut durable before anything is appended over it,
    /// so old torn bytes can never reappear behind new records.
    static func cutTail(path: String, at offset: Int, mode: DurabilityMode) throws(StorageError) {
        let fd = try FileIO.openFile(path, flags: O_RDWR)
        defer { FileIO.closeFile(fd) }
        try FileIO.truncate(fd, bytes: offset, path: path)
        if mode == .fsync { try FileIO.syncFile(fd, path: path) }
    }
}
