import Primitives
import Services

/// One slot as an acceptor reports it in phase 1.
public struct ReportedSlot: Hashable, Sendable {
    public var slot: UInt64
    /// The ballot it was accepted at; nil when the acceptor knows the slot is decided.
    public var ballot: Ballot?
    public var value: SlotValue

    public init(slot: UInt64, ballot: Ballot?, value: SlotValue) {
        self.slot = slot
        self.ballot = ballot
        self.value = value
    }
}

/// Everything replicas of one group say to each other.
public enum PaxosMessage: Hashable, Sendable {
    /// Phase 1a: the sender asks to lead `sublog` at `ballot` for every slot from `fromSlot` on.
    case prepare(sublog: Int, ballot: Ballot, fromSlot: UInt64)
    /// Phase 1b: what the acceptor accepted (or knows decided) in `sublog` from `fromSlot` on.
    /// `complete` is false when the report was cut at its bound: the leader must catch up first.
    case promise(sublog: Int, ballot: Ballot, fromSlot: UInt64, slots: [ReportedSlot], complete: Bool)
    /// Phase 2a for a run of slots.
    case accept(ballot: Ballot, run: SlotRun)
    /// Phase 2b: the run that starts at `first` was accepted at `ballot`. `skipped` carries the
    /// runs the acceptor skipped, as their owner at round 0, in answer to the same accept (decided
    /// already: see `PaxosReplica`'s header), so the proposer learns them with the acknowledgement.
    case accepted(ballot: Ballot, first: UInt64, skipped: [SlotRun])
    /// The acceptor has promised `promised`, above the ballot the sender used for `sublog`.
    case rejected(sublog: Int, promised: Ballot)
    /// Decided runs (after phase 2, or answering a catch-up).
    case decided([SlotRun])
    /// Liveness and progress: the sender's first undelivered slot, highest slot seen, and one past
    /// the highest slot it knows to hold a client batch; `sentAtMicroseconds` is the sender's
    /// clock, echoed back so the sender can time the round trip on its own clock.
    case heartbeat(deliveredBelow: UInt64, horizon: UInt64, batchHorizon: UInt64, sentAtMicroseconds: UInt64)
    /// The answer to a heartbeat: its `sentAtMicroseconds`, unchanged.
    case heartbeatEcho(sentAtMicroseconds: UInt64)
    /// Asks for decided slots from `fromSlot` on.
    case catchUp(fromSlot: UInt64)
    /// Answers a catch-up with the slots the sender accepted but does not know decided, each at
    /// the highest ballot it accepted there. A quorum of acceptors reporting one ballot for a slot
    /// proves its value chosen: that is how a group that restarted as a whole, having persisted
    /// acceptances but no decisions, learns what it decided (see `PaxosReplica.onUndecided`).
    case undecided([ReportedSlot])
    /// Single-leader mode: a client request for the leader to propose.
    case forward(Request)
    /// Answers a catch-up from below the sender's compaction point: those slots are only in its
    /// checkpoint, which covers every slot below `below`.
    case compacted(below: UInt64)
    /// State transfer: asks for chunk `chunk` of the sender's newest checkpoint at or above `slot`.
    case checkpointRequest(slot: UInt64, chunk: UInt32)
    /// State transfer: one chunk of a checkpoint.
    case checkpointChunk(CheckpointChunk)
}

/// A piece of a checkpoint sent to a replica that fell behind the others' compaction point. The
/// receiver asks for chunks one at a time (so a large checkpoint never floods a link) and checks
/// the whole against `digest` before installing it.
public struct CheckpointChunk: Hashable, Sendable {
    /// The checkpoint covers every slot below this one.
    public var slot: UInt64
    public var index: UInt32
    public var count: UInt32
    public var totalBytes: UInt64
    /// FNV-1a digest of the whole checkpoint.
    public var digest: UInt64
    public var bytes: [UInt8]

    public init(slot: UInt64, index: UInt32, count: UInt32, totalBytes: UInt64, digest: UInt64, bytes: [UInt8]) {
        self.slot = slot
        self.index = index
        self.count = count
        self.totalBytes = totalBytes
        self.digest = digest
        self.bytes = bytes
    }
}

extension PaxosMessage {
    /// The ballot a message carries, if any.
    public var ballot: Ballot? {
        switch self {
        case let .prepare(_, ballot, _), let .promise(_, ballot, _, _, _), let .accept(ballot, _), let .accepted(ballot, _, _): ballot
        case let .rejected(_, promised): promised
        case .decided, .heartbeat, .heartbeatEcho, .catchUp, .undecided, .forward, .compacted, .checkpointRequest, .checkpointChunk: nil
        }
    }
}

/// A message and its destination.
public struct Outgoing: Hashable, Sendable {
    public var to: ReplicaID
    public var message: PaxosMessage

    public init(to: ReplicaID, message: PaxosMessage) {
        self.to = to
        self.message = message
    }
}
