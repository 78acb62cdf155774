import Paxos
import Primitives
import Services
import Wire

/// What a replica's checkpoint holds, encoded canonically: the state machine after every slot
/// below `slot` (services and session table), the extension step count (so steps keep their
/// numbers across a restart), and the acceptor state of this replica at the moment it was taken
/// (promises, and the slots at or above `slot` it accepted), which is what lets the records logged
/// before it be dropped.
///
///     payload = version:u8 slot:u64 extensionSteps:u64 machine:blob records:u32 record*
public struct CheckpointPayload: Sendable {
    public static let version: UInt8 = 1

    public var slot: UInt64
    public var extensionStepCount: UInt64
    /// `StateMachine.snapshot()`.
    public var machine: [UInt8]
    public var acceptor: [PersistRecord]

    public init(slot: UInt64, extensionStepCount: UInt64, machine: [UInt8], acceptor: [PersistRecord]) {
        self.slot = slot
        self.extensionStepCount = extensionStepCount
        self.machine = machine
        self.acceptor = acceptor
    }

    public func encode() -> [UInt8] {
        var writer = ByteWriter(capacity: machine.count + 64 + acceptor.count * 32)
        writer.write(Self.version)
        writer.write(slot)
        writer.write(extensionStepCount)
        writer.write(bytes: machine)
        writer.write(UInt32(acceptor.count))
        for record in acceptor { record.encode(into: &writer) }
        return writer.bytes
    }

    /// Decodes bytes from a checkpoint file or a peer; bad bytes give a typed error.
    public static func decode(_ bytes: [UInt8], limits: CodecLimits = .standard) throws(DecodeError) -> CheckpointPayload {
        var reader = ByteReader(bytes)
        let version = try reader.readUInt8()
        guard version == Self.version else { throw .invalidValue(offset: 0, reason: "checkpoint version \(version), expected \(Self.version)") }
        let slot = try reader.readUInt64()
        let steps = try reader.readUInt64()
        let machine = Array(try reader.readBlob(maxBytes: bytes.count))
        let count = try reader.readCount(max: limits.runsMax * 4, minElementBytes: 2)
        var acceptor: [PersistRecord] = []
        acceptor.reserveCapacity(count)
        for _ in 0..<count { acceptor.append(try PersistRecord.decode(from: &reader, limits: limits)) }
        try reader.expectEnd()
        return CheckpointPayload(slot: slot, extensionStepCount: steps, machine: machine, acceptor: acceptor)
    }
}
