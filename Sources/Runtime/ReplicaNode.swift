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
    /// Extension steps produced by executing puts (when this node's group extends them), in order.
    public var extensionSteps: [(index: UInt64, entry: String)] = []
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
    /// Slots delivered and executed by this input, in order.
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
    let machine: StateMachine
    let acceptor: [PersistRecord]

    /// The checkpoint's bytes; pure, so any thread may call it.
    public func encode() -> [UInt8] {
        CheckpointPayload(slot: slot, extensionStepCount: extensionStepCount, machine: machine.snapshot(canonical: false), acceptor: acceptor).encode()
    }
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
public struct ReplicaNode<Storage: ReplicaStorage>: Sendable where Storage: Sendable {
    public private(set) var core: PaxosReplica
    /// Sequential execution's state, or nil when a parallel executor holds the state.
    private var sequentialMachine: StateMachine?
    /// Parallel execution (shared by copies of this value; nodes are not copied in practice).
    private let executor: ParallelExecutor?
    public private(set) var storage: Storage
    public let limits: ServiceLimits
    /// Requests this node must answer once executed (the client sent them here).
    private var owed: Set<OwedReply> = []
    /// Take a state digest after every this many delivered slots (0: never).
    public var digestIntervalSlots: UInt64
    /// Take a checkpoint and compact after every this many delivered slots (0: never).
    public var checkpointIntervalSlots: UInt64
    /// Whether checkpoints are encoded within the input that takes them. When false, the output
    /// carries a `pendingCheckpoint` and the driver must encode it and hand it back through
    /// `checkpointEncoded` (the event loops of real drivers keep serving meanwhile).
    public var encodesCheckpointsInline = true
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
        if execution.scheduler == .sequential, execution.spinIterationsPerCommand == 0 {
            sequentialMachine = StateMachine(limits: limits)
            executor = nil
        } else {
            sequentialMachine = nil
            executor = ParallelExecutor(config: execution, limits: limits)
        }
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
        try node.restoreMachine(payload)
        return node
    }

    private mutating func restoreMachine(_ payload: CheckpointPayload) throws(DecodeError) {
        let machine = try StateMachine(snapshot: payload.machine, limits: limits)
        if sequentialMachine != nil {
            sequentialMachine = machine
        } else {
            executor!.restore(machine)
        }
        extensionStepCount = payload.extensionStepCount
        lastCheckpointSlot = payload.slot
    }

    /// The replica's whole service state (assembled from the executor's partitions if parallel).
    public var machine: StateMachine { sequentialMachine ?? executor!.stateMachine }

    public var id: ReplicaID { core.id }

    /// Whether a state transfer is under way.
    public var isTransferringState: Bool { transfer != nil }

    /// A request from a client. A retry of a request this replica already executed is answered
    /// from its session table at once; anything else goes to consensus. A `sampled` request's
    /// reply carries its time per stage (`ReplicaStages`).
    public mutating func clientRequest(_ request: Request, now: Instant, sampled isSampled: Bool = false) -> NodeOutput {
        var output = NodeOutput()
        let verdict = sequentialMachine?.sessionVerdict(for: request) ?? executor!.sessionVerdict(for: request)
        if case let .duplicate(reply) = verdict {
            output.sealed.replies.append(ClientReply(client: request.client, sequence: request.sequence, reply: reply))
            finish(&output, now: now)
            return output
        }
        owed.insert(OwedReply(request))
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

    /// Takes a checkpoint now (also done every `checkpointIntervalSlots` delivered slots).
    public mutating func checkpointNow(now: Instant) -> NodeOutput {
        var output = NodeOutput()
        takeCheckpoint(into: &output)
        finish(&output, now: now)
        return output
    }

    /// Ends every input: a checkpoint if one is due, the records handed to the disk, and the
    /// position the effects wait for.
    private mutating func finish(_ output: inout NodeOutput, now: Instant) {
        if checkpointIntervalSlots > 0, core.deliveredBelow >= lastCheckpointSlot + checkpointIntervalSlots, transfer == nil {
            takeCheckpoint(into: &output)
        }
        storage.commit()
        output.durableAfter = storage.appendedPosition
    }

    private mutating func takeCheckpoint(into output: inout NodeOutput, inline: Bool = false) {
        let slot = core.deliveredBelow
        guard slot > lastCheckpointSlot || storage.newestCheckpoint == nil else { return }
        // A copy of the state machine costs nothing now (its tables are shared until the next
        // write); encoding it is what takes time, so a driver may do that on another thread.
        let pending = PendingCheckpoint(slot: slot, position: storage.appendedPosition, extensionStepCount: extensionStepCount,
                                        machine: machine, acceptor: core.acceptorStateAtCheckpoint)
        lastCheckpointSlot = slot
        output.checkpoints.append(slot)
        if encodesCheckpointsInline || inline {
            checkpointEncoded(pending, bytes: pending.encode())
        } else {
            output.pendingCheckpoint = pending
        }
    }

    /// A checkpoint taken by an earlier input, encoded (by the driver, off the replica's loop):
    /// it is stored, and the core forgets the slots it covers. One older than the newest stored
    /// (a state transfer overtook it) is dropped.
    public mutating func checkpointEncoded(_ pending: PendingCheckpoint, bytes: [UInt8]) {
        if let newest = storage.newestCheckpoint, newest.slot >= pending.slot { return }
        storage.saveCheckpoint(Checkpoint(slot: pending.slot, position: pending.position, bytes: bytes))
        core.compact(below: pending.slot)
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
              payload.slot > core.deliveredBelow else { return }
        do {
            try restoreMachine(payload)
        } catch {
            return
        }
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
        takeCheckpoint(into: &output, inline: true)
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
            execute(ready.deliveries, now: now, into: &output)
            for request in ready.dropped {
                owed.remove(OwedReply(request))
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

    private mutating func execute(_ deliveries: [Delivery], now: Instant, into output: inout NodeOutput) {
        for delivery in deliveries {
            if case let .batch(requests) = delivery.value {
                var replies: [Reply] = []
                var executed: [Bool] = []
                if sequentialMachine != nil {
                    for request in requests {
                        let (reply, ran) = sequentialMachine!.applyReportingExecution(request)
                        replies.append(reply)
                        executed.append(ran)
                    }
                } else {
                    replies = executor!.execute(requests)
                    executed = executor!.lastExecuted
                }
                var ready: Instant?
                for (position, request) in requests.enumerated() {
                    let reply = replies[position]
                    if owed.remove(OwedReply(request)) != nil {
                        var answer = ClientReply(client: request.client, sequence: request.sequence, reply: reply)
                        if !sampled.isEmpty {
                            if ready == nil { ready = stageClock?() ?? now }
                            answer.stages = sampled.executed(request, delivered: now, ready: ready!)
                        }
                        output.sealed.replies.append(answer)
                    }
                    if let origin = extensionOrigin, executed[position], case let .kvPut(key, value) = request.command {
                        extensionStepCount += 1
                        output.sealed.extensionSteps.append((extensionStepCount, ExtensionEntry.text(origin: origin, index: extensionStepCount, key: key, value: value)))
                    }
                    if case let .logAppendFrom(origin, index, _) = request.command, case let .extensionStep(appendedAt?, _) = reply {
                        output.sealed.extensionsAppended.append((origin, index, appendedAt))
                    }
                }
            }
            output.deliveries.append(delivery)
            output.sealed.deliveries.append(delivery)
            if digestIntervalSlots > 0, (delivery.slot + 1) % digestIntervalSlots == 0 {
                // A digest encodes the whole state: take it once for both lists.
                let digest = (slot: delivery.slot, digest: machine.digest)
                output.digests.append(digest)
                output.sealed.digests.append(digest)
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

/// The log entry an extension step appends for a put.
public enum ExtensionEntry {
    public static func text(origin: UInt32, index: UInt64, key: String, value: String) -> String {
        "g\(origin)#\(index) put \(key)=\(value)"
    }
}

/// A request by its client and sequence (what a reply answers).
struct OwedReply: Hashable, Sendable {
    var client: ClientID
    var sequence: UInt64
    init(_ request: Request) {
        client = request.client
        sequence = request.sequence
    }
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
        case .prepare, .heartbeat, .catchUp, .forward, .checkpointRequest: true
        case .accept, .promise, .accepted, .rejected, .decided, .compacted, .checkpointChunk: false
        }
    }
}
