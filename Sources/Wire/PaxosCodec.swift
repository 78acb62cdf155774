import Paxos
import Primitives
import Services

// The binary coding of Paxos values: messages between replicas (frame kind 3) and acceptor
// records in the write-ahead log.
//
//     ballot        = round:u64 replica:u32
//     slot value    = 1 (noop) | 2 count:u32 request*
//     slot run      = first:u64 last:u64 value            (first <= last; a batch has first == last)
//     reported slot = slot:u64 hasBallot:u8 [ballot] value
//     record        = 1 sublog:u32 ballot | 2 ballot run
//     message       = tag:u8 fields (see `PaxosMessage.encode`)
//
// Decoding treats the bytes as a peer's or a damaged disk's: every count is checked against
// `CodecLimits` and the bytes left, replica ids and sublog numbers against
// `CodecLimits.replicaIDMax`, and the rules `SlotRun.init` enforces with preconditions are checked
// first, so no input can trap. Tags are part of the format: never renumber, only add.

extension ByteWriter {
    /// A replica id or sublog number as a `UInt32`; negative or oversized ones are programmer errors.
    fileprivate mutating func write(index value: Int, what: String) {
        precondition(value >= 0 && value <= Int(UInt32.max), "\(what) \(value) cannot be encoded")
        write(UInt32(value))
    }
}

extension ByteReader {
    /// A replica id or sublog number, bounded so a peer cannot make us index far out of range.
    fileprivate mutating func readIndex(limits: CodecLimits, what: String) throws(DecodeError) -> Int {
        let at = offset
        let value = Int(try readUInt32())
        guard value <= limits.replicaIDMax else {
            throw .invalidValue(offset: at, reason: "\(what) \(value) exceeds replicaIDMax \(limits.replicaIDMax)")
        }
        return value
    }
}

extension Ballot {
    public func encode(into writer: inout ByteWriter) {
        writer.write(round)
        writer.write(index: replica.rawValue, what: "replica id")
    }

    public static func decode(from reader: inout ByteReader, limits: CodecLimits) throws(DecodeError) -> Ballot {
        let round = try reader.readUInt64()
        return Ballot(round: round, replica: ReplicaID(try reader.readIndex(limits: limits, what: "replica id")))
    }
}

extension SlotValue {
    public func encode(into writer: inout ByteWriter) {
        switch self {
        case .noop:
            writer.write(UInt8(1))
        case let .batch(requests):
            writer.write(UInt8(2))
            precondition(requests.count <= Int(UInt32.max), "batch of \(requests.count) requests cannot be encoded")
            writer.write(UInt32(requests.count))
            for request in requests { request.encode(into: &writer) }
        }
    }

    /// The fewest bytes a request takes: client, sequence and a command tag.
    static let requestBytesMin = 8 + 8 + 1

    public static func decode(from reader: inout ByteReader, limits: CodecLimits) throws(DecodeError) -> SlotValue {
        let at = reader.offset
        switch try reader.readUInt8() {
        case 1: return .noop
        case 2:
            let count = try reader.readCount(max: limits.batchRequestsMax, minElementBytes: requestBytesMin)
            var requests: [Request] = []
            requests.reserveCapacity(count)
            for _ in 0..<count { requests.append(try Request.decode(from: &reader, limits: limits)) }
            return .batch(requests)
        case let tag: throw .unknownTag(offset: at, tag: tag, type: "slot value")
        }
    }
}

extension SlotRun {
    public func encode(into writer: inout ByteWriter) {
        writer.write(first)
        writer.write(last)
        value.encode(into: &writer)
    }

    /// Fewest bytes of a run: first, last and a value tag.
    static let bytesMin = 8 + 8 + 1

    public static func decode(from reader: inout ByteReader, limits: CodecLimits) throws(DecodeError) -> SlotRun {
        let at = reader.offset
        let first = try reader.readUInt64()
        let last = try reader.readUInt64()
        guard first <= last else { throw .invalidValue(offset: at, reason: "run \(first)...\(last) is inverted") }
        let value = try SlotValue.decode(from: &reader, limits: limits)
        if case .batch = value, first != last {
            throw .invalidValue(offset: at, reason: "a batch occupies one slot, not \(first)...\(last)")
        }
        return SlotRun(first: first, last: last, value: value)
    }
}

extension ReportedSlot {
    public func encode(into writer: inout ByteWriter) {
        writer.write(slot)
        writer.write(ballot != nil)
        ballot?.encode(into: &writer)
        value.encode(into: &writer)
    }

    /// Fewest bytes of a reported slot: slot, the ballot flag and a value tag.
    static let bytesMin = 8 + 1 + 1

    public static func decode(from reader: inout ByteReader, limits: CodecLimits) throws(DecodeError) -> ReportedSlot {
        let slot = try reader.readUInt64()
        let ballot = try reader.readBool() ? try Ballot.decode(from: &reader, limits: limits) : nil
        return ReportedSlot(slot: slot, ballot: ballot, value: try SlotValue.decode(from: &reader, limits: limits))
    }
}

extension PersistRecord {
    public func encode(into writer: inout ByteWriter) {
        switch self {
        case let .promised(sublog, ballot):
            writer.write(UInt8(1))
            writer.write(index: sublog, what: "sublog")
            ballot.encode(into: &writer)
        case let .accepted(ballot, run):
            writer.write(UInt8(2))
            ballot.encode(into: &writer)
            run.encode(into: &writer)
        }
    }

    public static func decode(from reader: inout ByteReader, limits: CodecLimits) throws(DecodeError) -> PersistRecord {
        let at = reader.offset
        switch try reader.readUInt8() {
        case 1:
            let sublog = try reader.readIndex(limits: limits, what: "sublog")
            return .promised(sublog: sublog, ballot: try Ballot.decode(from: &reader, limits: limits))
        case 2:
            let ballot = try Ballot.decode(from: &reader, limits: limits)
            return .accepted(ballot: ballot, run: try SlotRun.decode(from: &reader, limits: limits))
        case let tag: throw .unknownTag(offset: at, tag: tag, type: "persist record")
        }
    }
}

extension PaxosMessage {
    public func encode(into writer: inout ByteWriter) {
        switch self {
        case let .prepare(sublog, ballot, fromSlot):
            writer.write(UInt8(1))
            writer.write(index: sublog, what: "sublog")
            ballot.encode(into: &writer)
            writer.write(fromSlot)
        case let .promise(sublog, ballot, fromSlot, slots, complete):
            writer.write(UInt8(2))
            writer.write(index: sublog, what: "sublog")
            ballot.encode(into: &writer)
            writer.write(fromSlot)
            precondition(slots.count <= Int(UInt32.max), "promise of \(slots.count) slots cannot be encoded")
            writer.write(UInt32(slots.count))
            for slot in slots { slot.encode(into: &writer) }
            writer.write(complete)
        case let .accept(ballot, run):
            writer.write(UInt8(3))
            ballot.encode(into: &writer)
            run.encode(into: &writer)
        case let .accepted(ballot, first, skipped):
            writer.write(UInt8(4))
            ballot.encode(into: &writer)
            writer.write(first)
            Self.encode(runs: skipped, into: &writer)
        case let .rejected(sublog, promised):
            writer.write(UInt8(5))
            writer.write(index: sublog, what: "sublog")
            promised.encode(into: &writer)
        case let .decided(runs):
            writer.write(UInt8(6))
            Self.encode(runs: runs, into: &writer)
        case let .heartbeat(deliveredBelow, horizon, batchHorizon, sentAt):
            writer.write(UInt8(7))
            writer.write(deliveredBelow)
            writer.write(horizon)
            writer.write(batchHorizon)
            writer.write(sentAt)
        case let .catchUp(fromSlot):
            writer.write(UInt8(8))
            writer.write(fromSlot)
        case let .forward(request):
            writer.write(UInt8(9))
            request.encode(into: &writer)
        case let .compacted(below):
            writer.write(UInt8(10))
            writer.write(below)
        case let .checkpointRequest(slot, chunk):
            writer.write(UInt8(11))
            writer.write(slot)
            writer.write(chunk)
        case let .checkpointChunk(chunk):
            writer.write(UInt8(12))
            writer.write(chunk.slot)
            writer.write(chunk.index)
            writer.write(chunk.count)
            writer.write(chunk.totalBytes)
            writer.write(chunk.digest)
            writer.write(bytes: chunk.bytes)
        case let .heartbeatEcho(sentAt):
            writer.write(UInt8(13))
            writer.write(sentAt)
        case let .undecided(slots):
            writer.write(UInt8(14))
            precondition(slots.count <= Int(UInt32.max), "\(slots.count) slots cannot be encoded")
            writer.write(UInt32(slots.count))
            for slot in slots { slot.encode(into: &writer) }
        }
    }

    private static func encode(runs: [SlotRun], into writer: inout ByteWriter) {
        precondition(runs.count <= Int(UInt32.max), "\(runs.count) runs cannot be encoded")
        writer.write(UInt32(runs.count))
        for run in runs { run.encode(into: &writer) }
    }

    private static func decodeRuns(from reader: inout ByteReader, limits: CodecLimits) throws(DecodeError) -> [SlotRun] {
        let count = try reader.readCount(max: limits.runsMax, minElementBytes: SlotRun.bytesMin)
        var runs: [SlotRun] = []
        runs.reserveCapacity(count)
        for _ in 0..<count { runs.append(try SlotRun.decode(from: &reader, limits: limits)) }
        return runs
    }

    public static func decode(from reader: inout ByteReader, limits: CodecLimits) throws(DecodeError) -> PaxosMessage {
        let at = reader.offset
        switch try reader.readUInt8() {
        case 1:
            let sublog = try reader.readIndex(limits: limits, what: "sublog")
            let ballot = try Ballot.decode(from: &reader, limits: limits)
            return .prepare(sublog: sublog, ballot: ballot, fromSlot: try reader.readUInt64())
        case 2:
            let sublog = try reader.readIndex(limits: limits, what: "sublog")
            let ballot = try Ballot.decode(from: &reader, limits: limits)
            let fromSlot = try reader.readUInt64()
            let count = try reader.readCount(max: limits.runsMax, minElementBytes: ReportedSlot.bytesMin)
            var slots: [ReportedSlot] = []
            slots.reserveCapacity(count)
            for _ in 0..<count { slots.append(try ReportedSlot.decode(from: &reader, limits: limits)) }
            return .promise(sublog: sublog, ballot: ballot, fromSlot: fromSlot, slots: slots, complete: try reader.readBool())
        case 3:
            let ballot = try Ballot.decode(from: &reader, limits: limits)
            return .accept(ballot: ballot, run: try SlotRun.decode(from: &reader, limits: limits))
        case 4:
            let ballot = try Ballot.decode(from: &reader, limits: limits)
            let first = try reader.readUInt64()
            return .accepted(ballot: ballot, first: first, skipped: try decodeRuns(from: &reader, limits: limits))
        case 5:
            let sublog = try reader.readIndex(limits: limits, what: "sublog")
            return .rejected(sublog: sublog, promised: try Ballot.decode(from: &reader, limits: limits))
        case 6:
            return .decided(try decodeRuns(from: &reader, limits: limits))
        case 7:
            let deliveredBelow = try reader.readUInt64()
            let horizon = try reader.readUInt64()
            let batchHorizon = try reader.readUInt64()
            return .heartbeat(deliveredBelow: deliveredBelow, horizon: horizon, batchHorizon: batchHorizon, sentAtMicroseconds: try reader.readUInt64())
        case 8: return .catchUp(fromSlot: try reader.readUInt64())
        case 9: return .forward(try Request.decode(from: &reader, limits: limits))
        case 10: return .compacted(below: try reader.readUInt64())
        case 11:
            let slot = try reader.readUInt64()
            return .checkpointRequest(slot: slot, chunk: try reader.readUInt32())
        case 12:
            let slot = try reader.readUInt64()
            let index = try reader.readUInt32()
            let countAt = reader.offset
            let count = try reader.readUInt32()
            guard index < count else {
                throw .invalidValue(offset: countAt, reason: "chunk \(index) of \(count)")
            }
            let totalBytes = try reader.readUInt64()
            let digest = try reader.readUInt64()
            let bytes = Array(try reader.readBlob(maxBytes: limits.checkpointChunkBytesMax))
            return .checkpointChunk(CheckpointChunk(slot: slot, index: index, count: count, totalBytes: totalBytes, digest: digest, bytes: bytes))
        case 13: return .heartbeatEcho(sentAtMicroseconds: try reader.readUInt64())
        case 14:
            let count = try reader.readCount(max: limits.runsMax, minElementBytes: ReportedSlot.bytesMin)
            var slots: [ReportedSlot] = []
            slots.reserveCapacity(count)
            for _ in 0..<count { slots.append(try ReportedSlot.decode(from: &reader, limits: limits)) }
            return .undecided(slots)
        case let tag: throw .unknownTag(offset: at, tag: tag, type: "paxos message")
        }
    }
}
