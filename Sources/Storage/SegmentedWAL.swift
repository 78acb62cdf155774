#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Primitives

/// Group-commit counters, a snapshot taken under the log's lock.
public struct WALStats: Hashable, Sendable {
    /// fdatasync rounds (each covers every record written before it, in every open segment).
    public var syncs: UInt64 = 0
    /// Records made durable by those rounds, summed (records per sync = this / `syncs`).
    public var recordsSynced: UInt64 = 0
    /// Most records one round made durable.
    public var recordsPerSyncMax: UInt64 = 0
    public var syncNanosecondsTotal: UInt64 = 0
    public var syncNanosecondsMax: UInt64 = 0
    /// `syncLatencyBuckets[b]` counts rounds that took [2^b, 2^(b+1)) nanoseconds (bucket 0 also
    /// holds 0 ns). Enough for p50/p99 within a factor of two, at constant memory.
    public var syncLatencyBuckets = [UInt64](repeating: 0, count: 64)

    public init() {}

    public var recordsPerSyncMean: Double { syncs == 0 ? 0 : Double(recordsSynced) / Double(syncs) }

    /// Several logs' counters as one (latency buckets added, maxima kept).
    public static func sum(_ all: [WALStats]) -> WALStats {
        var total = WALStats()
        for stats in all {
            total.syncs += stats.syncs
            total.recordsSynced += stats.recordsSynced
            total.recordsPerSyncMax = max(total.recordsPerSyncMax, stats.recordsPerSyncMax)
            total.syncNanosecondsTotal += stats.syncNanosecondsTotal
            total.syncNanosecondsMax = max(total.syncNanosecondsMax, stats.syncNanosecondsMax)
            for (bucket, count) in stats.syncLatencyBuckets.enumerated() { total.syncLatencyBuckets[bucket] += count }
        }
        return total
    }

    /// The upper bound of the log2 bucket holding the `quantile` (0 ... 1) of sync latencies, in
    /// nanoseconds, capped at the observed maximum; 0 before the first sync.
    public func syncNanoseconds(quantile: Double) -> UInt64 {
        guard syncs > 0 else { return 0 }
        let rank = UInt64((Double(syncs) * min(max(quantile, 0), 1)).rounded(.up))
        var seen: UInt64 = 0
        for (bucket, count) in syncLatencyBuckets.enumerated() {
            seen += count
            if seen >= max(rank, 1) {
                let upper = bucket >= 63 ? UInt64.max : (UInt64(1) << (bucket + 1)) - 1
                return min(upper, syncNanosecondsMax)
            }
        }
        return syncNanosecondsMax
    }

    mutating func record(records: UInt64, nanoseconds: UInt64) {
        syncs += 1
        recordsSynced += records
        recordsPerSyncMax = max(recordsPerSyncMax, records)
        syncNanosecondsTotal += nanoseconds
        syncNanosecondsMax = max(syncNanosecondsMax, nanoseconds)
        let bucket = nanoseconds == 0 ? 0 : 63 - nanoseconds.leadingZeroBitCount
        syncLatencyBuckets[bucket] += 1
    }
}

/// A write-ahead log in segment files `wal-<first LSN, 16 hex digits>.log` in one directory.
///
/// Appends go to an in-memory buffer and get consecutive log sequence numbers; `write()` hands
/// the buffer to the OS; `requestSync(through:)` asks the sync thread to make records durable and
/// returns at once. The sync thread takes the highest LSN requested so far, writes what is
/// buffered, issues one fdatasync per open segment for everything written, and reports the LSN
/// now durable through `onDurable`: appends that arrive while a sync runs share the next one
/// (group commit). Segments roll over at `segmentBytesMax` and are preallocated, so appends do not
/// allocate blocks and the unwritten rest reads as zeros (which recovery takes as the end).
///
/// Open one with `Recovery.open`, which reads what is there first.
///
/// Thread safety: `@unchecked Sendable` because every mutable field is guarded. `condition` (a
/// lock and condition variable) guards the append buffer, LSN counters, stats and the sync
/// request; `ioLock` serializes file I/O and guards the segment table and file descriptors.
/// Lock order is `ioLock` then `condition`, never the reverse, and neither is held while calling
/// `onDurable`. Appenders take only `condition`, briefly, so they never wait for a disk.
public final class SegmentedWAL: @unchecked Sendable {
    public let directory: String
    public let mode: DurabilityMode
    /// Bytes after which a segment is closed and the next begins; also what each is preallocated
    /// to. Recommended 64 MiB. A record never spans segments (a larger one gets a segment alone).
    public let segmentBytesMax: Int

    private let onDurable: @Sendable (UInt64) -> Void
    /// Called once, from the sync thread, when a write or sync fails; no record after the last
    /// reported durable one will be. The caller should stop (its acceptor state is in doubt).
    private let onFailure: @Sendable (StorageError) -> Void

    /// A run of appended bytes waiting for `write()`; `startsSegment` puts them at the start of a
    /// new segment named after `firstLSN`.
    private struct Pending {
        var startsSegment: Bool
        var firstLSN: UInt64
        var recordCount: UInt64
        var bytes: [UInt8]
    }

    /// A segment on disk.
    private struct Segment {
        var firstLSN: UInt64
        var recordCount: UInt64
        var path: String
    }

    // Guarded by `condition`.
    private let condition = NSCondition()
    private var pending: [Pending] = []
    /// The next LSN `append` gives out.
    private var nextLSNValue: UInt64
    /// Bytes the current segment will hold once the pending bytes are written (for rollover).
    private var plannedSegmentBytes: Int
    private var plannedSegmentHasRecords: Bool
    /// Highest LSN handed to the OS.
    private var writtenLSN: UInt64
    /// Highest LSN durable in this mode.
    private var durableLSNValue: UInt64
    /// Highest LSN passed to `requestSync`, and the highest reported through `onDurable`.
    private var requestedLSN: UInt64 = 0
    private var reportedLSN: UInt64 = 0
    private var statsValue = WALStats()
    private var failure: StorageError?
    private var closing = false
    private var threadExited = false
    /// Whether a segment file exists to append to (else the first write creates one).
    private var hasSegment = false

    // Guarded by `ioLock`.
    private let ioLock = NSLock()
    private var segments: [Segment]
    private var currentFD: Int32 = -1
    private var currentOffset: Int
    /// Finished segments' descriptors still to be fdatasync'd and closed by the sync thread.
    private var unsyncedFDs: [(fd: Int32, path: String)] = []
    /// The directory has an entry not yet fsync'd (a new segment).
    private var directoryDirty = false

    /// Used by `Recovery`: `segments` are the existing ones in LSN order; the last is opened for
    /// appends at `appendOffset` (the end of its good records).
    init(directory: String, mode: DurabilityMode, segmentBytesMax: Int, existing: [(firstLSN: UInt64, recordCount: UInt64, path: String)],
         appendOffset: Int, nextLSN: UInt64, onDurable: @escaping @Sendable (UInt64) -> Void,
         onFailure: @escaping @Sendable (StorageError) -> Void) throws(StorageError) {
        precondition(mode != .none, "durability mode none keeps records in memory; it needs no log")
        precondition(segmentBytesMax >= 4_096, "segmentBytesMax must be at least 4096, got \(segmentBytesMax)")
        precondition(nextLSN >= 1, "LSNs start at 1")
        self.directory = directory
        self.mode = mode
        self.segmentBytesMax = segmentBytesMax
        self.onDurable = onDurable
        self.onFailure = onFailure
        segments = existing.map { Segment(firstLSN: $0.firstLSN, recordCount: $0.recordCount, path: $0.path) }
        nextLSNValue = nextLSN
        writtenLSN = nextLSN - 1
        durableLSNValue = nextLSN - 1
        reportedLSN = nextLSN - 1
        currentOffset = appendOffset
        plannedSegmentBytes = appendOffset
        plannedSegmentHasRecords = (existing.last?.recordCount ?? 0) > 0
        hasSegment = !existing.isEmpty
        if let last = segments.last {
            currentFD = try FileIO.openFile(last.path, flags: O_RDWR)
            do throws(StorageError) {
                try FileIO.preallocate(currentFD, bytes: segmentBytesMax, path: last.path)
            } catch {
                FileIO.closeFile(currentFD)
                throw error
            }
        }
        let thread = Thread { [self] in syncLoop() }
        thread.name = "csmr-wal-sync"
        thread.start()
    }

    deinit {
        // `close()` normally ran; this only releases descriptors of a log dropped without it.
        if currentFD >= 0 { FileIO.closeFile(currentFD) }
        for (fd, _) in unsyncedFDs { FileIO.closeFile(fd) }
    }

    // MARK: Appending

    /// Appends `entry` to the buffer and returns its LSN. Nothing reaches the OS until `write()`
    /// or a sync.
    @discardableResult
    public func append(_ entry: WALEntry) -> UInt64 {
        append(encodedRecord: WALFormat.encode(entry))
    }

    /// Appends one record already encoded by `WALFormat.encode` (so callers can encode outside
    /// the lock) and returns its LSN.
    @discardableResult
    public func append(encodedRecord record: [UInt8]) -> UInt64 {
        precondition(record.count > WALFormat.headerBytes, "an encoded record has a header and a kind, got \(record.count) bytes")
        condition.lock()
        defer { condition.unlock() }
        precondition(!closing, "append after close")
        let lsn = nextLSNValue
        nextLSNValue += 1
        if plannedSegmentHasRecords, plannedSegmentBytes + record.count > segmentBytesMax {
            pending.append(Pending(startsSegment: true, firstLSN: lsn, recordCount: 1, bytes: record))
            plannedSegmentBytes = record.count
        } else if !hasSegment, pending.isEmpty {
            // No segment exists yet: the first record creates one.
            pending.append(Pending(startsSegment: true, firstLSN: lsn, recordCount: 1, bytes: record))
            plannedSegmentBytes = record.count
        } else if pending.isEmpty {
            pending.append(Pending(startsSegment: false, firstLSN: lsn, recordCount: 1, bytes: record))
            plannedSegmentBytes += record.count
        } else {
            pending[pending.count - 1].bytes.append(contentsOf: record)
            pending[pending.count - 1].recordCount += 1
            plannedSegmentBytes += record.count
        }
        plannedSegmentHasRecords = true
        return lsn
    }

    /// The LSN the next append gets.
    public var nextLSN: UInt64 { condition.withLock { nextLSNValue } }

    /// The highest LSN durable in this log's mode (0 before any).
    public var durableLSN: UInt64 { condition.withLock { durableLSNValue } }

    public var stats: WALStats { condition.withLock { statsValue } }

    // MARK: Writing and syncing

    /// Hands every buffered record to the OS (write(2)), creating segments as needed. In `write`
    /// mode the records are then durable. Blocks while another write is in progress.
    public func write() throws(StorageError) {
        ioLock.lock()
        defer { ioLock.unlock() }
        try writeLocked()
    }

    /// Asks for every record up to `lsn` to be made durable; returns at once. `onDurable` is
    /// called from the sync thread with an LSN >= `lsn` once they are (unless the log fails or
    /// is closed first).
    public func requestSync(through lsn: UInt64) {
        condition.lock()
        defer { condition.unlock() }
        precondition(lsn < nextLSNValue, "sync requested through LSN \(lsn), but only \(nextLSNValue - 1) were appended")
        if lsn > requestedLSN {
            requestedLSN = lsn
            condition.broadcast()
        }
    }

    /// Writes the pending buffer. Requires `ioLock`.
    private func writeLocked() throws(StorageError) {
        let batch: [Pending] = condition.withLock {
            defer { pending = [] }
            return pending
        }
        if let failure = condition.withLock({ self.failure }) { throw failure }
        guard !batch.isEmpty else { return }
        var lastLSN: UInt64 = 0
        do throws(StorageError) {
            for chunk in batch {
                if chunk.startsSegment { try startSegment(firstLSN: chunk.firstLSN) }
                try FileIO.pwriteAll(currentFD, chunk.bytes, at: currentOffset, path: segments[segments.count - 1].path)
                currentOffset += chunk.bytes.count
                segments[segments.count - 1].recordCount += chunk.recordCount
                lastLSN = chunk.firstLSN + chunk.recordCount - 1
            }
        } catch {
            fail(error)
            throw error
        }
        condition.withLock {
            writtenLSN = lastLSN
            if mode == .write { durableLSNValue = lastLSN }
        }
    }

    /// Closes the current segment (its descriptor waits for the next sync in `fsync` mode) and
    /// creates, preallocates and opens the next. Requires `ioLock`.
    private func startSegment(firstLSN: UInt64) throws(StorageError) {
        if currentFD >= 0 {
            if mode == .fsync {
                unsyncedFDs.append((currentFD, segments[segments.count - 1].path))
            } else {
                FileIO.closeFile(currentFD)
            }
            currentFD = -1
        }
        let path = FileIO.join(directory, WALFormat.segmentName(firstLSN: firstLSN))
        let fd = try FileIO.openFile(path, flags: O_RDWR | O_CREAT | O_EXCL)
        do throws(StorageError) {
            try FileIO.preallocate(fd, bytes: segmentBytesMax, path: path)
        } catch {
            FileIO.closeFile(fd)
            throw error
        }
        currentFD = fd
        currentOffset = 0
        segments.append(Segment(firstLSN: firstLSN, recordCount: 0, path: path))
        directoryDirty = true
        condition.withLock { hasSegment = true }
    }

    /// Remembers the first failure: the log accepts no more writes after it. The sync thread
    /// reports it through `onFailure`, outside every lock, so the callback may use the log.
    private func fail(_ error: StorageError) {
        condition.withLock {
            if failure == nil { failure = error }
            condition.broadcast()
        }
    }

    /// The sync thread: waits for a request above what was reported, writes, syncs once, reports.
    private func syncLoop() {
        while true {
            condition.lock()
            while !closing, failure == nil, requestedLSN <= reportedLSN { condition.wait() }
            if closing || failure != nil {
                let report = failure
                threadExited = true
                condition.broadcast()
                condition.unlock()
                if let report { onFailure(report) }
                return
            }
            let target = requestedLSN
            condition.unlock()

            do throws(StorageError) {
                let durable = try syncThrough(target)
                condition.withLock { reportedLSN = max(reportedLSN, durable) }
                onDurable(durable)
            } catch {
                fail(error)
            }
        }
    }

    /// Makes every record up to at least `target` durable and returns the highest durable LSN.
    private func syncThrough(_ target: UInt64) throws(StorageError) -> UInt64 {
        ioLock.lock()
        let alreadyWritten = condition.withLock { writtenLSN }
        if alreadyWritten < target {
            do throws(StorageError) { try writeLocked() } catch {
                ioLock.unlock()
                throw error
            }
        }
        let written = condition.withLock { writtenLSN }
        guard mode == .fsync else {
            ioLock.unlock()
            return written
        }
        // Take what must be synced, then sync outside `ioLock` so `write()` callers are not held
        // up by the disk. Finished segments are only closed here, so their descriptors stay
        // valid; the current one is never closed while the log is open.
        let finished = unsyncedFDs
        unsyncedFDs = []
        let current = currentFD >= 0 ? [(fd: currentFD, path: segments[segments.count - 1].path)] : []
        let syncDirectory = directoryDirty
        directoryDirty = false
        ioLock.unlock()

        let durableBefore = condition.withLock { durableLSNValue }
        let start = FileIO.monotonicNanoseconds()
        var failure: StorageError?
        for (fd, path) in finished + current where failure == nil {
            do throws(StorageError) { try FileIO.syncData(fd, path: path) } catch { failure = error }
        }
        if failure == nil, syncDirectory {
            do throws(StorageError) { try FileIO.fsyncDirectory(directory) } catch { failure = error }
        }
        let elapsed = FileIO.monotonicNanoseconds() - start
        for (fd, _) in finished { FileIO.closeFile(fd) }
        if let failure { throw failure }
        condition.withLock {
            durableLSNValue = max(durableLSNValue, written)
            statsValue.record(records: written - min(written, durableBefore), nanoseconds: elapsed)
        }
        return written
    }

    // MARK: Compaction and shutdown

    /// Deletes every segment all of whose records have LSNs below `lsn` (their state is in a
    /// durable checkpoint). The segment being appended to is never deleted. Oldest first, so a
    /// crash midway leaves a contiguous suffix of the log.
    public func dropSegments(below lsn: UInt64) throws(StorageError) {
        ioLock.lock()
        defer { ioLock.unlock() }
        while segments.count > 1, segments[0].firstLSN + segments[0].recordCount <= lsn {
            try FileIO.removeFile(segments[0].path)
            segments.removeFirst()
        }
    }

    /// The segment files, oldest first, with their first LSN and record count (written records).
    public var segmentFiles: [(path: String, firstLSN: UInt64, recordCount: UInt64)] {
        ioLock.withLock { segments.map { ($0.path, $0.firstLSN, $0.recordCount) } }
    }

    /// Writes what is buffered, syncs it in `fsync` mode, stops the sync thread and closes the
    /// files. Pending sync requests are not reported. Appending afterwards is a programmer error.
    public func close() throws(StorageError) {
        condition.withLock {
            closing = true
            condition.broadcast()
            while !threadExited { condition.wait() }
        }
        ioLock.lock()
        defer { ioLock.unlock() }
        var failure: StorageError?
        do throws(StorageError) { try writeLocked() } catch { failure = error }
        if mode == .fsync, failure == nil {
            for (fd, path) in unsyncedFDs + (currentFD >= 0 ? [(fd: currentFD, path: segments[segments.count - 1].path)] : []) where failure == nil {
                do throws(StorageError) { try FileIO.syncData(fd, path: path) } catch { failure = error }
            }
            if failure == nil, directoryDirty {
                do throws(StorageError) { try FileIO.fsyncDirectory(directory) } catch { failure = error }
            }
        }
        for (fd, _) in unsyncedFDs { FileIO.closeFile(fd) }
        unsyncedFDs = []
        if currentFD >= 0 { FileIO.closeFile(currentFD) }
        currentFD = -1
        if let failure { throw failure }
    }
}
