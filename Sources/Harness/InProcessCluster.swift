import Composition
import Foundation
import NIOConcurrencyHelpers
import Execution
import NIOCore
import Paxos
import Primitives
import Runtime
import Services
import Storage

/// A replica group inside this process, on SwiftNIO event loops, with the real clock.
///
/// Each replica is a `ReplicaHost` confined to one event loop; replicas talk by scheduling work on
/// each other's loops, so the replica code is the same `ReplicaNode` the simulator steps, and only
/// the clock and the network differ. Crashes keep a replica's storage and lose everything else;
/// partitions drop messages across the cut, as in the simulator.
public final class InProcessCluster: @unchecked Sendable {
    // `hosts` is written once in `init` and only read afterwards; every host's state is confined
    // to its own event loop. That is what makes the unchecked `Sendable` sound.
    private(set) var hosts: [ReplicaHost] = []
    private let blocked = NIOLockedValueBox(Set<Link>())
    /// Set once the run is over: from then on nothing crosses between event loops, so no loop
    /// schedules work on one that is shutting down.
    private let halted = NIOLockedValueBox(false)
    private let replySink: @Sendable (ClientReply) -> Void
    private let extensionSink: (@Sendable ([(index: UInt64, entry: String)]) -> Void)?
    private let appendedSink: (@Sendable ([(origin: UInt32, index: UInt64, logIndex: UInt64)]) -> Void)?
    public let config: PaxosConfig?
    public let durability: ReplicaDurability
    private let eventSink: (@Sendable (String) -> Void)?
    /// Every replica's file storage, for group-commit counters (read from any thread).
    private let fileStorages = NIOLockedValueBox([Int: FileReplicaStorage]())

    /// - Parameters:
    ///   - config: the Paxos configuration, or nil for one unreplicated copy of the services.
    ///   - loops: event loops to place replicas on (round robin).
    ///   - onReply: called, on the replying replica's loop, with every reply to a client.
    ///   - extensionOrigin: when set, every executed put yields an extension step, reported to
    ///     `onExtensionSteps` (on the replica's loop).
    public init(config: PaxosConfig?, execution: ExecutionConfig = ExecutionConfig(), loops: [EventLoop], firstLoop: Int = 0,
                extensionOrigin: UInt32? = nil, durability: ReplicaDurability = ReplicaDurability(),
                onReply: @escaping @Sendable (ClientReply) -> Void,
                onExtensionSteps: (@Sendable ([(index: UInt64, entry: String)]) -> Void)? = nil,
                onExtensionAppended: (@Sendable ([(origin: UInt32, index: UInt64, logIndex: UInt64)]) -> Void)? = nil,
                onEvent: (@Sendable (String) -> Void)? = nil) {
        self.config = config
        self.durability = durability
        eventSink = onEvent
        replySink = onReply
        extensionSink = onExtensionSteps
        appendedSink = onExtensionAppended
        let count = config?.replicaCount ?? 1
        hosts = (0..<count).map { index in
            ReplicaHost(index: index, loop: loops[(firstLoop + index) % loops.count], config: config, execution: execution,
                        extensionOrigin: extensionOrigin)
        }
        for host in hosts {
            host.cluster = self
            host.loop.execute { host.open() }
        }
    }

    public var replicaCount: Int { hosts.count }

    /// Starts every replica's tick timer.
    public func start() {
        for host in hosts { host.loop.execute { host.start() } }
    }

    /// Stops the tickers and closes the replicas' files; after it has completed, no replica sends
    /// anything anywhere.
    public func stop() -> EventLoopFuture<Void> {
        halted.withLockedValue { $0 = true }
        let futures = hosts.map { host in host.loop.submit { host.stop() } }
        return EventLoopFuture.andAllSucceed(futures, on: hosts[0].loop)
    }

    /// A client request arriving at `replica`; a `sampled` one's reply carries its stage times.
    public func submit(_ request: Request, to replica: Int, sampled: Bool = false) {
        guard !isHalted else { return }
        let host = hosts[replica % hosts.count]
        host.loop.execute { host.clientRequest(request, sampled: sampled) }
    }

    public func crash(_ replica: Int) {
        let host = hosts[replica]
        host.loop.execute { host.crash() }
    }

    public func restart(_ replica: Int) {
        let host = hosts[replica]
        host.loop.execute { host.restart() }
    }

    /// The replica handles nothing for `milliseconds`, then everything that arrived meanwhile.
    public func pause(_ replica: Int, milliseconds: Int) {
        let host = hosts[replica]
        host.loop.execute { host.pause(milliseconds: milliseconds) }
    }

    /// Replicas on different sides can no longer talk.
    public func partition(_ sides: [[Int]]) {
        let cut = Link.cut(bySides: sides, replicas: hosts.count)
        blocked.withLockedValue { $0 = cut }
    }

    public func heal() { blocked.withLockedValue { $0 = [] } }

    func route(_ outgoing: Outgoing, from sender: Int) {
        let to = outgoing.to.rawValue
        guard !isHalted, to >= 0, to < hosts.count, !blocked.withLockedValue({ $0.contains(Link(sender, to)) }) else { return }
        let host = hosts[to]
        host.loop.execute { host.receive(outgoing.message, from: sender) }
    }

    var isHalted: Bool { halted.withLockedValue { $0 } }

    func reply(_ reply: ClientReply) {
        guard !isHalted else { return }
        replySink(reply)
    }

    func extensionSteps(_ steps: [(index: UInt64, entry: String)]) { extensionSink?(steps) }

    /// Something worth a line in the results (a state transfer, a storage failure).
    func event(_ text: String) { eventSink?(text) }

    func registerFileStorage(_ storage: FileReplicaStorage?, replica: Int) {
        fileStorages.withLockedValue { storages in
            // A replica that crashed keeps counting: its files' counters join the retired total.
            if let old = storages[replica], old !== storage {
                let stats = old.stats
                retiredStats.withLockedValue { $0 = WALStats.sum([$0, stats]) }
            }
            storages[replica] = storage
        }
    }

    private let retiredStats = NIOLockedValueBox(WALStats())

    /// Group-commit counters summed over the replicas that write files, since the start.
    public var storageStats: WALStats {
        WALStats.sum(fileStorages.withLockedValue { Array($0.values) }.map(\.stats) + [retiredStats.withLockedValue { $0 }])
    }

    func extensionsAppended(_ appended: [(origin: UInt32, index: UInt64, logIndex: UInt64)]) { appendedSink?(appended) }
}

/// How a group's replicas keep their acceptor state and checkpoints.
public struct ReplicaDurability: Hashable, Sendable {
    public var mode: DurabilityMode
    public var checkpointIntervalSlots: UInt64
    /// A checkpoint every this many delivered commands too (0: only by slots).
    public var checkpointIntervalCommands: UInt64
    /// The group's folder; replica r keeps its files in `r<r>/` inside it. Required unless `mode`
    /// is `none`.
    public var directory: String?

    public init(mode: DurabilityMode = .none, checkpointIntervalSlots: UInt64 = 0, checkpointIntervalCommands: UInt64 = 0,
                directory: String? = nil) {
        precondition(mode == .none || directory != nil, "durability \(mode.rawValue) needs a directory")
        self.mode = mode
        self.checkpointIntervalSlots = checkpointIntervalSlots
        self.checkpointIntervalCommands = checkpointIntervalCommands
        self.directory = directory
    }
}

/// A replica's disk: memory, or files. A class, so the node and the host share one instance and
/// mutating it never copies the records.
final class HostStorage: ReplicaStorage, @unchecked Sendable {
    // Touched only on the replica's loop (the file storage's sync thread has its own locks).
    private var memory: MemoryStorage?
    let file: FileReplicaStorage?

    init(memory: MemoryStorage) {
        self.memory = memory
        file = nil
    }

    init(file: FileReplicaStorage) {
        memory = nil
        self.file = file
    }

    func persist(_ records: [PersistRecord]) {
        if let file { file.persist(records) } else { memory!.persist(records) }
    }

    var appendedPosition: UInt64 { file?.appendedPosition ?? memory!.appendedPosition }
    var durablePosition: UInt64 { file?.durablePosition ?? memory!.durablePosition }

    func commit() { file?.commit() }

    func saveCheckpoint(_ checkpoint: Checkpoint) {
        if let file { file.saveCheckpoint(checkpoint) } else { memory!.saveCheckpoint(checkpoint) }
    }

    var newestCheckpoint: Checkpoint? {
        if let file { return file.newestCheckpoint }
        return memory!.newestCheckpoint
    }

    var recovered: RecoveredState? { memory?.recovered }
}

/// One replica on its event loop. All methods run on `loop`.
final class ReplicaHost: @unchecked Sendable {
    let index: Int
    let loop: EventLoop
    let config: PaxosConfig?
    let execution: ExecutionConfig
    let extensionOrigin: UInt32?
    unowned var cluster: InProcessCluster!
    private var node: ReplicaNode<HostStorage>?
    /// The services alone, for an unreplicated run.
    private var machine: ParallelExecutor?
    /// The disk. With `durability: none` it is memory that outlives a crash of the replica.
    private var storage: HostStorage?
    /// Outputs waiting for their records to be durable.
    private var gate = EffectGate()
    private var ticker: RepeatedTask?
    /// While paused, inputs wait here, in arrival order.
    private var held: [Input]?

    private enum Input {
        case request(Request, sampled: Bool)
        case message(PaxosMessage, from: Int)
        case executed(ExecutionOutcome)
    }

    init(index: Int, loop: EventLoop, config: PaxosConfig?, execution: ExecutionConfig, extensionOrigin: UInt32?) {
        self.index = index
        self.loop = loop
        self.config = config
        self.execution = execution
        self.extensionOrigin = extensionOrigin
        if config == nil { machine = ParallelExecutor(config: execution) }
    }

    /// The replica's folder when it keeps files.
    private var directory: String? {
        guard let root = cluster.durability.directory, cluster.durability.mode != .none else { return nil }
        return URL(fileURLWithPath: root).appendingPathComponent("r\(index)").path
    }

    /// Opens the disk and builds the node from what it holds (nothing, on a first start).
    func open() {
        guard let config, node == nil else { return }
        let recovered: RecoveredState
        if let directory {
            do {
                let (file, found) = try FileReplicaStorage.open(
                    directory: directory, mode: cluster.durability.mode,
                    onDurable: { [self] position in backOnLoop { self.durable(position) } },
                    onFailure: { [self] error in backOnLoop { self.storageFailed(error) } })
                storage = HostStorage(file: file)
                cluster.registerFileStorage(file, replica: index)
                recovered = found
            } catch {
                cluster.event("r\(index) cannot start: \(error)")
                return
            }
        } else {
            if storage == nil { storage = HostStorage(memory: MemoryStorage()) }
            recovered = storage!.recovered!
        }
        do {
            node = try ReplicaNode.recover(config: config, id: ReplicaID(index), now: Self.now(), storage: storage!, recovered: recovered,
                                           execution: execution, extensionOrigin: extensionOrigin,
                                           checkpointIntervalSlots: cluster.durability.checkpointIntervalSlots)
            node!.checkpointIntervalCommands = cluster.durability.checkpointIntervalCommands
            node!.encodesCheckpointsInline = false
            // The loop serves clients: slots a checkpoint covers are forgotten a little per input.
            node!.compactionStepSlots = 1_024
            node!.executesInline = false
            node!.stageClock = { Self.now() }
            incarnation += 1
        } catch {
            cluster.event("r\(index) cannot read its checkpoint: \(error)")
        }
    }

    static func now() -> Instant { Instant(nanoseconds: NIODeadline.now().uptimeNanoseconds) }

    func start() {
        guard let config else { return }
        // Ticks drive heartbeats, retransmission and batch deadlines; a batch delay shorter than
        // a millisecond needs ticks at least that often.
        let period = max(100, min(1_000, config.batchDelayMicrosecondsMax == 0 ? 1_000 : config.batchDelayMicrosecondsMax))
        ticker = loop.scheduleRepeatedTask(initialDelay: .microseconds(Int64(period)), delay: .microseconds(Int64(period))) { [self] _ in
            tick()
        }
    }

    func stop() {
        ticker?.cancel()
        ticker = nil
        node?.waitForExecutionLane()
        closeFiles()
    }

    func pause(milliseconds: Int) {
        guard held == nil else { return }
        held = []
        loop.scheduleTask(in: .milliseconds(Int64(milliseconds))) { [self] in
            let inputs = held ?? []
            held = nil
            for input in inputs {
                switch input {
                case let .request(request, sampled): clientRequest(request, sampled: sampled)
                case let .message(message, sender): receive(message, from: sender)
                case let .executed(outcome): executed(outcome)
                }
            }
        }
    }

    func clientRequest(_ request: Request, sampled: Bool = false) {
        if held != nil {
            held!.append(.request(request, sampled: sampled))
            return
        }
        if let machine {
            let reply = machine.execute([request]).replies[0]
            cluster.reply(ClientReply(client: request.client, sequence: request.sequence, reply: reply))
            return
        }
        guard node != nil else { return }
        carryOut(node!.clientRequest(request, now: Self.now(), sampled: sampled))
    }

    func receive(_ message: PaxosMessage, from sender: Int) {
        if held != nil {
            held!.append(.message(message, from: sender))
            return
        }
        guard node != nil else { return }
        carryOut(node!.receive(message, from: ReplicaID(sender), now: Self.now()))
    }

    /// An execution job came back from the executor's lane.
    private func executed(_ outcome: ExecutionOutcome) {
        if held != nil {
            held!.append(.executed(outcome))
            return
        }
        guard node != nil else { return }
        carryOut(node!.executed(outcome, now: Self.now()))
    }

    func tick() {
        guard node != nil, held == nil else { return }
        carryOut(node!.tick(now: Self.now()))
    }

    /// The process dies: everything in memory is lost, including effects still waiting for a
    /// sync. What is on disk stays (memory storage plays the disk for `durability: none`).
    /// Unlike a real crash, the file storage writes out what it buffered when it closes.
    func crash() {
        guard node != nil else { return }
        node = nil
        gate = EffectGate()
        if storage?.file != nil {
            closeFiles()
            storage = nil
        }
    }

    func restart() {
        guard node == nil else { return }
        open()
    }

    private func closeFiles() {
        guard let file = storage?.file else { return }
        do {
            try file.close()
        } catch {
            cluster.event("r\(index): closing its files failed: \(error)")
        }
        cluster.registerFileStorage(nil, replica: index)
    }

    /// The sync thread reports records durable up to `position`: held effects may leave.
    private func durable(_ position: UInt64) {
        guard node != nil else { return }
        for effects in gate.release(durablePosition: position) { send(effects) }
    }

    private func storageFailed(_ error: StorageError) {
        // Acknowledged state may not be on disk: the replica stops rather than lie.
        cluster.event("r\(index) stopped: its storage failed: \(error)")
        node = nil
        gate = EffectGate()
    }

    /// Work finished on another thread (a sync, a checkpoint's encoding, an execution job) comes
    /// back to this replica's loop, unless the cluster has stopped: its loops may be shut down by
    /// then, and a stopped replica has nothing left to do with the result.
    private func backOnLoop(_ body: @escaping @Sendable () -> Void) {
        guard !cluster.isHalted else { return }
        loop.execute(body)
    }

    /// Incarnation of `node`: a checkpoint encoded for an earlier one is dropped.
    private var incarnation = 0

    private func carryOut(_ output: consuming NodeOutput) {
        if output.pendingCheckpoint != nil {
            let current = incarnation
            // Encoded off the loop, which keeps serving, at low priority (`BackgroundQueue`);
            // handed back to the same incarnation.
            BackgroundQueue.checkpoints.encode(output.takePendingCheckpoint()!) { [self] encoded in
                backOnLoop { [self] in
                    guard incarnation == current, node != nil else { return }
                    node!.checkpointEncoded(encoded)
                }
            }
        }
        for job in output.executions {
            // Executed on the executor's lane while this loop goes on; the outcome comes back
            // here (a previous incarnation's is ignored by the node).
            job.runOnLane { [self] outcome in backOnLoop { self.executed(outcome) } }
        }
        if let transfer = output.stateTransfer {
            cluster.event(String(format: "r%d installed r%d's checkpoint at slot %llu: %d bytes in %d chunks, %.1f ms", index, transfer.from.rawValue,
                                 transfer.slot, transfer.bytes, transfer.chunks, Double(transfer.microseconds) / 1_000))
        }
        guard let storage else { return }
        for effects in gate.pass(output, durablePosition: storage.durablePosition) { send(effects) }
    }

    private func send(_ effects: NodeEffects) {
        for outgoing in effects.messages { cluster.route(outgoing, from: index) }
        for var reply in effects.replies {
            reply.stages?.released(atNanoseconds: Self.now().nanoseconds)
            cluster.reply(reply)
        }
        if !effects.extensionSteps.isEmpty, let origin = extensionOrigin {
            cluster.extensionSteps(effects.extensionSteps.map { ($0.index, ExtensionStep(origin: origin, index: $0.index, key: $0.key, value: $0.value).entry) })
        }
        if !effects.extensionsAppended.isEmpty { cluster.extensionsAppended(effects.extensionsAppended) }
    }
}
