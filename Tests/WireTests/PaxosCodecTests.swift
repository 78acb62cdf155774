import Foundation
import Paxos
import Primitives
import Services
import Testing
import Wire

/// Random Paxos values from a seeded generator, covering every case and edge values.
struct PaxosValueGenerator {
    var random: SplitMix64

    mutating func below(_ bound: UInt64) -> UInt64 { random.next() % bound }

    mutating func number() -> UInt64 {
        switch below(4) {
        case 0: below(16)
        case 1: UInt64.max - below(4)
        default: random.next()
        }
    }

    mutating func replica() -> ReplicaID { ReplicaID(Int(below(4) == 0 ? 1_024 : below(8))) }

    mutating func ballot() -> Ballot { Ballot(round: number(), replica: replica()) }

    mutating func string() -> String {
        let alphabet: [String] = ["a", "z", "0", "ключ", "🙂", " "]
        return (0..<below(6)).map { _ in alphabet[Int(below(UInt64(alphabet.count)))] }.joined()
    }

    mutating func command() -> Command {
        switch below(9) {
        case 0: .kvGet(key: string())
        case 1: .kvPut(key: string(), value: string())
        case 2: .lockAcquire(name: string())
        case 3: .lockRelease(name: string())
        case 4: .logAppend(entry: string())
        case 5: .logRetrieve(first: number(), last: number())
        case 6: .logTruncate(index: number())
        case 7: .openSession
        default: .logAppendFrom(origin: UInt32(truncatingIfNeeded: random.next()), index: number(), entry: string())
        }
    }

    mutating func request() -> Request {
        Request(client: ClientID(number()), sequence: max(1, number()), command: command())
    }

    mutating func value() -> SlotValue {
        below(3) == 0 ? .noop : .batch((0..<below(5)).map { _ in request() })
    }

    mutating func run() -> SlotRun {
        let value = value()
        let first = number()
        if case .batch = value { return SlotRun(slot: first, value: value) }
        let last = first == UInt64.max ? first : first + below(UInt64.max - first) % 1_000
        return SlotRun(first: first, last: last, value: value)
    }

    mutating func reported() -> ReportedSlot {
        ReportedSlot(slot: number(), ballot: below(2) == 0 ? nil : ballot(), value: value())
    }

    mutating func sublog() -> Int { Int(below(4) == 0 ? 1_024 : below(8)) }

    mutating func record() -> PersistRecord {
        below(2) == 0 ? .promised(sublog: sublog(), ballot: ballot()) : .accepted(ballot: ballot(), run: run())
    }

    /// Case `index % 14` of `PaxosMessage`, so a loop over indices covers every case.
    mutating func message(case index: Int) -> PaxosMessage {
        switch index % 14 {
        case 0: .prepare(sublog: sublog(), ballot: ballot(), fromSlot: number())
        case 1: .promise(sublog: sublog(), ballot: ballot(), fromSlot: number(), slots: (0..<below(4)).map { _ in reported() },
                         complete: below(2) == 0)
        case 2: .accept(ballot: ballot(), run: run())
        case 3: .accepted(ballot: ballot(), first: number(), skipped: (0..<below(3)).map { _ in run() })
        case 4: .rejected(sublog: sublog(), promised: ballot())
        case 5: .decided((0..<below(4)).map { _ in run() })
        case 6: .heartbeat(deliveredBelow: number(), horizon: number(), batchHorizon: number(), sentAtMicroseconds: number())
        case 7: .catchUp(fromSlot: number())
        case 8: .compacted(below: number())
        case 9: .checkpointRequest(slot: number(), chunk: UInt32(below(100)))
        case 10:
            .checkpointChunk(CheckpointChunk(slot: number(), index: 0, count: UInt32(1 + below(5)), totalBytes: number(), digest: number(),
                                             bytes: (0..<below(300)).map { _ in UInt8(below(256)) }))
        case 11: .heartbeatEcho(sentAtMicroseconds: number())
        case 12: .undecided((0..<below(4)).map { _ in reported() })
        default: .forward(request())
        }
    }
}

/// Encodes with `encode` and decodes every byte with `decode`, which must use them all.
func roundTrip<T: Equatable>(_ value: T, _ encode: (T, inout ByteWriter) -> Void,
                             _ decode: (inout ByteReader) throws(DecodeError) -> T) throws -> T {
    var writer = ByteWriter()
    encode(value, &writer)
    var reader = ByteReader(writer.bytes)
    let decoded = try decode(&reader)
    try reader.expectEnd()
    return decoded
}

@Suite struct PaxosCodecTests {
    let limits = CodecLimits.standard

    @Test func everyValueTypeRoundTripsOnRandomValues() throws {
        var generator = PaxosValueGenerator(random: SplitMix64(seed: 0xC0DEC))
        for _ in 0..<500 {
            let ballot = generator.ballot()
            #expect(try roundTrip(ballot, { $0.encode(into: &$1) }, { (r: inout ByteReader) throws(DecodeError) in try Ballot.decode(from: &r, limits: limits) }) == ballot)
            let value = generator.value()
            #expect(try roundTrip(value, { $0.encode(into: &$1) }, { (r: inout ByteReader) throws(DecodeError) in try SlotValue.decode(from: &r, limits: limits) }) == value)
            let run = generator.run()
            #expect(try roundTrip(run, { $0.encode(into: &$1) }, { (r: inout ByteReader) throws(DecodeError) in try SlotRun.decode(from: &r, limits: limits) }) == run)
            let reported = generator.reported()
            #expect(try roundTrip(reported, { $0.encode(into: &$1) }, { (r: inout ByteReader) throws(DecodeError) in try ReportedSlot.decode(from: &r, limits: limits) }) == reported)
            let record = generator.record()
            #expect(try roundTrip(record, { $0.encode(into: &$1) }, { (r: inout ByteReader) throws(DecodeError) in try PersistRecord.decode(from: &r, limits: limits) }) == record)
        }
    }

    @Test func everyPaxosMessageCaseRoundTripsThroughAFrame() throws {
        var generator = PaxosValueGenerator(random: SplitMix64(seed: 0xFA305))
        for index in 0..<1_200 {
            let message = generator.message(case: index)
            #expect(try WireFormat.decode(WireFormat.encode(.paxos(message))) == .paxos(message))
        }
    }

    @Test func paxosFramesAreKindThreeAndClientFramesKeepTheirKinds() {
        #expect(WireFormat.encode(.paxos(.catchUp(fromSlot: 7)))[5] == 3)
        #expect(WireFormat.encode(sampleMessages[0])[5] == 1)
        #expect(WireFormat.encode(sampleMessages.last!)[5] == 2)
    }

    /// A run with `first` and `last` as given, encoded by hand (SlotRun.init would refuse it).
    func runBytes(first: UInt64, last: UInt64, batch: Bool) -> [UInt8] {
        var writer = ByteWriter()
        writer.write(first)
        writer.write(last)
        if batch { writer.write(UInt8(2)); writer.write(UInt32(0)) } else { writer.write(UInt8(1)) }
        return writer.bytes
    }

    @Test func anInvertedRunIsRefusedBeforeItIsBuilt() {
        var reader = ByteReader(runBytes(first: 9, last: 3, batch: false))
        #expect(throws: DecodeError.invalidValue(offset: 0, reason: "run 9...3 is inverted")) {
            try SlotRun.decode(from: &reader, limits: limits)
        }
    }

    @Test func aBatchOverSeveralSlotsIsRefused() {
        var reader = ByteReader(runBytes(first: 3, last: 4, batch: true))
        #expect(throws: DecodeError.invalidValue(offset: 0, reason: "a batch occupies one slot, not 3...4")) {
            try SlotRun.decode(from: &reader, limits: limits)
        }
    }

    @Test func aReplicaIDBeyondTheLimitIsRefused() {
        var writer = ByteWriter()
        writer.write(UInt64(1))
        writer.write(UInt32(1_025))
        var reader = ByteReader(writer.bytes)
        #expect(throws: DecodeError.invalidValue(offset: 8, reason: "replica id 1025 exceeds replicaIDMax 1024")) {
            try Ballot.decode(from: &reader, limits: limits)
        }
        // A u32 that would be negative as an Int32 is just a large number, and refused too.
        var negative = ByteWriter()
        negative.write(UInt8(5))
        negative.write(UInt32.max)
        var negativeReader = ByteReader(negative.bytes)
        #expect(throws: DecodeError.invalidValue(offset: 1, reason: "sublog 4294967295 exceeds replicaIDMax 1024")) {
            try PaxosMessage.decode(from: &negativeReader, limits: limits)
        }
    }

    @Test func countsAboveTheirLimitsAreRefused() {
        let small = CodecLimits(batchRequestsMax: 2, runsMax: 1)
        var batch = ByteWriter()
        SlotValue.batch((1...3).map { Request(client: ClientID(1), sequence: $0, command: .openSession) }).encode(into: &batch)
        var batchReader = ByteReader(batch.bytes)
        #expect(throws: DecodeError.lengthTooLarge(offset: 1, length: 3, limit: 2)) { try SlotValue.decode(from: &batchReader, limits: small) }
        var decided = ByteWriter()
        PaxosMessage.decided([SlotRun(slot: 1, value: .noop), SlotRun(slot: 2, value: .noop)]).encode(into: &decided)
        var decidedReader = ByteReader(decided.bytes)
        #expect(throws: DecodeError.lengthTooLarge(offset: 1, length: 2, limit: 1)) { try PaxosMessage.decode(from: &decidedReader, limits: small) }
    }

    @Test func aForgedCountLargerThanTheBytesLeftIsRefusedWithoutAllocating() {
        var writer = ByteWriter()
        writer.write(UInt8(6))
        writer.write(UInt32(65_536))
        var reader = ByteReader(writer.bytes)
        #expect(throws: DecodeError.truncated(offset: 5, needed: 65_536 * 17)) { try PaxosMessage.decode(from: &reader, limits: limits) }
    }

    @Test func unknownTagsAreRefused() {
        var message = ByteReader([0])
        #expect(throws: DecodeError.unknownTag(offset: 0, tag: 0, type: "paxos message")) { try PaxosMessage.decode(from: &message, limits: limits) }
        var record = ByteReader([3])
        #expect(throws: DecodeError.unknownTag(offset: 0, tag: 3, type: "persist record")) { try PersistRecord.decode(from: &record, limits: limits) }
        var value = ByteReader([9])
        #expect(throws: DecodeError.unknownTag(offset: 0, tag: 9, type: "slot value")) { try SlotValue.decode(from: &value, limits: limits) }
    }
}

@Suite struct PaxosFuzzTests {
    static let limits = WireLimits(frameBytesMax: 1 << 16)

    /// Inputs per run: 100,000 in CI; `CSMR_FUZZ_FRAMES=1000000 swift test --filter PaxosFuzzTests`
    /// for the long run outside it.
    static let rounds = ProcessInfo.processInfo.environment["CSMR_FUZZ_FRAMES"].flatMap(Int.init) ?? 100_000

    /// Random and mutated bytes, fed to the frame decoder and to each value decoder: they may
    /// only return values or typed errors (a trap would end the test process).
    @Test func mutatedPaxosInputsGiveOnlyTypedErrors() {
        var random = SplitMix64(seed: 0x9A705)
        var generator = PaxosValueGenerator(random: random.derived(stream: 1))
        let valid: [[UInt8]] = (0..<120).map { WireFormat.encode(.paxos(generator.message(case: $0))) } + sampleMessages.map { WireFormat.encode($0) }
        var decodedMessages = 0
        var decodedValues = 0
        for round in 0..<Self.rounds {
            var bytes: [UInt8]
            switch round % 4 {
            case 0:
                // Garbage behind a plausible header for a Paxos frame.
                let count = Int(random.next() % 48)
                bytes = [0, 0, 0, UInt8(count + 2), WireFormat.version, 3] + (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            case 1:
                // A valid frame with bits flipped.
                bytes = valid[Int(random.next() % UInt64(valid.count))]
                for _ in 0...(random.next() % 3) {
                    bytes[Int(random.next() % UInt64(bytes.count))] ^= UInt8(1) << (random.next() % 8)
                }
            case 2:
                // A valid frame truncated, or with random bytes inserted.
                bytes = valid[Int(random.next() % UInt64(valid.count))]
                if random.chance(0.5) {
                    bytes.removeLast(Int(random.next() % UInt64(bytes.count)))
                } else {
                    let at = Int(random.next() % UInt64(bytes.count))
                    bytes.insert(contentsOf: (0...(random.next() % 8)).map { _ in UInt8(truncatingIfNeeded: random.next()) }, at: at)
                }
            default:
                // Valid frames with another valid frame inserted at a random point.
                bytes = (0..<2).flatMap { _ in valid[Int(random.next() % UInt64(valid.count))] }
                let at = Int(random.next() % UInt64(bytes.count))
                bytes.insert(contentsOf: valid[Int(random.next() % UInt64(valid.count))], at: at)
            }
            decodedMessages += DecoderFuzzTests.decodeStream(bytes)
            _ = try? WireFormat.decode(bytes, limits: Self.limits)
            // The value decoders, on the payload as if it were each value.
            let payload = bytes.count > 6 ? Array(bytes[6...]) : bytes
            var reader = ByteReader(payload)
            if (try? PaxosMessage.decode(from: &reader, limits: Self.limits.codec)) != nil { decodedValues += 1 }
            reader = ByteReader(payload)
            if (try? PersistRecord.decode(from: &reader, limits: Self.limits.codec)) != nil { decodedValues += 1 }
            reader = ByteReader(payload)
            if (try? SlotRun.decode(from: &reader, limits: Self.limits.codec)) != nil { decodedValues += 1 }
            reader = ByteReader(payload)
            if (try? ReportedSlot.decode(from: &reader, limits: Self.limits.codec)) != nil { decodedValues += 1 }
        }
        // Mutation keeps many frames intact; a decoder that refused everything would show here.
        #expect(decodedMessages > 10_000)
        #expect(decodedValues > 10_000)
    }
}
