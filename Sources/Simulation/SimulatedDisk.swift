import Paxos
import Primitives
import Storage

/// How a seed's simulated disks behave: sync and checkpoint latencies, and what a crash does to
/// writes that were not synced yet.
struct DiskProfile: Sendable {
    /// A sync usually takes between these (an SSD's fdatasync).
    var syncMicrosecondsMin: UInt64 = 100
    var syncMicrosecondsMax: UInt64 = 1_000
    /// Chance that a sync is slow (a busy or failing disk), and how slow it can get.
    var slowSyncProbability = 0.0
    var slowSyncMicrosecondsMax: UInt64 = 0
    /// A checkpoint (temporary file, fsync, rename, directory fsync) takes up to this long.
    var checkpointMicrosecondsMax: UInt64 = 5_000
    /// Chance that a crash finds some unsynced records already written out by the OS (they
    /// survive, though nothing that depends on them left).
    var unsyncedSurvivalProbability = 0.0
    /// Chance that a crash leaves the first lost record half written (a torn write).
    var tornWriteProbability = 0.0

    /// Latency of one sync, drawn from `random`.
    func syncMicroseconds(_ random: inout SplitMix64) -> UInt64 {
        var latency = syncMicrosecondsMin + random.next() % (syncMicrosecondsMax - syncMicrosecondsMin + 1)
        if slowSyncMicrosecondsMax > 0, random.chance(slowSyncProbability) { latency += random.next() % slowSyncMicrosecondsMax }
        return latency
    }
}

/// A disk operation the simulator must complete after a simulated latency.
enum DiskCompletion {
    /// A sync of every record up to `through` returns.
    case sync(through: UInt64)
    /// A checkpoint's file is durable.
    case checkpoint(Checkpoint)
}

/// A replica's simulated disk: the write-ahead log in the real record format (`WALFormat`), and
/// checkpoints, with the durability a real disk gives and no more.
///
/// A record handed to `persist` is written but not durable; `commit` asks for a sync, which the
/// simulator completes after a latency (`pendingIO`). While a sync is in flight, later commits
/// share the next one (group commit). A checkpoint becomes durable after its own write latency;
/// only then are the records it covers dropped. A crash keeps what was synced, maybe some
/// unsynced records (the OS may have written them), maybe half of the next one (a torn write); a
/// restart reads the log back with `WALFormat.scan`, which must cut a torn tail and find nothing
/// else wrong.
///
/// A class, shared by the node (its storage) and the simulator (which completes its I/O); the
/// simulator is single-threaded, which is what makes the unchecked `Sendable` sound.
final class SimulatedDisk: ReplicaStorage, @unchecked Sendable {
    private let profile: DiskProfile
    private var random: SplitMix64
    /// Log records after the durable checkpoint's position, with their positions, in order.
    private var log: [(position: UInt64, bytes: [UInt8])] = []
    private(set) var appendedPosition: UInt64 = 0
    private(set) var durablePosition: UInt64 = 0
    /// The newest checkpoint taken (served to peers at once, like the file storage does).
    private(set) var newestCheckpoint: Checkpoint?
    /// The newest checkpoint that is durable: what a restart starts from.
    private(set) var durableCheckpoint: Checkpoint?
    /// The position the sync in flight covers, if one is.
    private var syncingThrough: UInt64?
    /// A commit arrived while a sync was in flight: another sync follows it.
    private var syncWanted = false
    /// Checkpoint files are written one after another: the last one completes at this time.
    private var checkpointWriterFreeAtMicroseconds: UInt64 = 0
    /// Disk operations started since the simulator last looked, with their latencies.
    private var started: [(completion: DiskCompletion, delayMicroseconds: UInt64)] = []
    /// Bumped by every crash: completions of operations started before it are ignored.
    private(set) var incarnation = 0
    /// Counters for the report.
    private(set) var syncs = 0

    init(profile: DiskProfile, seed: UInt64) {
        self.profile = profile
        random = SplitMix64(seed: seed)
    }

    // MARK: ReplicaStorage

    func persist(_ records: [PersistRecord]) {
        for record in records {
            appendedPosition += 1
            log.append((appendedPosition, WALFormat.encode(.persist(record))))
        }
    }

    func commit() {
        guard appendedPosition > (syncingThrough ?? durablePosition) else { return }
        if syncingThrough != nil {
            syncWanted = true
        } else {
            startSync()
        }
    }

    func saveCheckpoint(_ checkpoint: Checkpoint) {
        precondition(checkpoint.position <= appendedPosition, "checkpoint at position \(checkpoint.position) beyond \(appendedPosition)")
        newestCheckpoint = checkpoint
        started.append((.checkpoint(checkpoint), 200 + random.next() % profile.checkpointMicrosecondsMax))
    }

    // MARK: The simulator's side

    /// Disk operations started since the last call; the simulator completes each after its delay
    /// (checkpoint writes in order, as one writer does them).
    func takeStarted(nowMicroseconds: UInt64) -> [(completion: DiskCompletion, delayMicroseconds: UInt64)] {
        var taken = started
        started = []
        for index in taken.indices {
            if case .checkpoint = taken[index].completion {
                let done = max(nowMicroseconds + taken[index].delayMicroseconds, checkpointWriterFreeAtMicroseconds + 1)
                checkpointWriterFreeAtMicroseconds = done
                taken[index].delayMicroseconds = done - nowMicroseconds
            }
        }
        return taken
    }

    /// A disk operation finished. Returns the durable position (which may have moved).
    func complete(_ completion: DiskCompletion) -> UInt64 {
        switch completion {
        case let .sync(through):
            durablePosition = max(durablePosition, through)
            syncingThrough = nil
            if syncWanted {
                syncWanted = false
                if appendedPosition > durablePosition { startSync() }
            }
        case let .checkpoint(checkpoint):
            if checkpoint.slot > durableCheckpoint?.slot ?? 0 || durableCheckpoint == nil {
                durableCheckpoint = checkpoint
                log.removeFirst(log.prefix { $0.position <= checkpoint.position }.count)
            }
        }
        return durablePosition
    }

    /// Records appended but not yet durable.
    var unsyncedRecords: Int { Int(appendedPosition - durablePosition) }

    /// The process dies. Returns what a restart finds on the disk, and what the crash did. From
    /// now on the disk holds only that, and operations in flight never complete.
    func crash() -> (recovered: RecoveredState, lostRecords: Int, tornBytes: Int?) {
        incarnation += 1
        syncingThrough = nil
        syncWanted = false
        started = []
        let synced = log.prefix { $0.position <= durablePosition }.count
        var kept = synced
        if random.chance(profile.unsyncedSurvivalProbability), log.count > synced {
            kept += Int(random.next() % UInt64(log.count - synced + 1))
        }
        var bytes: [UInt8] = []
        for entry in log[..<kept] { bytes += entry.bytes }
        var tornBytes: Int?
        if kept < log.count, random.chance(profile.tornWriteProbability) {
            // A prefix of the next record reached the platter, then the zeros of preallocation.
            let record = log[kept].bytes
            let prefix = 1 + Int(random.next() % UInt64(record.count - 1))
            bytes += record[..<prefix]
            bytes += [UInt8](repeating: 0, count: Int(random.next() % 16))
            tornBytes = prefix
        }
        let records = Self.readBack(bytes, survivors: log[..<kept].map(\.bytes), torn: tornBytes.map { _ in log[kept].bytes })
        // The zero fill may complete a torn record whose missing bytes were zeros: then it survived.
        if records.count > kept { tornBytes = nil }
        kept = records.count
        let lost = log.count - kept
        log.removeLast(lost)
        appendedPosition = max(log.last?.position ?? 0, durablePosition, durableCheckpoint?.position ?? 0)
        durablePosition = appendedPosition
        newestCheckpoint = durableCheckpoint
        return (RecoveredState(checkpoint: durableCheckpoint, records: records), lost, tornBytes)
    }

    /// Recovery's reading of the log, with the production scanner and decoder: the records before
    /// a torn tail, which is cut. Anything else (corruption, a record that decodes differently
    /// from what was written) is a bug in the format or in this disk, not a fault to survive.
    private static func readBack(_ bytes: [UInt8], survivors: [[UInt8]], torn: [UInt8]?) -> [PersistRecord] {
        let (scanned, end) = WALFormat.scan(bytes)
        if case let .corrupt(offset, reason) = end {
            preconditionFailure("WALFormat.scan found corruption at \(offset) in a log with at most a torn tail: \(reason)")
        }
        let records = scanned.map { record in
            do {
                guard case let .persist(persisted) = try WALEntry.decode(kind: record.kind, payload: record.payload) else {
                    preconditionFailure("the simulated log holds only persist records")
                }
                return persisted
            } catch {
                preconditionFailure("a surviving record at offset \(record.offset) does not decode: \(error)")
            }
        }
        let expected = survivors + (torn.map { [$0] } ?? [])
        precondition(records.count <= expected.count && zip(records, expected).allSatisfy { WALFormat.encode(.persist($0)) == $1 },
                     "recovery read back \(records.count) records that differ from the \(survivors.count) written (torn: \(torn != nil))")
        // Only the torn record may be missing, and only because it is torn.
        precondition(records.count >= survivors.count, "recovery lost a record that was written whole")
        return records
    }

    private func startSync() {
        syncingThrough = appendedPosition
        syncs += 1
        started.append((.sync(through: appendedPosition), profile.syncMicroseconds(&random)))
    }
}
