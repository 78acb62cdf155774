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
}
