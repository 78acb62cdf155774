import Execution
import Paxos
import Primitives
import Services

/// What leaves a replica once the records it depends on are durable: messages to peers, replies
/// to clients, and extension steps (all of them reveal decisions or acceptances).
public struct NodeEffects: Sendable {
    /// Messages for other replicas of the group (messages to itself are handled inside the node).
    public var messages: [Outgoing] = []
    /// Replies owed to clients that sent their request to this node.
    public var replies: [ClientReply] = []
    /// Extension steps produced by executing puts (when this node's group extends them), in order:
    /// the step's index and the put's key and value (Composition's `ExtensionStep` makes the log
    /// entry of them).
    public var extensionSteps: [(index: UInt64, key: String, value: String)] = []
    /// Extension steps this node's log appended: origin, step index, log index.
    public var extensionsAppended: [(origin: UInt32, index: UInt64, logIndex: UInt64)] = []
    /// What this node delivered, and its digests and installed checkpoint, released with the
    /// rest: a checker outside the replica counts only deliveries that can no longer be undone
    /// by a crash (one before the sync loses them along with everything derived from them).
    public var deliveries: [Delivery] = []
    public var digests: [(slot: UInt64, digest: Digest)] = []
    public var installedSlot: UInt64?

    public init() {}

    public var isEmpty: Bool {
        messages.isEmpty && replies.isEmpty && extensionSteps.isEmpty && extensionsAppended.isEmpty && deliveries.isEmpty && digests.isEmpty
            && installedSlot == nil
    }
}

/// What a replica node asks its driver to do after an input.
///
/// The effects are sealed: `effects(durablePosition:)` hands them out only once the storage is
/// durable up to `durableAfter` (everything appended until this input ended), and traps
/// otherwise. A driver with storage that syncs later holds the output (see `EffectGate`).
public struct NodeOutput: Sendable {
    var sealed = NodeEffects()
    /// The storage position that must be durable before the effects may leave.
    public internal(set) var durableAfter: UInt64 = 0
    /// Slots executed by this input, in order (with off-loop execution, by the input that
    /// completed their job, not the one that delivered them).
    public internal(set) var deliveries: [Delivery] = []
    /// State digests taken after executing the given slot (every `digestIntervalSlots`).
    public internal(set) var digests: [(slot: UInt64, digest: Digest)] = []
    /// Requests refused because the proposer's queue was full.
    public internal(set) var dropped: [Request] = []
    /// Checkpoints this input took (their slots).
    public internal(set) var checkpoints: [UInt64] = []
    /// A state transfer this input completed.
    public internal(set) var stateTransfer: StateTransferReport?
    /// A checkpoint for the driver to encode and return through `checkpointEncoded` (only when
    /// the node does not encode checkpoints inline).
    public internal(set) var pendingCheckpoint: PendingCheckpoint?

    /// Moves the pending checkpoint out, so that the caller's copy of the state is the only one
    /// besides the live state (see `PendingCheckpoint.encode`).
    public mutating func takePendingCheckpoint() -> PendingCheckpoint? { pendingCheckpoint.take() }
    /// Delivered slots for the driver to execute off the loop, in order, and hand back through
    /// `executed(_:now:)` (only when the node does not execute inline).
    public internal(set) var executions: [ExecutionJob] = []

    public init() {}

    /// The effects, once `durablePosition` covers `durableAfter`.
    public func effects(durablePosition: UInt64) -> NodeEffects {
        precondition(durablePosition >= durableAfter,
                     "effects of an input released at durable position \(durablePosition), before \(durableAfter): a reply would reveal state a crash can lose")
        return sealed
    }

    /// Effects for inspection only (scenario traces, checkers); never for sending.
    public var pendingEffects: NodeEffects { sealed }
}

/// A checkpoint taken but not yet encoded: the state machine at `slot` (a copy that shares its
/// tables with the live one until either is written) and the acceptor state at `position`.
public struct PendingCheckpoint: Sendable {
    public let slot: UInt64
    public let position: UInt64
    let extensionStepCount: UInt64
    var machine: StateMachine
    let acceptor: [PersistRecord]

    /// The checkpoint's bytes; pure, so any thread may call it. The result holds no reference to
    /// the state machine: the thread that encodes also drops the copy, whose release (the table
    /// shards and log chunks written since) then stays off the replica's loop. It first gives the
    /// copy tables of its own (`StateMachine.unshareTables`), so the live tables' next writes do
    /// not copy shards on the replica's loop; that only works when this value holds the copy
    /// alone, so a driver hands it over with `NodeOutput.takePendingCheckpoint()` and keeps none.
    public mutating func encode() -> EncodedCheckpoint {
        machine.unshareTables()
        return encodedAsIs()
    }

    /// The bytes without unsharing first: for a copy encoded on the thread that executes, where
    /// copying the tables would only add work.
    func encodedAsIs() -> EncodedCheckpoint {
        EncodedCheckpoint(slot: slot, position: position, bytes: CheckpointPayload(
            slot: slot, extensionStepCount: extensionStepCount, machine: machine.snapshot(canonical: false), acceptor: acceptor).encode())
    }
}

/// A checkpoint's bytes, for `ReplicaNode.checkpointEncoded`.
public struct EncodedCheckpoint: Sendable {
    public let slot: UInt64
    public let position: UInt64
    public let bytes: [UInt8]
}

/// A finished state transfer: the checkpoint's slot, its size, and how long it took.
public struct StateTransferReport: Hashable, Sendable {
    public var slot: UInt64
    public var bytes: Int
    public var chunks: Int
    public var microseconds: UInt64
    public var from: ReplicaID
}

/// Holds node outputs until the storage is durable far enough, and releases their effects in the
/// order the inputs happened (a later input's messages never overtake an earlier one's).
public struct EffectGate: Sendable {
    private var held: [NodeOutput] = []
    private var head = 0

    public init() {}

    public var isEmpty: Bool { head == held.count }

    /// Takes an output; returns the effects that may leave now (its own and any held before it).
    /// While an output waits, its messages that reveal nothing a crash could lose (prepares,
    /// heartbeats, forwarded requests, requests for help) leave at once.
    public mutating func pass(_ output: NodeOutput, durablePosition: UInt64) -> [NodeEffects] {
        if isEmpty, output.durableAfter <= durablePosition { return output.sealed.isEmpty ? [] : [output.sealed] }
        var waiting = output
        var early = NodeEffects()
        waiting.sealed.messages.removeAll { outgoing in
            guard outgoing.message.revealsNothingVolatile else { return false }
            early.messages.append(outgoing)
            return true
        }
        held.append(waiting)
        let released = release(durablePosition: durablePosition)
        return early.isEmpty ? released : [early] + released
    }

    /// The storage became durable up to `durablePosition`.
    public mutating func release(durablePosition: UInt64) -> [NodeEffects] {
        var released: [NodeEffects] = []
        while head < held.count, held[head].durableAfter <= durablePosition {
            let effects = held[head].effects(durablePosition: durablePosition)
            if !effects.isEmpty { released.append(effects) }
            head += 1
        }
        if head == held.count {
            held.removeAll(keepingCapacity: true)
            head = 0
        }
        return released
    }
}

/// The replica driver: runs the pure Paxos core's effects in the order it demands (persist, then
/// send), loops messages addressed to itself back in, executes delivered batches on the replica's
/// state machine, takes checkpoints and compacts, and fetches a peer's checkpoint when it fell
/// behind the others' compaction point.
///
/// It is a value too: the clock, the network and the disk stay outside, in whoever steps it (the
/// simulator, the in-process cluster, the TCP server). `storage` is the disk: after a crash, a new
/// node is built from what it recovered, by `recover`, and nothing else.
///
/// Self-addressed messages are handled at once, before the records they depend on are durable:
/// this replica may count its own acceptance toward a quorum and execute a decision early. That is
/// safe because nothing it learns that way leaves (messages, replies, extension steps) before the
/// records appended so far are durable; if it crashes first, no one heard of the decision.
///
/// Execution off the loop. Each input gathers what it delivered into one `ExecutionWork`. A
/// sequential executor, or any executor while `executesInline` is set, carries it out before the
/// input ends. Otherwise the output hands it to the driver as an `ExecutionJob`, the node goes on
/// with consensus, and `executed(_:now:)` later turns the job's outcome into replies, extension
/// steps, digests and the checkpoint it completes. Jobs complete in the order they were handed
/// out, so replies leave in delivery order (in order per client) and extension steps keep their
/// numbers. A checkpoint is claimed at the slots delivered (acceptor state and storage position
/// taken at once) and filled with the state machine when execution reaches that point; a state
/// received by transfer is put in place by a job after those in flight, whose results it makes
/// moot. Replies still wait in the `EffectGate` for the records of the input that delivered them.
public struct ReplicaNode<Storage: ReplicaStorage>: Sendable where Storage: Sendable {
    public private(set) var core: PaxosReplica
    /// Runs delivered batches (a parallel executor is shared by copies of this value; nodes are
    /// not copied in practice).
    private var executor: Executor
    /// Whether delivered slots are executed before the input that delivered them ends. When
    /// false and the executor is parallel, outputs carry `executions` for the driver to run off
    /// the loop (a sequential executor always executes inline: it is the reference, and cheap).
    public var executesInline = true
    /// The current input's work for the executor, handed out when the input ends.
    private var work = ExecutionWork()
    /// A checkpoint claimed by the current input, completed by its work.
    private var claim: CheckpointClaim?
    /// Jobs handed out, oldest first, until their outcomes come back.
    private var inFlight: [InFlightJob] = []
    private var nextJobNumber: UInt64 = 0
    public private(set) var storage: Storage
    public let limits: ServiceLimits
    /// Requests this node must answer once executed (the client sent them here).
    private var owed = OwedReplies()
    /// Most requests this node keeps waiting to answer. A request that is never decided (lost
    /// in a leader change, dropped while forwarded) would otherwise stay owed for ever; beyond
    /// the bound the oldest is forgotten, which costs only its reply from this replica: its
    /// client retries (here or at another replica) and gets the reply then. Recommended: a few
    /// times the clients' requests in flight; 65,536 by default.
    public var owedRepliesMax: Int {
        get { owed.countMax }
        set {
            precondition(newValue >= 1, "owedRepliesMax must be at least 1, got \(newValue)")
            owed.countMax = newValue
        }
    }
    /// Requests waiting to be answered by this node, and how many were forgotten at the bound.
    public var owedReplies: Int { owed.count }
    public var owedRepliesForgotten: UInt64 { owed.forgotten }
    /// Take a state digest after every this many delivered slots (0: never).
    public var digestIntervalSlots: UInt64
    /// Take a checkpoint and compact after every this many delivered slots (0: never).
    public var checkpointIntervalSlots: UInt64
    /// Take a checkpoint and compact once at least this many client commands were delivered
    /// since the last one (0: never), and at least `checkpointCommandsPerStateItem` per item of
    /// the state the last one held; this trigger and the slot one, whichever comes due first.
    /// Why commands: in multi-leader mode the slots include every owner's skipped slots, and
    /// leaders cut smaller batches, so a count of slots checkpointed multi-leader 2-10 times as
    /// often as single-leader for the same commands (open loop at 25,000 puts/s: 14 checkpoints
    /// against 6; quickstart: one per ~15,000 commands), a cost one protocol paid and the other
    /// did not. Commands are also what a restart replays and what the log holds.
    public var checkpointIntervalCommands: UInt64 = 0
    /// A checkpoint encodes every item of the state, so waiting for this many commands per item
    /// keeps its cost per command bounded however large the state grows (a quarter of an item's
    /// encoding per command), and the log between two checkpoints about as large as the state.
    public static var checkpointCommandsPerStateItem: UInt64 { 4 }
    /// Client commands delivered since the last checkpoint was claimed.
    private var commandsSinceCheckpoint: UInt64 = 0
    /// Items of the state machine at the last checkpoint (or restore).
    private var checkpointStateItems: UInt64 = 0
    /// Whether checkpoints are encoded within the input that takes them. When false, the output
    /// carries a `pendingCheckpoint` and the driver must encode it and hand it back through
    /// `checkpointEncoded` (the event loops of real drivers keep serving meanwhile).
    public var encodesCheckpointsInline = true
    /// Slots the core forgets per input once a checkpoint covers them (0: all at once, when the
    /// checkpoint is stored). Forgetting frees every request of those slots, about a millisecond
    /// for 10,000 slots of quickstart: a driver whose loop serves clients spreads that over inputs.
    public var compactionStepSlots: UInt64 = 0
    /// The newest stored checkpoint's slot: the core forgets the slots below it a step at a time.
    private var compactionTarget: UInt64 = 0
    /// When set, every executed `kv.put` also yields an extension step of this origin.
    public let extensionOrigin: UInt32?
    /// Extension steps produced so far: deterministic, as it counts executed puts in slot order.
    /// Checkpoints carry it, so a restarted replica does not renumber steps.
    private var extensionStepCount: UInt64 = 0
    private var lastCheckpointSlot: UInt64 = 0
    private var transfer: Transfer?
    /// The digest of the newest checkpoint, computed once for every peer that fetches it.
    private var servedDigest: (slot: UInt64, digest: UInt64)?
    /// Stage timestamps of sampled requests (the latency breakdown).
    private var sampled = SampledRequests()
    /// Read once per executed batch that answers a sampled request, for the end of its execution
    /// stage; nil: the input's `now` (execution then shows as zero). Only drivers with a real
    /// clock set it.
    public var stageClock: (@Sendable () -> Instant)?

    /// Bytes per state-transfer chunk (below `CodecLimits.checkpointChunkBytesMax`).
    public static var checkpointChunkBytes: Int { 256 << 10 }

    /// - Parameter execution: how delivered commands run; `.sequential` applies them one by one on
    ///   a `StateMachine`, the others use a `ParallelExecutor` with the same results.
    public init(core: PaxosReplica, storage: Storage, limits: ServiceLimits = ServiceLimits(), digestIntervalSlots: UInt64 = 0,
                execution: ExecutionConfig = ExecutionConfig(), extensionOrigin: UInt32? = nil, checkpointIntervalSlots: UInt64 = 0) {
        self.core = core
        self.extensionOrigin = extensionOrigin
        self.storage = storage
        self.limits = limits
        executor = Executor(config: execution, limits: limits)
        self.digestIntervalSlots = digestIntervalSlots
        self.checkpointIntervalSlots = checkpointIntervalSlots
    }

    /// A replica restarting from its disk: the newest checkpoint's state machine, then the
    /// acceptor records logged after it. Bad checkpoint bytes are a typed error, never a start
    /// from silently shortened state.
    public static func recover(config: PaxosConfig, id: ReplicaID, now: Instant, storage: Storage, recovered: RecoveredState,
                               limits: ServiceLimits = ServiceLimits(), digestIntervalSlots: UInt64 = 0,
                               execution: ExecutionConfig = ExecutionConfig(), extensionOrigin: UInt32? = nil,
                               checkpointIntervalSlots: UInt64 = 0) throws(DecodeError) -> ReplicaNode {
        guard let checkpoint = recovered.checkpoint else {
            // An empty disk is a first start: nothing this replica did ever left it (every effect
            // waits for the records before it to be durable), so it may lead at round 0 again.
            let core = recovered.records.isEmpty ? PaxosReplica(config: config, id: id, now: now)
                : PaxosReplica(config: config, id: id, now: now, restoring: recovered.records)
            return ReplicaNode(core: core, storage: storage, limits: limits,
                               digestIntervalSlots: digestIntervalSlots, execution: execution, extensionOrigin: extensionOrigin,
                               checkpointIntervalSlots: checkpointIntervalSlots)
        }
        let payload = try CheckpointPayload.decode(checkpoint.bytes)
        guard payload.slot == checkpoint.slot else {
            throw .invalidValue(offset: 1, reason: "checkpoint payload is for slot \(payload.slot), its file for \(checkpoint.slot)")
        }
        let core = PaxosReplica(config: config, id: id, now: now, checkpointSlot: payload.slot, restoring: payload.acceptor + recovered.records)
        var node = ReplicaNode(core: core, storage: storage, limits: limits, digestIntervalSlots: digestIntervalSlots, execution: execution,
                               extensionOrigin: extensionOrigin, checkpointIntervalSlots: checkpointIntervalSlots)
        node.restore(try StateMachine(snapshot: payload.machine, limits: limits), payload: payload)
        return node
    }

    /// Puts a checkpoint's state in place: now if nothing is executing, else after the jobs in
    /// flight, whose results it makes moot (they executed slots below the checkpoint).
    private mutating func restore(_ machine: StateMachine, payload: CheckpointPayload) {
        if inFlight.isEmpty, work.isEmpty {
            executor.restore(machine)
        } else {
            for index in inFlight.indices { inFlight[index].superseded = true }
            work = ExecutionWork(restore: machine)
            claim = nil
        }
        extensionStepCount = payload.extensionStepCount
        lastCheckpointSlot = payload.slot
        commandsSinceCheckpoint = 0
        checkpointStateItems = UInt64(machine.itemCount)
    }

    /// The replica's whole service state (assembled from the executor's partitions if parallel).
    /// While jobs are in flight (`isExecuting`) only the thread running them may read it.
    public var machine: StateMachine { executor.stateMachine }

    /// Whether execution jobs handed out have not come back yet.
    public var isExecuting: Bool { !inFlight.isEmpty }

    /// Blocks until the executor's lane has run every job handed out (a driver stopping: their
    /// completions reach its loop before the loop shuts down).
    public func waitForExecutionLane() { executor.parallelExecutor?.waitUntilIdle() }

    public var id: ReplicaID { core.id }

    /// Whether a state transfer is under way.
    public var isTransferringState: Bool { transfer != nil }

    /// A request from a client. A retry of a request this replica already executed is answered
    /// from its session table at once; anything else goes to consensus. A `sampled` request's
    /// reply carries its time per stage (`ReplicaStages`).
    public mutating func clientRequest(_ request: Request, now: Instant, sampled isSampled: Bool = false) -> NodeOutput {
        var output = NodeOutput()
        // While batches execute, the table answers from those finished: a retry of a request in
        // flight goes to consensus again and is answered once its first decision executes.
        if case let .duplicate(reply) = executor.sessionVerdict(for: request) {
            output.sealed.replies.append(ClientReply(client: request.client, sequence: request.sequence, reply: reply))
            finish(&output, now: now)
            return output
        }
        owed.insert(RequestKey(request))
        if isSampled { sampled.received(request, at: now) }
        run(core.propose(request, now: now), now: now, into: &output)
        finish(&output, now: now)
        return output
    }

    public mutating func receive(_ message: PaxosMessage, from sender: ReplicaID, now: Instant) -> NodeOutput {
        var output = NodeOutput()
        switch message {
        case let .checkpointRequest(slot, chunk):
            serveCheckpoint(slot: slot, chunk: chunk, to: sender, into: &output)
        case let .checkpointChunk(chunk):
            receiveChunk(chunk, from: sender, now: now, into: &output)
        default:
            sampled.observe(message, at: now)
            run(core.receive(message, from: sender, now: now), now: now, into: &output)
        }
        finish(&output, now: now)
        return output
    }

    public mutating func tick(now: Instant) -> NodeOutput {
        var output = NodeOutput()
        run(core.tick(now: now), now: now, into: &output)
        if var current = transfer, now.microseconds(since: current.lastProgressAt) >= Transfer.stallMicroseconds {
            if now.microseconds(since: current.startedAt) >= Transfer.abandonMicroseconds {
                // The peer is gone or keeps failing: catch-up will name a peer again.
                transfer = nil
            } else {
                current.lastProgressAt = now
                transfer = current
                output.sealed.messages.append(Outgoing(to: current.peer, message: .checkpointRequest(slot: current.slot, chunk: current.nextChunk)))
            }
        }
        finish(&output, now: now)
        return output
    }

    /// Takes a checkpoint now (also done when `checkpointIntervalSlots` or
    /// `checkpointIntervalCommands` comes due).
    public mutating func checkpointNow(now: Instant) -> NodeOutput {
        var output = NodeOutput()
        takeCheckpoint()
        finish(&output, now: now)
        return output
    }

    /// Ends every input: a checkpoint if one is due, the input's execution (now, or handed out),
    /// the records handed to the disk, and the position the effects wait for.
    private mutating func finish(_ output: inout NodeOutput, now: Instant) {
        compactStep()
        let slotsDue = checkpointIntervalSlots > 0 && core.deliveredBelow >= lastCheckpointSlot + checkpointIntervalSlots
        let commandsDue = checkpointIntervalCommands > 0
            && commandsSinceCheckpoint >= max(checkpointIntervalCommands, Self.checkpointCommandsPerStateItem * checkpointStateItems)
        if slotsDue || commandsDue, transfer == nil {
            takeCheckpoint()
        }
        let handedOut = dispatchWork(now: now, into: &output)
        storage.commit()
        output.durableAfter = storage.appendedPosition
        if handedOut { inFlight[inFlight.count - 1].durableAfter = output.durableAfter }
    }

    /// Claims a checkpoint at the slots delivered so far; the input's work copies the state
    /// machine once it has executed them.
    private mutating func takeCheckpoint(inline: Bool = false) {
        let slot = core.deliveredBelow
        guard slot > lastCheckpointSlot || storage.newestCheckpoint == nil else { return }
        claim = CheckpointClaim(slot: slot, position: storage.appendedPosition, acceptor: core.acceptorStateAtCheckpoint, encodeInline: inline)
        work.snapshot = true
        lastCheckpointSlot = slot
        commandsSinceCheckpoint = 0
    }

    /// The claimed checkpoint, with the state machine at its slot. Encoding it is what takes
    /// time, so a driver may do that on another thread.
    private mutating func completeCheckpoint(_ claim: CheckpointClaim, machine: StateMachine, into output: inout NodeOutput) {
        checkpointStateItems = UInt64(machine.itemCount)
        let pending = PendingCheckpoint(slot: claim.slot, position: claim.position, extensionStepCount: extensionStepCount,
                                        machine: machine, acceptor: claim.acceptor)
        output.checkpoints.append(claim.slot)
        if encodesCheckpointsInline || claim.encodeInline {
            checkpointEncoded(pending.encodedAsIs())
        } else {
            output.pendingCheckpoint = pending
        }
    }

    /// A checkpoint taken by an earlier input, encoded (by the driver, off the replica's loop):
    /// it is stored, and the core forgets the slots it covers. One older than the newest stored
    /// (a state transfer overtook it) is dropped.
    public mutating func checkpointEncoded(_ encoded: EncodedCheckpoint) {
        if let newest = storage.newestCheckpoint, newest.slot >= encoded.slot { return }
        storage.saveCheckpoint(Checkpoint(slot: encoded.slot, position: encoded.position, bytes: encoded.bytes))
        compactionTarget = encoded.slot
        compactStep()
    }

    /// Forgets the next slots a stored checkpoint covers, at most `compactionStepSlots` of them.
    private mutating func compactStep() {
        guard core.compactedBelow < compactionTarget else { return }
        let step = compactionStepSlots == 0 ? compactionTarget : min(compactionTarget, core.compactedBelow + compactionStepSlots)
        core.compact(below: step)
    }

    // MARK: State transfer

    private mutating func startTransfer(from peer: ReplicaID, slot: UInt64, now: Instant, into output: inout NodeOutput) {
        guard transfer == nil, peer != id else { return }
        transfer = Transfer(peer: peer, slot: slot, startedAt: now, lastProgressAt: now)
        output.sealed.messages.append(Outgoing(to: peer, message: .checkpointRequest(slot: slot, chunk: 0)))
    }

    private mutating func serveCheckpoint(slot: UInt64, chunk: UInt32, to peer: ReplicaID, into output: inout NodeOutput) {
        guard let checkpoint = storage.newestCheckpoint, checkpoint.slot >= slot, peer != id else { return }
        let chunkBytes = Self.checkpointChunkBytes
        let count = max(1, (checkpoint.bytes.count + chunkBytes - 1) / chunkBytes)
        guard Int(chunk) < count else { return }
        if servedDigest?.slot != checkpoint.slot { servedDigest = (checkpoint.slot, Digest(of: checkpoint.bytes).value) }
        let start = Int(chunk) * chunkBytes
        let piece = Array(checkpoint.bytes[start..<min(start + chunkBytes, checkpoint.bytes.count)])
        output.sealed.messages.append(Outgoing(to: peer, message: .checkpointChunk(CheckpointChunk(
            slot: checkpoint.slot, index: chunk, count: UInt32(count), totalBytes: UInt64(checkpoint.bytes.count),
            digest: servedDigest!.digest, bytes: piece))))
    }

    private mutating func receiveChunk(_ chunk: CheckpointChunk, from peer: ReplicaID, now: Instant, into output: inout NodeOutput) {
        guard var current = transfer, current.peer == peer, chunk.index == current.nextChunk, chunk.slot >= current.slot,
              chunk.totalBytes <= Transfer.bytesMax, chunk.count >= 1 else { return }
        if let header = current.header {
            guard header == (chunk.slot, chunk.count, chunk.totalBytes, chunk.digest) else { return }
        } else {
            current.header = (chunk.slot, chunk.count, chunk.totalBytes, chunk.digest)
        }
        guard UInt64(current.bytes.count + chunk.bytes.count) <= chunk.totalBytes else {
            transfer = nil
            return
        }
        current.bytes += chunk.bytes
        current.nextChunk += 1
        current.lastProgressAt = now
        guard current.nextChunk == chunk.count else {
            transfer = current
            output.sealed.messages.append(Outgoing(to: peer, message: .checkpointRequest(slot: current.slot, chunk: current.nextChunk)))
            return
        }
        transfer = nil
        guard UInt64(current.bytes.count) == chunk.totalBytes, Digest(of: current.bytes).value == chunk.digest,
              let payload = try? CheckpointPayload.decode(current.bytes), payload.slot == chunk.slot,
              payload.slot > core.deliveredBelow, let machine = try? StateMachine(snapshot: payload.machine, limits: limits) else { return }
        restore(machine, payload: payload)
        // The installed state is checked like any other: its digest at the slot it stands for.
        output.sealed.installedSlot = payload.slot
        if digestIntervalSlots > 0, payload.slot % digestIntervalSlots == 0 {
            let digest = (slot: payload.slot - 1, digest: machine.digest)
            output.digests.append(digest)
            output.sealed.digests.append(digest)
        }
        run(core.installCheckpoint(slot: payload.slot, now: now), now: now, into: &output)
        // This replica's own checkpoint: its state machine from the peer, its own acceptor state.
        lastCheckpointSlot = 0
        takeCheckpoint(inline: true)
        output.stateTransfer = StateTransferReport(slot: payload.slot, bytes: current.bytes.count, chunks: Int(chunk.count),
                                                   microseconds: now.microseconds(since: current.startedAt), from: peer)
    }

    // MARK: Effects

    /// Carries out one `Ready` and every `Ready` its self-addressed messages produce.
    private mutating func run(_ first: Ready, now: Instant, into output: inout NodeOutput) {
        // First in, first out: the Readys of self-addressed messages run in the order the core
        // produced them, so deliveries stay in slot order whatever the core sends itself.
        var pending = [first]
        var next = 0
        while next < pending.count {
            let ready = pending[next]
            next += 1
            if !ready.deliveries.isEmpty, work.deliveredAt == nil { work.deliveredAt = now }
            work.deliveries += ready.deliveries
            for delivery in ready.deliveries { commandsSinceCheckpoint += UInt64(delivery.value.requestCount) }
            for request in ready.dropped {
                owed.remove(RequestKey(request))
                sampled.forget(request)
                output.dropped.append(request)
            }
            if let wanted = ready.stateTransfer { startTransfer(from: wanted.from, slot: wanted.slot, now: now, into: &output) }
            for outgoing in ready.messages(persistingTo: &storage) {
                sampled.observe(outgoing.message, at: now)
                if outgoing.to == id {
                    pending.append(core.receive(outgoing.message, from: id, now: now))
                } else {
                    output.sealed.messages.append(outgoing)
                }
            }
        }
    }

    // MARK: Execution

    /// Carries out the input's work now (a sequential executor, or `executesInline`), or hands it
    /// to the driver as a job; returns whether it handed one out.
    private mutating func dispatchWork(now: Instant, into output: inout NodeOutput) -> Bool {
        guard !work.isEmpty else { return false }
        let current = work
        let currentClaim = claim
        work = ExecutionWork()
        claim = nil
        guard !executesInline, let parallel = executor.parallelExecutor else {
            precondition(inFlight.isEmpty, "r\(id.rawValue) executes inline with \(inFlight.count) job(s) in flight")
            let done = executor.perform(current, digestIntervalSlots: digestIntervalSlots)
            complete(current, done, claim: currentClaim, ready: sampled.isEmpty ? now : (stageClock?() ?? now), into: &output)
            return false
        }
        output.executions.append(ExecutionJob(number: nextJobNumber, executor: parallel, work: current, digestIntervalSlots: digestIntervalSlots))
        inFlight.append(InFlightJob(number: nextJobNumber, work: current, claim: currentClaim))
        nextJobNumber += 1
        return true
    }

    /// A job handed out earlier has run: its replies, extension steps, digests and checkpoint.
    /// They leave once the records of the input that delivered its slots are durable. An outcome
    /// from another executor (this replica's previous life) is ignored.
    public mutating func executed(_ outcome: ExecutionOutcome, now: Instant) -> NodeOutput {
        var output = NodeOutput()
        guard let parallel = executor.parallelExecutor, outcome.executor == ObjectIdentifier(parallel) else { return output }
        precondition(inFlight.first?.number == outcome.number,
                     "r\(id.rawValue): execution job \(outcome.number) completed, expected \(inFlight.first.map { "\($0.number)" } ?? "none")")
        let job = inFlight.removeFirst()
        if !job.superseded { complete(job.work, outcome.done, claim: job.claim, ready: sampled.isEmpty ? now : (stageClock?() ?? now), into: &output) }
        output.durableAfter = job.durableAfter
        return output
    }

    /// Turns executed work into effects: replies owed to this replica's clients, extension steps
    /// numbered in slot order, deliveries and digests for checkers, and the claimed checkpoint.
    /// `ready` is when execution finished (the end of a sampled request's execution stage).
    private mutating func complete(_ work: ExecutionWork, _ done: ExecutionDone, claim: CheckpointClaim?, ready: Instant,
                                   into output: inout NodeOutput) {
        for (position, delivery) in work.deliveries.enumerated() {
            if case let .batch(requests) = delivery.value, let result = done.results[position] {
                answer(requests, result, delivered: work.deliveredAt ?? ready, ready: ready, into: &output)
            }
            output.deliveries.append(delivery)
            output.sealed.deliveries.append(delivery)
        }
        for digest in done.digests {
            output.digests.append(digest)
            output.sealed.digests.append(digest)
        }
        if let claim, let machine = done.snapshot { completeCheckpoint(claim, machine: machine, into: &output) }
    }

    private mutating func answer(_ requests: [Request], _ result: ExecutionResult, delivered: Instant, ready: Instant, into output: inout NodeOutput) {
        for (position, request) in requests.enumerated() {
            let reply = result.replies[position]
            if owed.remove(RequestKey(request)) {
                var answer = ClientReply(client: request.client, sequence: request.sequence, reply: reply)
                if !sampled.isEmpty { answer.stages = sampled.executed(request, delivered: delivered, ready: ready) }
                output.sealed.replies.append(answer)
            }
            if extensionOrigin != nil, result.executed[position], case let .kvPut(key, value) = request.command {
                extensionStepCount += 1
                output.sealed.extensionSteps.append((extensionStepCount, key, value))
            }
            if case let .logAppendFrom(origin, index, _) = request.command, case let .extensionStep(appendedAt?, _) = reply {
                output.sealed.extensionsAppended.append((origin, index, appendedAt))
            }
        }
    }
}

/// A state transfer in progress: chunks of one peer's checkpoint, fetched one at a time.
private struct Transfer: Sendable {
    /// No chunk for this long: ask again.
    static let stallMicroseconds: UInt64 = 200_000
    /// No complete checkpoint after this long: give up on this peer.
    static let abandonMicroseconds: UInt64 = 30_000_000
    /// A checkpoint larger than this is refused (a forged size must not make us allocate).
    static let bytesMax: UInt64 = 4 << 30

    var peer: ReplicaID
    var slot: UInt64
    var startedAt: Instant
    var lastProgressAt: Instant
    var nextChunk: UInt32 = 0
    var header: (slot: UInt64, count: UInt32, totalBytes: UInt64, digest: UInt64)?
    var bytes: [UInt8] = []
}

extension PaxosMessage {
    /// Whether the message may leave before this replica's records are durable: it states no
    /// promise, acceptance or decision of this replica, so a crash that loses the records leaves
    /// no peer believing something the replica no longer knows. An accept (phase 2a) waits: the
    /// proposer accepts its own proposal in the same input, and a follower of a three-replica
    /// group learns the value on accepting it (proposer and follower are a quorum), which is
    /// sound only if the proposer's acceptance is on disk first. It also keeps a restarted
    /// replica with an empty disk from reusing round 0 for a value it already proposed.
    public var revealsNothingVolatile: Bool {
        switch self {
        case .prepare, .heartbeat, .heartbeatEcho, .catchUp, .forward, .checkpointRequest: true
        case .accept, .promise, .accepted, .rejected, .decided, .undecided, .compacted, .checkpointChunk: false
        }
    }
}
