#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Paxos
import Primitives
import Storage
import Testing

/// A fresh directory under the system's temporary directory, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() {
        path = NSTemporaryDirectory() + "csmr-storage-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { path + "/" + name }

    func segments() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasPrefix("wal-") }.sorted()
    }

    func read(_ name: String) -> [UInt8] { [UInt8](FileManager.default.contents(atPath: file(name))!) }

    func write(_ name: String, _ bytes: [UInt8]) { _ = FileManager.default.createFile(atPath: file(name), contents: Data(bytes)) }
}

/// Counts `onDurable` reports and waits for one at or above an LSN.
final class DurableWaiter: @unchecked Sendable {
    // Safe to share: every field is read and written under `condition`.
    private let condition = NSCondition()
    private var highest: UInt64 = 0
    private var reportsValue = 0

    var reports: Int { condition.withLock { reportsValue } }

    func report(_ lsn: UInt64) {
        condition.withLock {
            highest = max(highest, lsn)
            reportsValue += 1
            condition.broadcast()
        }
    }

    /// Whether `lsn` was reported durable within `seconds`.
    func wait(for lsn: UInt64, seconds: Double = 30) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        condition.lock()
        defer { condition.unlock() }
        while highest < lsn {
            if !condition.wait(until: deadline) { return highest >= lsn }
        }
        return true
    }
}

/// Collects `onFailure` reports.
final class FailureRecorder: @unchecked Sendable {
    // Safe to share: every field is read and written under `condition`.
    private let condition = NSCondition()
    private var errors: [StorageError] = []

    var count: Int { condition.withLock { errors.count } }

    func record(_ error: StorageError) {
        condition.withLock {
            errors.append(error)
            condition.broadcast()
        }
    }

    /// The first failure reported within `seconds`, nil if none was.
    func wait(seconds: Double = 30) -> StorageError? {
        let deadline = Date().addingTimeInterval(seconds)
        condition.lock()
        defer { condition.unlock() }
        while errors.isEmpty {
            if !condition.wait(until: deadline) { break }
        }
        return errors.first
    }
}

/// Opens the log in `directory` with a small segment size.
func openLog(_ directory: TemporaryDirectory, mode: DurabilityMode = .fsync, segmentBytesMax: Int = 4_096,
             waiter: DurableWaiter = DurableWaiter()) throws -> (wal: SegmentedWAL, recovered: RecoveredFiles) {
    try Recovery.open(directory: directory.path, mode: mode, segmentBytesMax: segmentBytesMax, onDurable: { waiter.report($0) })
}

/// Appends `entries`, writes them, and closes the log.
func writeLog(_ directory: TemporaryDirectory, _ entries: [WALEntry], segmentBytesMax: Int = 4_096) throws {
    let (wal, _) = try openLog(directory, mode: .write, segmentBytesMax: segmentBytesMax)
    for entry in entries { wal.append(entry) }
    try wal.write()
    try wal.close()
}

/// The segment file a recovery error names, and its offset.
func failure(of body: () throws -> Void) -> StorageError? {
    do {
        try body()
        return nil
    } catch let error as StorageError {
        return error
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

@Suite(.serialized) struct WALFileTests {
    @Test func appendedRecordsRecoverInOrderAcrossSegmentRollovers() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let entries = sampleEntries(600)
        try writeLog(directory, Array(entries[..<300]))
        // Reopen and continue: appends go after the recovered records, in later segments.
        do {
            let (wal, recovered) = try openLog(directory)
            #expect(recovered.nextLSN == 301)
            for entry in entries[300...] { wal.append(entry) }
            try wal.close()
        }
        #expect(directory.segments().count > 5)
        let (wal, recovered) = try openLog(directory)
        defer { try? wal.close() }
        #expect(recovered.records.map { $0.entry } == entries)
        #expect(recovered.records.map { $0.lsn } == Array(1...600))
        #expect(recovered.nextLSN == 601)
        #expect(recovered.tornBytesCut == 0)
        #expect(recovered.checkpoint == nil)
        // Each segment is named after its first LSN, and they chain.
        var expected: UInt64 = 1
        for file in wal.segmentFiles {
            #expect(file.path.hasSuffix(WALFormat.segmentName(firstLSN: expected)))
            expected += file.recordCount
        }
        #expect(expected == 601)
    }

    @Test func aTruncatedLastSegmentIsCutAtTheLastGoodRecordAndAppendsContinue() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let entries = sampleEntries(100)
        try writeLog(directory, entries)
        let last = directory.segments().last!
        let bytes = directory.read(last)
        let scan = WALFormat.scan(bytes)
        let lastRecord = scan.records.last!.offset
        let lastCount = scan.records.count
        // Cut the file in the middle of its last record.
        directory.write(last, Array(bytes[..<(lastRecord + 5)]))
        do {
            let (wal, recovered) = try openLog(directory)
            #expect(recovered.records.map { $0.entry } == Array(entries.dropLast()))
            #expect(recovered.tornBytesCut == 5)
            #expect(recovered.nextLSN == 100)
            #expect(wal.append(.checkpointed(slot: 1_000)) == 100)
            try wal.close()
        }
        let (wal, recovered) = try openLog(directory)
        defer { try? wal.close() }
        #expect(recovered.records.map { $0.entry } == Array(entries.dropLast()) + [.checkpointed(slot: 1_000)])
        #expect(WALFormat.scan(directory.read(last)).records.count == lastCount)
    }

    @Test func aPartlyOverwrittenLastRecordIsCutAndAppendsContinue() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let entries = sampleEntries(50)
        try writeLog(directory, entries)
        let last = directory.segments().last!
        var bytes = directory.read(last)
        let scan = WALFormat.scan(bytes)
        let lastRecord = scan.records.last!.offset
        guard case let .clean(end) = scan.end else { Issue.record("\(scan.end)"); return }
        // A torn write into the preallocated file: the record's second half never reached disk.
        for index in ((lastRecord + end) / 2)..<end { bytes[index] = 0 }
        directory.write(last, bytes)
        do {
            let (wal, recovered) = try openLog(directory)
            #expect(recovered.records.map { $0.entry } == Array(entries.dropLast()))
            #expect(recovered.tornBytesCut > 0)
            wal.append(entries.last!)
            try wal.close()
        }
        let (wal, recovered) = try openLog(directory)
        defer { try? wal.close() }
        #expect(recovered.records.map { $0.entry } == entries)
        #expect(recovered.tornBytesCut == 0)
    }

    @Test func aCorruptedMiddleRecordStopsRecoveryNamingTheFileAndOffset() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        try writeLog(directory, sampleEntries(200))
        let name = directory.segments()[1]
        var bytes = directory.read(name)
        let scan = WALFormat.scan(bytes)
        let target = scan.records[3]
        bytes[target.offset + 10] ^= 0x20
        directory.write(name, bytes)
        let error = failure { _ = try openLog(directory) }
        guard case let .corrupt(file, offset, _) = error else { Issue.record("expected corruption, got \(String(describing: error))"); return }
        #expect(file == directory.file(name))
        #expect(offset == target.offset)
        #expect(error!.description.contains(directory.file(name)) && error!.description.contains("offset \(target.offset)"))
    }

    @Test func aCorruptedRecordInTheLastSegmentFollowedByOthersIsNotCut() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        try writeLog(directory, sampleEntries(20), segmentBytesMax: 1 << 20)
        let name = directory.segments().last!
        var bytes = directory.read(name)
        let target = WALFormat.scan(bytes).records[10]
        bytes[target.offset + 9] ^= 0x01
        directory.write(name, bytes)
        let error = failure { _ = try openLog(directory) }
        guard case let .corrupt(file, offset, reason) = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(file == directory.file(name) && offset == target.offset)
        #expect(reason.hasPrefix("checksum mismatch"))
    }

    @Test func aRecordWithAGoodChecksumThatDoesNotDecodeIsCorruption() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let (wal, _) = try openLog(directory, mode: .write)
        wal.append(.checkpointed(slot: 1))
        var writer = ByteWriter()
        WALFormat.encode(kind: 77, payload: [1, 2, 3], into: &writer)
        wal.append(encodedRecord: writer.bytes)
        try wal.close()
        let name = directory.segments()[0]
        let error = failure { _ = try openLog(directory) }
        guard case let .corrupt(file, offset, reason) = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(file == directory.file(name) && offset == WALFormat.encode(.checkpointed(slot: 1)).count)
        #expect(reason.contains("record 2 does not decode"))
    }

    @Test func aSegmentCreatedJustBeforeACrashIsReusedForTheNextAppends() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let entries = sampleEntries(30)
        try writeLog(directory, entries)
        // The new segment file exists, preallocated, but its first record never reached disk.
        let empty = WALFormat.segmentName(firstLSN: 31)
        directory.write(empty, [UInt8](repeating: 0, count: 4_096))
        do {
            let (wal, recovered) = try openLog(directory)
            #expect(recovered.nextLSN == 31 && recovered.records.count == 30)
            #expect(wal.append(.checkpointed(slot: 5)) == 31)
            try wal.close()
        }
        let (wal, recovered) = try openLog(directory)
        defer { try? wal.close() }
        #expect(recovered.records.map { $0.entry } == entries + [.checkpointed(slot: 5)])
        #expect(WALFormat.scan(directory.read(empty)).records.count == 1)
    }

    @Test func aDeletedMiddleSegmentStopsRecoveryNamingTheNextFile() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        try writeLog(directory, sampleEntries(200))
        let segments = directory.segments()
        let firstOfSecond = WALFormat.segmentFirstLSN(name: segments[1])!
        let firstOfThird = WALFormat.segmentFirstLSN(name: segments[2])!
        try FileManager.default.removeItem(atPath: directory.file(segments[1]))
        #expect(failure { _ = try openLog(directory) } == .missingRecords(file: directory.file(segments[2]), expectedLSN: firstOfSecond, foundLSN: firstOfThird))
    }

    @Test func aMiddleSegmentTruncatedMidRecordStopsRecoveryNamingIt() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        try writeLog(directory, sampleEntries(200))
        let name = directory.segments()[1]
        let bytes = directory.read(name)
        let records = WALFormat.scan(bytes).records
        // Past the length field, into the checksum (a cut in the zero bytes of a length would look
        // like a clean end, and show as missing records in the next segment instead).
        directory.write(name, Array(bytes[..<(records[4].offset + 6)]))
        let error = failure { _ = try openLog(directory) }
        guard case let .corrupt(file, offset, _) = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(file == directory.file(name) && offset == records[4].offset)
    }

    @Test func aMiddleSegmentTruncatedAtARecordBoundaryStopsRecoveryAsMissingRecords() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        try writeLog(directory, sampleEntries(200))
        let segments = directory.segments()
        let bytes = directory.read(segments[1])
        let records = WALFormat.scan(bytes).records
        directory.write(segments[1], Array(bytes[..<records[4].offset]))
        let first = WALFormat.segmentFirstLSN(name: segments[1])!
        #expect(failure { _ = try openLog(directory) } == .missingRecords(
            file: directory.file(segments[2]), expectedLSN: first + 4, foundLSN: WALFormat.segmentFirstLSN(name: segments[2])!))
    }

    @Test func groupCommitSharesSyncsAmongConcurrentAppenders() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let waiter = DurableWaiter()
        let (wal, _) = try openLog(directory, mode: .fsync, segmentBytesMax: 1 << 20, waiter: waiter)
        let entry = WALEntry.persist(.promised(sublog: 1, ballot: Ballot(round: 2, replica: ReplicaID(3))))
        let threads = 4
        let perThread = 500
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            for _ in 0..<perThread {
                let lsn = wal.append(entry)
                wal.requestSync(through: lsn)
            }
        }
        let total = UInt64(threads * perThread)
        #expect(waiter.wait(for: total))
        let stats = wal.stats
        #expect(stats.syncs >= 1)
        #expect(stats.syncs < total)
        #expect(stats.recordsSynced == total)
        #expect(stats.recordsPerSyncMax >= 1)
        #expect(stats.syncLatencyBuckets.reduce(0, +) == stats.syncs)
        #expect(stats.syncNanoseconds(quantile: 0.5) <= stats.syncNanoseconds(quantile: 0.99))
        #expect(wal.durableLSN == total)
        try wal.close()
        let (reopened, recovered) = try openLog(directory)
        defer { try? reopened.close() }
        #expect(recovered.records.count == Int(total))
    }

    @Test func writeModeReportsDurabilityWithoutEverSyncing() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let waiter = DurableWaiter()
        let (wal, _) = try openLog(directory, mode: .write, waiter: waiter)
        for entry in sampleEntries(300) {
            wal.requestSync(through: wal.append(entry))
        }
        #expect(waiter.wait(for: 300))
        #expect(wal.stats.syncs == 0)
        #expect(wal.durableLSN == 300)
        try wal.close()
        #expect(wal.stats.syncs == 0)
    }

    @Test func aFailedSegmentCreationIsReportedOnceAndRefusesLaterWrites() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let failures = FailureRecorder()
        let (wal, _) = try Recovery.open(directory: directory.path, mode: .fsync, segmentBytesMax: 4_096, onDurable: { _ in },
                                         onFailure: { failures.record($0) })
        wal.append(.checkpointed(slot: 1))
        try wal.write()
        // The directory disappears: the next segment cannot be created.
        directory.remove()
        var last: UInt64 = 0
        for entry in sampleEntries(100) { last = wal.append(entry) }
        wal.requestSync(through: last)
        let error = try #require(failures.wait())
        guard case let .io(file, operation, _) = error else { Issue.record("got \(error)"); return }
        #expect(file.hasPrefix(directory.path) && operation == "open")
        #expect(throws: StorageError.self) { try wal.write() }
        #expect(failures.count == 1)
        _ = try? wal.close()
    }

    @Test func dropSegmentsRemovesOnlyFullyCoveredSegments() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        try writeLog(directory, sampleEntries(400))
        let (wal, _) = try openLog(directory)
        let files = wal.segmentFiles
        try #require(files.count >= 5)
        // An LSN inside the third segment: the first two are covered, the third is not.
        let inThird = files[2].firstLSN + 1
        try wal.dropSegments(below: inThird)
        #expect(wal.segmentFiles.map { $0.firstLSN } == files.dropFirst(2).map { $0.firstLSN })
        #expect(directory.segments().count == files.count - 2)
        // Exactly at a boundary: the segment ending just below it goes too.
        try wal.dropSegments(below: files[3].firstLSN)
        #expect(wal.segmentFiles.first?.firstLSN == files[3].firstLSN)
        // The segment being appended to stays, whatever the LSN.
        try wal.dropSegments(below: UInt64.max)
        #expect(wal.segmentFiles.count == 1)
        try wal.close()
        let (reopened, recovered) = try openLog(directory)
        defer { try? reopened.close() }
        #expect(recovered.records.first?.lsn == files.last!.firstLSN)
        #expect(recovered.nextLSN == 401)
    }
}

@Suite(.serialized) struct CheckpointStoreTests {
    @Test func theNewestCheckpointIsReadAndOnlyTwoAreKept() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let store = CheckpointStore(directory: directory.path)
        #expect(try store.newest() == nil)
        for slot in [UInt64(10), 20, 30, 40] { try store.write(slot: slot, payload: Array(repeating: UInt8(slot), count: Int(slot))) }
        #expect(try store.slots() == [30, 40])
        let newest = try #require(try store.newest())
        #expect(newest.slot == 40 && newest.payload == Array(repeating: 40, count: 40))
        #expect(try store.read(slot: 30).payload == Array(repeating: 30, count: 30))
        let (wal, recovered) = try openLog(directory)
        defer { try? wal.close() }
        #expect(recovered.checkpoint?.slot == 40)
    }

    @Test func aFlippedPayloadByteStopsNewestNamingTheFileAndOffset() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let store = CheckpointStore(directory: directory.path)
        try store.write(slot: 5, payload: [1, 2, 3])
        try store.write(slot: 6, payload: Array(repeating: 9, count: 64))
        let name = CheckpointFormat.fileName(slot: 6)
        var bytes = directory.read(name)
        bytes[CheckpointFormat.headerBytes + 17] ^= 0x10
        directory.write(name, bytes)
        let error = failure { _ = try store.newest() }
        guard case let .corrupt(file, offset, _) = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(file == directory.file(name) && offset == CheckpointFormat.headerBytes)
        // Recovery refuses too, rather than falling back to the older checkpoint.
        guard case .corrupt = failure(of: { _ = try openLog(directory) }) else { Issue.record("recovery started"); return }
    }
}

