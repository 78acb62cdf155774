import Primitives
import Services

/// Acceptor state that must survive a crash. Everything else is rebuilt from peers.
public enum PersistRecord: Hashable, Sendable {
    case promised(sublog: Int, ballot: Ballot)
    case accepted(ballot: Ballot, run: SlotRun)
}

/// Durable storage for acceptor state. `persist` returns once the records would survive a crash
/// (in memory for tests and the simulator's disk; fsync'd by the durable store).
public protocol PaxosStorage {
    mutating func persist(_ records: [PersistRecord])
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

    /// Persists the records, then hands out the messages to send.
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

/// Storage that keeps records in memory, for tests, benchmarks and the simulator's disk.
///
/// Records are kept in chunks of `chunkRecordsMax`, never in one array: a single array doubles as
/// it grows, and copying (and first touching) hundreds of megabytes of records stopped the replica's
/// event loop for a quarter of a second once per quickstart run. A full chunk is left as it is and
/// a new one started, so a persist costs the same at the millionth record as at the first.
public struct MemoryStorage: PaxosStorage, Sendable {
    /// Records per chunk: 4,096 records of about 50 bytes, a 200 KB allocation per chunk.
    static let chunkRecordsMax = 4_096
    private var chunks: [[PersistRecord]] = []
    public private(set) var recordCount = 0

    public init() {}

    /// Every record persisted, in order (assembled: for restarts and tests, not per input).
    public var records: [PersistRecord] { Array(chunks.joined()) }

    public mutating func persist(_ records: [PersistRecord]) {
        for record in records {
            if chunks.isEmpty || chunks[chunks.count - 1].count == Self.chunkRecordsMax {
                var chunk: [PersistRecord] = []
                chunk.reserveCapacity(Self.chunkRecordsMax)
                chunks.append(chunk)
            }
            chunks[chunks.count - 1].append(record)
        }
        recordCount += records.count
    }
}
