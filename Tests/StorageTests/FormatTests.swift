import Paxos
import Primitives
import Services
import Storage
import Testing

/// A few log entries of every kind, with growing payloads so records differ in size.
func sampleEntries(_ count: Int, seed: UInt64 = 1) -> [WALEntry] {
    var random = SplitMix64(seed: seed)
    return (0..<count).map { index in
        switch index % 3 {
        case 0: return .persist(.promised(sublog: index % 5, ballot: Ballot(round: random.next() % 100, replica: ReplicaID(index % 5))))
        case 1:
            let requests = (0..<(random.next() % 4)).map { sequence in
                Request(client: ClientID(random.next() % 1_000), sequence: sequence + 1, command: .kvPut(key: "key\(index)", value: String(repeating: "v", count: index % 50)))
            }
            return .persist(.accepted(ballot: Ballot(round: 3, replica: ReplicaID(1)), run: SlotRun(slot: UInt64(index), value: .batch(requests))))
        default: return .checkpointed(slot: UInt64(index) * 7)
        }
    }
}

func encodeLog(_ entries: [WALEntry]) -> (bytes: [UInt8], offsets: [Int]) {
    var bytes: [UInt8] = []
    var offsets: [Int] = []
    for entry in entries {
        offsets.append(bytes.count)
        bytes += WALFormat.encode(entry)
    }
    return (bytes, offsets)
}

func decodeAll(_ records: [ScannedRecord]) throws -> [WALEntry] {
    try records.map { try WALEntry.decode(kind: $0.kind, payload: $0.payload) }
}

@Suite struct CRC32CTests {
    @Test func theCheckValueOfTheCastagnoliPolynomialMatches() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([]) == 0)
        // RFC 3720 (iSCSI) B.4 vectors.
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
    }

    @Test func slicingByEightAgreesWithTheBitwiseDefinitionAtEveryLengthAndSplit() {
        func bitwise(_ bytes: [UInt8]) -> UInt32 {
            var crc: UInt32 = 0xFFFF_FFFF
            for byte in bytes {
                crc ^= UInt32(byte)
                for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
            }
            return ~crc
        }
        var random = SplitMix64(seed: 32)
        for length in 0..<200 {
            let bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            #expect(CRC32C.checksum(bytes) == bitwise(bytes))
            let split = length / 3
            #expect(CRC32C.checksum(bytes[split...], seed: CRC32C.checksum(bytes[..<split])) == bitwise(bytes))
        }
    }
}

@Suite struct WALScanTests {
    @Test func recordsRoundTripAndTheEndIsClean() throws {
        let entries = sampleEntries(40)
        let (bytes, offsets) = encodeLog(entries)
        let scan = WALFormat.scan(bytes)
        #expect(try decodeAll(scan.records) == entries)
        #expect(scan.records.map(\.offset) == offsets)
        #expect(scan.end == .clean(offset: bytes.count))
    }

    @Test func trailingZerosOfAPreallocatedSegmentAreACleanEnd() throws {
        let (bytes, _) = encodeLog(sampleEntries(10))
        let scan = WALFormat.scan(bytes + [UInt8](repeating: 0, count: 4_096))
        #expect(scan.records.count == 10)
        #expect(scan.end == .clean(offset: bytes.count))
        #expect(WALFormat.scan([]).end == .clean(offset: 0))
        #expect(WALFormat.scan([0, 0, 0]).end == .clean(offset: 0))
    }

    @Test func everyTruncationOfTheLastRecordIsATornTailAtItsStart() {
        let (bytes, offsets) = encodeLog(sampleEntries(6))
        let last = offsets.last!
        for cut in (last + 1)..<bytes.count {
            let truncated = Array(bytes[..<cut])
            let scan = WALFormat.scan(truncated)
            #expect(scan.records.count == 5)
            // A cut inside the length's leading zero bytes leaves only zeros: a clean end there.
            if case let .tornTail(offset, _) = scan.end { #expect(offset == last) } else {
                #expect(scan.end == .clean(offset: last), "cut at \(cut)")
                #expect(truncated[last...].allSatisfy { $0 == 0 })
            }
            // The same cut in a preallocated file: the rest is zeros.
            let padded = WALFormat.scan(truncated + [UInt8](repeating: 0, count: 512))
            if case let .tornTail(offset, _) = padded.end { #expect(offset == last) } else {
                #expect(padded.end == .clean(offset: last), "cut at \(cut)")
            }
        }
    }

    @Test func aFlippedByteInAnyRecordFollowedByOthersIsCorruptionAtThatRecord() {
        let (bytes, offsets) = encodeLog(sampleEntries(8))
        var random = SplitMix64(seed: 8)
        for record in 0..<7 {
            let end = offsets[record + 1]
            for _ in 0..<20 {
                var damaged = bytes
                let at = offsets[record] + Int(random.next() % UInt64(end - offsets[record]))
                damaged[at] ^= UInt8(1) << (random.next() % 8)
                let scan = WALFormat.scan(damaged)
                #expect(scan.records.count == record, "flip at \(at)")
                guard case let .corrupt(offset, _) = scan.end else {
                    Issue.record("flip at \(at) in record \(record): \(scan.end)")
                    continue
                }
                #expect(offset == offsets[record])
            }
        }
    }

    @Test func aBadLastRecordFollowedByZerosIsTornButFollowedByDataIsCorrupt() {
        let (bytes, offsets) = encodeLog(sampleEntries(4))
        var damaged = bytes
        damaged[bytes.count - 1] ^= 0xFF
        guard case .tornTail(offsets[3], _) = WALFormat.scan(damaged + [0, 0, 0, 0]).end else {
            Issue.record("a bad last record before zeros should be a torn tail")
            return
        }
        guard case .corrupt(offsets[3], _) = WALFormat.scan(damaged + [0, 0, 1]).end else {
            Issue.record("a bad last record before data should be corruption")
            return
        }
    }

    @Test func aLengthDamagedToReachPastTheEndIsStillCorruptionWhenValidRecordsFollow() {
        let (bytes, offsets) = encodeLog(sampleEntries(6))
        var damaged = bytes
        damaged[offsets[2]] = 0x00
        damaged[offsets[2] + 1] = 0x10 // length about 1 MiB: beyond the data
        let scan = WALFormat.scan(damaged)
        guard case .corrupt(offsets[2], _) = scan.end else {
            Issue.record("expected corruption at \(offsets[2]), got \(scan.end)")
            return
        }
    }

    @Test func randomBytesNeverTrapTheScanner() {
        var random = SplitMix64(seed: 77)
        let (bytes, _) = encodeLog(sampleEntries(5))
        for _ in 0..<3_000 {
            var input = bytes
            for _ in 0...(random.next() % 4) {
                input[Int(random.next() % UInt64(input.count))] = UInt8(truncatingIfNeeded: random.next())
            }
            if random.chance(0.3) { input.removeLast(Int(random.next() % UInt64(input.count))) }
            let scan = WALFormat.scan(input)
            for record in scan.records { _ = try? WALEntry.decode(kind: record.kind, payload: record.payload) }
        }
    }

    @Test func segmentNamesCarryTheFirstLSNInSixteenHexDigits() {
        #expect(WALFormat.segmentName(firstLSN: 0x1F) == "wal-000000000000001f.log")
        #expect(WALFormat.segmentFirstLSN(name: "wal-000000000000001f.log") == 0x1F)
        #expect(WALFormat.segmentFirstLSN(name: "wal-1f.log") == nil)
        #expect(WALFormat.segmentFirstLSN(name: "wal-000000000000001F.log") == nil)
        #expect(WALFormat.segmentFirstLSN(name: "checkpoint-000000000000001f.ckpt") == nil)
    }
}

@Suite struct CheckpointFormatTests {
    @Test func aCheckpointRoundTripsAndEveryFlippedByteIsCaught() throws {
        let payload = (0..<100).map { UInt8($0) }
        let bytes = CheckpointFormat.encode(slot: 42, payload: payload)
        let decoded = try CheckpointFormat.decode(bytes, file: "c")
        #expect(decoded.slot == 42 && decoded.payload == payload)
        for index in bytes.indices where !(9..<17).contains(index) {
            var damaged = bytes
            damaged[index] ^= 0x01
            #expect(throws: StorageError.self) { try CheckpointFormat.decode(damaged, file: "c") }
        }
    }

    @Test func aFlippedPayloadByteNamesThePayloadOffset() {
        var bytes = CheckpointFormat.encode(slot: 1, payload: [1, 2, 3])
        bytes[30] ^= 0x80
        do {
            _ = try CheckpointFormat.decode(bytes, file: "x.ckpt")
            Issue.record("a damaged payload decoded")
        } catch let .corrupt(file, offset, _) {
            #expect(file == "x.ckpt" && offset == CheckpointFormat.headerBytes)
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}
