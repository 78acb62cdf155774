import Primitives
import Services

/// Acceptor state that must survive a crash. Everything else is rebuilt from peers.
public enum PersistRecord: Hashable, Sendable {
    case promised(sublog: Int, ballot: Ballot)
    case accepted(ballot: Ballot, run: SlotRun)
}

/// Storage for acceptor state. `persist` appends records at increasing positions; they survive
/// a crash once `durablePosition` reaches the position they were appended at: at once for memory
/// storage, after a write or an fsync for files. A driver hands out the messages and replies an
/// input produced only when everything appended up to then is durable (`appendedPosition` at that
/// moment), so nothing that reveals a promise or an acceptance leaves before it would survive.
public protocol PaxosStorage {
    mutating func persist(_ records: [PersistRecord])
    /// The position after the last record handed to `persist`.
    var appendedPosition: UInt64 { get }
    /// Every record up to this position survives a crash.
    var durablePosition: UInt64 { get }
}

/// A replica's state at a slot, as the driver encodes it: every slot below `slot` is in the state
/// machine it holds, and the acceptor state it carries covers every record up to `position`.
public struct Checkpoint: Hashable, Sendable {
    public var slot: UInt64
    public var position: UInt64
    public var bytes: [UInt8]

    public init(slot: UInt64, position: UInt64, bytes: [UInt8]) {
        self.slot = slot
        self.position = position
        self.bytes = bytes
    }
}

/// What a replica finds on its disk at start-up.
public struct RecoveredState: Sendable {
    public var checkpoint: Checkpoint?
    /// Records appended after the checkpoint's position, in order.
    public var records: [PersistRecord]

    public init(checkpoint: Checkpoint?, records: [PersistRecord]) {
        self.checkpoint = checkpoint
        self.records = records
    }
}

/// A replica's whole disk: acceptor records and checkpoints.
public protocol ReplicaStorage: PaxosStorage {
    /// Hands the records appended so far to the disk. Durability follows at once or later; a
    /// storage that syncs later tells whoever built it when `durablePosition` moves.
    mutating func commit()
    /// Keeps `checkpoint`; once it is durable, the records up to its position may be dropped.
    mutating func saveCheckpoint(_ checkpoint: Checkpoint)
    /// The newest checkpoint, for a peer that needs a state transfer.
    var newestCheckpoint: Checkpoint? { get }
}

/// The work one input to the core produced, with the order the driver must follow built in:
/// the messages can only be taken by handing over the storage, which first persists the records
/// they depend on (a promise or an accept must be durable before the reply that reveals it).
/// Deliveries are decided values and may be executed at once.
public struct Ready: Sendable {
    public private(set) var records: [PersistRecord] = []
    private var messages: [Outgoing] = []
    public private(set) var deliveries: [Delivery] = []
    /// Client requests refused because the request queue was full.
    public private(set) var dropped: [Request] = []
    /// A peer that holds, in a checkpoint, the slots this replica misses: the driver fetches it
    /// and calls `installCheckpoint`.
    public private(set) var stateTransfer: (from: ReplicaID, slot: UInt64)?

    public init() {}

    public var isEmpty: Bool { records.isEmpty && messages.isEmpty && deliveries.isEmpty && dropped.isEmpty && stateTransfer == nil }

    /// Appends the records to `storage`, then hands out the messages, which may leave once
    /// `storage.durablePosition` reaches its `appendedPosition` (at once with memory storage).
    public consuming func messages(persistingTo storage: inout some PaxosStorage) -> [Outgoing] {
        if !records.isEmpty { storage.persist(records) }
        return messages
    }

    /// The messages, for inspection only (scenario traces); never for sending.
    public var pendingMessages: [Outgoing] { messages }

    mutating func persist(_ record: PersistRecord) { records.append(record) }
    mutating func send(_ message: PaxosMessage, to replica: ReplicaID) { messages.append(Outgoing(to: replica, message: message)) }
    mutating func deliver(_ delivery: Delivery) { deliveries.append(delivery) }
    mutating func drop(_ request: Request) { dropped.append(request) }
    mutating func transferState(from peer: ReplicaID, slot: UInt64) { stateTransfer = (peer, slot) }
}

/// Storage that keeps records in memory, for tests, benchmarks, the simulator's disk and
/// `durability: none`. Everything is durable as soon as it is appended. A checkpoint drops the
/// records it covers, so memory stays bounded in a run of any length.
///
/// Records are kept in chunks of `chunkRecordsMax`, never in one array: a single array doubles as
/// it grows, and copying (and first touching) hundreds of megabytes of records stopped the replica's
/// event loop for a quarter of a second once per quickstart run. A full chunk is left as it is and
/// a new one started, so a persist costs the same at the millionth record as at the first.
///
/// The records a checkpoint covers are gone from `records` at once, but their memory is let go of
/// one chunk per `persist` or `saveCheckpoint`: freeing the tens of thousands of records behind a
/// quickstart checkpoint in one call held the replica's loop for up to a millisecond.
public struct MemoryStorage: ReplicaStorage, Sendable {
    /// Records per chunk: 1,024 records of about 50 bytes, a 50 KB allocation per chunk. Freeing
    /// a chunk of quickstart's records (and what they alone hold) takes about 0.1 ms.
    static let chunkRecordsMax = 1_024
    /// Records in order, in chunks; those before `keptFrom` are dropped and wait to be freed.
    private var chunks: [[PersistRecord]] = []
    /// The position of `chunks[0][0]`.
    private var firstPosition: UInt64 = 0
    /// The position of the first record kept: the newest checkpoint's.
    private var keptFrom: UInt64 = 0
    public private(set) var newestCheckpoint: Checkpoint?
    public private(set) var appendedPosition: UInt64 = 0

    public init() {}

    public var durablePosition: UInt64 { appendedPosition }

    /// Records kept (those after the newest checkpoint).
    public var recordCount: Int { Int(appendedPosition - keptFrom) }

    /// Records held in memory, dropped ones not yet freed included (for tests).
    var recordsHeld: Int { Int(appendedPosition - firstPosition) }

    /// The records after the newest checkpoint, in order (assembled: for restarts and tests, not
    /// per input).
    public var records: [PersistRecord] { Array(chunks.joined().dropFirst(Int(keptFrom - firstPosition))) }

    public mutating func persist(_ records: [PersistRecord]) {
        for record in records {
            if chunks.isEmpty || chunks[chunks.count - 1].count == Self.chunkRecordsMax {
                var chunk: [PersistRecord] = []
                chunk.reserveCapacity(Self.chunkRecordsMax)
                chunks.append(chunk)
            }
            chunks[chunks.count - 1].append(record)
        }
        appendedPosition += UInt64(records.count)
        freeDroppedChunk()
    }

    public mutating func commit() {}

    public mutating func saveCheckpoint(_ checkpoint: Checkpoint) {
        precondition(checkpoint.position <= appendedPosition, "checkpoint at position \(checkpoint.position) beyond \(appendedPosition)")
        keptFrom = max(keptFrom, checkpoint.position)
        newestCheckpoint = checkpoint
        freeDroppedChunk()
    }

    /// Frees the oldest chunk if every record in it is dropped.
    private mutating func freeDroppedChunk() {
        guard let first = chunks.first, first.count == Self.chunkRecordsMax,
              firstPosition + UInt64(Self.chunkRecordsMax) <= keptFrom else { return }
        chunks.removeFirst()
        firstPosition += UInt64(Self.chunkRecordsMax)
    }

    /// What a replica restarting from this disk finds.
    public var recovered: RecoveredState { RecoveredState(checkpoint: newestCheckpoint, records: records) }
}
