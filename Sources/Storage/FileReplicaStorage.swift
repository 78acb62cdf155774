import Foundation
import Primitives
import Paxos
import Services

/// A replica's disk as files: acceptor records in a `SegmentedWAL`, checkpoints in a
/// `CheckpointStore`, both in one directory (`group.data_dir/<group>/r<replica>`).
///
/// Positions are WAL sequence numbers. In `write` mode a record is durable once `commit` has
/// handed it to the OS; in `fsync` mode `commit` only asks the sync thread, which reports the
/// durable position later through `onDurable` (group commit: every record appended while a sync
/// runs shares the next one). The event loop never waits for a disk: checkpoints are written on a
/// queue of their own, and the WAL segments they cover are deleted after the checkpoint is durable.
///
/// `@unchecked Sendable`: the WAL guards itself; `appendedPosition` and `newestCheckpoint` are
/// touched only by the replica's loop; the checkpoint queue touches only the WAL and the store.
public final class FileReplicaStorage: ReplicaStorage, @unchecked Sendable {
    public let directory: String
    public let mode: DurabilityMode
    private let wal: SegmentedWAL
    private let checkpoints: CheckpointStore
    private let checkpointQueue: DispatchQueue
    private let onFailure: @Sendable (StorageError) -> Void
    public private(set) var appendedPosition: UInt64
    public private(set) var newestCheckpoint: Checkpoint?

    /// Opens (or creates) `directory` and reads what survived: the newest checkpoint and the
    /// records logged after it. A torn last record is cut; any other damage is an error naming the
    /// file and the byte offset.
    /// - Parameters:
    ///   - onDurable: called from the sync thread with the position now durable (`fsync` mode).
    ///   - onFailure: a write, sync or checkpoint failed; the replica must stop, since what it
    ///     acknowledged may not be on disk.
    public static func open(directory: String, mode: DurabilityMode, segmentBytesMax: Int = 64 << 20,
                            onDurable: @escaping @Sendable (UInt64) -> Void,
                            onFailure: @escaping @Sendable (StorageError) -> Void) throws(StorageError) -> (FileReplicaStorage, RecoveredState) {
        let (wal, files) = try Recovery.open(directory: directory, mode: mode, segmentBytesMax: segmentBytesMax, onDurable: onDurable,
                                             onFailure: onFailure)
        var checkpoint: Checkpoint?
        if let found = files.checkpoint {
            guard let (position, bytes) = Self.splitPayload(found.payload) else {
                throw .corrupt(file: FileIO.join(directory, CheckpointFormat.fileName(slot: found.slot)), offset: CheckpointFormat.headerBytes,
                               reason: "checkpoint payload shorter than its position field")
            }
            checkpoint = Checkpoint(slot: found.slot, position: position, bytes: bytes)
        }
        let after = checkpoint?.position ?? 0
        var records: [PersistRecord] = []
        for (lsn, entry) in files.records where lsn > after {
            if case let .persist(record) = entry { records.append(record) }
        }
        let storage = FileReplicaStorage(directory: directory, mode: mode, wal: wal, appendedPosition: files.nextLSN - 1,
                                         checkpoint: checkpoint, onFailure: onFailure)
        return (storage, RecoveredState(checkpoint: checkpoint, records: records))
    }

    private init(directory: String, mode: DurabilityMode, wal: SegmentedWAL, appendedPosition: UInt64, checkpoint: Checkpoint?,
                 onFailure: @escaping @Sendable (StorageError) -> Void) {
        self.directory = directory
        self.mode = mode
        self.wal = wal
        checkpoints = CheckpointStore(directory: directory, mode: mode)
        checkpointQueue = DispatchQueue(label: "csmr.checkpoint.\(directory)")
        self.appendedPosition = appendedPosition
        newestCheckpoint = checkpoint
        self.onFailure = onFailure
    }

    public var durablePosition: UInt64 { wal.durableLSN }

    /// Group-commit counters.
    public var stats: WALStats { wal.stats }

    public func persist(_ records: [PersistRecord]) {
        for record in records { appendedPosition = wal.append(.persist(record)) }
    }

    public func commit() {
        guard appendedPosition > wal.durableLSN else { return }
        switch mode {
        case .fsync:
            // The sync thread writes and syncs; the loop never blocks on the disk.
            wal.requestSync(through: appendedPosition)
        case .write, .none:
            do {
                try wal.write()
            } catch {
                onFailure(error)
            }
        }
    }

    public func saveCheckpoint(_ checkpoint: Checkpoint) {
        newestCheckpoint = checkpoint
        let store = checkpoints
        let wal = wal
        let onFailure = onFailure
        checkpointQueue.async {
            do throws(StorageError) {
                var payload = Self.positionBytes(checkpoint.position)
                payload += checkpoint.bytes
                try store.write(slot: checkpoint.slot, payload: payload)
                // Only now may the records it covers go.
                try wal.dropSegments(below: checkpoint.position + 1)
            } catch {
                onFailure(error)
            }
        }
    }

    /// Waits for checkpoint writes in progress, then closes the log (it writes and syncs what
    /// is buffered).
    public func close() throws(StorageError) {
        checkpointQueue.sync {}
        try wal.close()
    }

    /// A checkpoint file's payload: the WAL position it covers (u64, big-endian), then the bytes.
    static func positionBytes(_ position: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: position >> (56 - 8 * $0)) } }

    static func splitPayload(_ payload: [UInt8]) -> (position: UInt64, bytes: [UInt8])? {
        guard payload.count >= 8 else { return nil }
        let position = payload[0..<8].reduce(UInt64(0)) { ($0 << 8) | UInt64($1) }
        return (position, Array(payload[8...]))
    }
}
