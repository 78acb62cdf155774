@testable import Paxos
import Primitives
import Testing

/// The chunked containers against a plain dictionary and a plain array.
@Suite struct ChunkedStorageTests {
    static func record(_ round: UInt64) -> SlotRecord {
        SlotRecord(ballot: Ballot(round: round, replica: ReplicaID(0)), value: .noop, decided: round % 2 == 0)
    }

    @Test func theSlotTableAgreesWithADictionaryAcrossChunksAndCompaction() {
        var table = SlotTable()
        var reference: [UInt64: UInt64] = [:]
        var random = SplitMix64(seed: 7)
        var forgottenBelow: UInt64 = 0
        for step in 0..<20_000 {
            let slot = forgottenBelow + random.next() % 10_000
            if random.next() % 5 == 0 {
                table[slot] = nil
                reference[slot] = nil
            } else {
                table[slot] = Self.record(UInt64(step))
                if slot >= forgottenBelow { reference[slot] = UInt64(step) }
            }
            if step % 2_000 == 1_999 {
                // Compaction to a point inside a chunk, sometimes past everything held.
                forgottenBelow += random.next() % 9_000
                table.forget(below: forgottenBelow)
                reference = reference.filter { $0.key >= forgottenBelow }
            }
            let probe = forgottenBelow >= 50 ? forgottenBelow - 50 + random.next() % 12_000 : random.next() % 12_000
            #expect(table[probe]?.ballot.round == reference[probe], "slot \(probe) at step \(step)")
        }
        // A slot below the compaction point can be neither read nor written.
        table[forgottenBelow - 1] = Self.record(1)
        #expect(table[forgottenBelow - 1] == nil)
    }

    @Test func memoryStorageKeepsEveryRecordInOrderAcrossChunks() {
        var storage = MemoryStorage()
        let records = (0..<10_000).map { PersistRecord.promised(sublog: 0, ballot: Ballot(round: UInt64($0), replica: ReplicaID(1))) }
        for start in Swift.stride(from: 0, to: records.count, by: 7) {
            storage.persist(Array(records[start..<min(start + 7, records.count)]))
        }
        #expect(storage.recordCount == records.count)
        #expect(storage.records == records)
    }

    @Test func aCheckpointDropsItsRecordsAtOnceAndFreesThemAChunkPerCall() {
        var storage = MemoryStorage()
        let chunk = MemoryStorage.chunkRecordsMax
        let records = (0..<(5 * chunk + 100)).map { PersistRecord.promised(sublog: 0, ballot: Ballot(round: UInt64($0), replica: ReplicaID(1))) }
        storage.persist(records)
        let position = UInt64(3 * chunk + 10)
        storage.saveCheckpoint(Checkpoint(slot: 7, position: position, bytes: [7]))
        // What a restart finds, and what is counted, leaves out every record the checkpoint covers.
        #expect(storage.recordCount == records.count - Int(position))
        #expect(storage.records == Array(records[Int(position)...]))
        #expect(storage.recovered.checkpoint?.slot == 7)
        // The memory goes a chunk per call: one now, two with the next persists, and the chunk
        // that holds kept records stays.
        #expect(storage.recordsHeld == records.count - chunk)
        let more = (0..<3).map { PersistRecord.promised(sublog: 1, ballot: Ballot(round: UInt64($0), replica: ReplicaID(2))) }
        for record in more { storage.persist([record]) }
        #expect(storage.recordsHeld == records.count + more.count - 3 * chunk)
        #expect(storage.records == Array(records[Int(position)...]) + more)
        // An older checkpoint brings nothing back.
        storage.saveCheckpoint(Checkpoint(slot: 5, position: 4, bytes: [5]))
        #expect(storage.recordCount == records.count + more.count - Int(position))
        #expect(storage.records == Array(records[Int(position)...]) + more)
    }
}
