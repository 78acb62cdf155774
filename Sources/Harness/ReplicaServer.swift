import Composition
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Paxos
import Primitives
import Runtime
import Services
import Storage
import Transport
import Wire
import Workload

/// One replica of one group as a network server: the `ReplicaNode` every other driver steps,
/// with peers over `PeerTransport`, clients over a `FrameServer` speaking the client protocol
/// (docs/protocol.md), its disk through `FileReplicaStorage` (or memory for `durability: none`),
/// and the real clock. `csmr replica` runs one per process.
///
/// Extensions (a composition that extends the puts of one group into another group's log): a
/// replica of the origin group forwards the extension steps its own execution produces over
/// extension links to the log group's peer ports (`ExtensionForwarder`: replica 0 forwards, the
/// others probe and take over when the log stops progressing), so no client or proxy has to
/// carry them. A replica of the log's group accepts steps only on those links, whose handshake
/// names a replica of the origin group of this cluster, and proposes each as
/// `Command.logAppendFrom`; the log applies step k once, after k − 1.
///
/// Partitions: with a control file (`ReplicaControl`), the replica cuts off the peers it names,
/// read at start and again on `reloadControl()` (SIGUSR2 in `csmr replica`); a malformed file is
/// logged and ignored, and the previous blocking stays.
///
/// Everything runs on one event loop: inputs from peers, clients, extension links, the tick timer
/// and the sync thread's durability reports (hopped onto it). That confinement is what makes the unchecked
/// `Sendable` sound.
public final class ReplicaServer: @unchecked Sendable {
    public let cluster: ClusterSpec
    public let group: Int
    public let replica: Int
    public let loop: EventLoop
    private let log: @Sendable (String) -> Void
    private let config: PaxosConfig
    private var node: ReplicaNode<HostStorage>?
    private var storage: HostStorage?
    private var gate = EffectGate()
    private var peers: PeerTransport?
    private var clients: FrameServer?
    private var ticker: RepeatedTask?
    /// Which client connection each client id's replies go to (its latest request came there).
    private var replyRoutes: [ClientID: ConnectionID] = [:]
    private var routesByConnection: [ConnectionID: Set<ClientID>] = [:]
    private let limits = WireLimits.standard
    public private(set) var counters = ServerCounters()
    /// This group's puts are extended into `target`'s log: the steps this replica forwards.
    private var forwarder: ExtensionForwarder?
    private let extensionTarget: Int?
    /// The replica of the target group this replica sends steps to now, and its link.
    private var extensionTargetReplica = 0
    private var extensionLink: FrameClient?
    private var extensionDialing = false
    /// The forwarder's resend count when the target last changed.
    private var extensionResendsAtMove = 0
    /// Origin groups (and their replica counts) whose steps this replica's group takes.
    private let extensionOrigins: [UInt32: Int]
    /// The control file naming the peers to cut off (a partition), if the harness gave one.
    public let controlFile: String?
    /// What the control file last said (nil before it was read): a file read again unchanged is
    /// not logged again.
    private var blockedPeers: Set<Int>?
    /// Steps sent per round, and how long an unanswered one waits before it is sent again.
    public static let extensionWindowSteps = 256
    public static let extensionResendNanoseconds: UInt64 = 500_000_000

    /// - Parameters:
    ///   - composition: the cluster's composition, if any (its groups are the cluster file's, in
    ///     order): it says whether this group's puts are extended, or this group takes steps.
    ///   - controlFile: the `ReplicaControl` file to read at start and on `reloadControl()`.
    ///   - log: one line per notable event (refusals, state transfers, failures).
    public init(cluster: ClusterSpec, group: Int, replica: Int, composition: CompositionSpec? = nil, controlFile: String? = nil,
                loop: EventLoop, log: @escaping @Sendable (String) -> Void) throws {
        precondition(cluster.groups.indices.contains(group) && cluster.groups[group].replicas.indices.contains(replica),
                     "replica \(replica) of group \(group) is not in the cluster file")
        self.cluster = cluster
        self.group = group
        self.replica = replica
        self.loop = loop
        self.log = log
        self.controlFile = controlFile
        let settings = cluster.groups[group].settings
        guard let config = try WorkloadRunner.paxosConfig(group: settings) else {
            throw ServerError.unsupported("protocol unreplicated has no replicas to run as processes")
        }
        self.config = config
        var target: Int?
        var origins: [UInt32: Int] = [:]
        if let composition, composition.extendPutsIntoLog {
            guard composition.groups.count == cluster.groups.count else {
                throw ServerError.unsupported("the composition has \(composition.groups.count) groups, the cluster file \(cluster.groups.count)")
            }
            let router = Router(spec: composition)
            if let origin = router.extensionOrigin, let into = router.extensionTarget, origin != into {
                if origin == group {
                    target = into
                    forwarder = ExtensionForwarder(origin: UInt32(group), windowSteps: Self.extensionWindowSteps,
                                                   resendNanoseconds: Self.extensionResendNanoseconds, keepsApplied: false, isBackup: replica != 0)
                    extensionTargetReplica = replica % cluster.groups[into].replicas.count
                }
                if into == group { origins[UInt32(origin)] = cluster.groups[origin].replicas.count }
            }
        }
        extensionTarget = target
        extensionOrigins = origins
    }

    private var settings: GroupSpec { cluster.groups[group].settings }
    private var identity: ClusterIdentity { ClusterIdentity(name: cluster.name) }

    /// Opens the disk, recovers, starts listening; the future reports the bound peer and client
    /// addresses.
    public func start() -> EventLoopFuture<(peer: SocketAddress, client: SocketAddress)> {
        loop.flatSubmit { [self] in
            do {
                try open()
            } catch {
                return loop.makeFailedFuture(error)
            }
            let me = cluster.groups[group].replicas[replica]
            var peerAddresses: [Int: SocketAddress] = [:]
            do {
                for (index, other) in cluster.groups[group].replicas.enumerated() where index != replica {
                    peerAddresses[index] = try SocketAddress.makeAddressResolvingHost(other.peer.host, port: other.peer.port)
                }
                // Emulated wide-area links (the group's `network`): frames to a peer at another
                // location wait that pair's one-way delay before they leave.
                let network = settings.network
                var delays: [Int: Int64] = [:]
                for peer in peerAddresses.keys { delays[peer] = network.delayMicroseconds(fromReplica: replica, toReplica: peer) }
                if !network.isEmpty {
                    let listed = delays.keys.sorted().map { String(format: "r%d %.1f ms", $0, Double(delays[$0]!) / 1_000) }
                    log("at location \(network.locations[replica]); emulated one-way delays to peers: \(listed.joined(separator: ", "))")
                }
                var peerConfig = PeerTransportConfig(cluster: identity, group: UInt32(group), replica: replica,
                                                     listenAddress: try SocketAddress.makeAddressResolvingHost(me.peer.host, port: me.peer.port),
                                                     peers: peerAddresses, limits: limits, delayMicroseconds: delays.filter { $0.value > 0 },
                                                     jitterSeed: UInt64(replica + 1))
                peerConfig.extensionOrigins = extensionOrigins
                let clientConfig = FrameServerConfig(cluster: identity, group: UInt32(group),
                                                     listenAddress: try SocketAddress.makeAddressResolvingHost(me.client.host, port: me.client.port),
                                                     limits: limits)
                let log = self.log
                var onExtensionFrame: PeerTransport.ExtensionFrameCallback?
                if !extensionOrigins.isEmpty {
                    onExtensionFrame = { [self] link, kind, payload in extensionFrame(from: link, kind: kind, payload: payload) }
                }
                peers = PeerTransport(loop: loop, config: peerConfig, log: { log("peers: \($0)") }, onFrame: { [self] from, kind, payload in
                    peerFrame(from: from, kind: kind, payload: payload)
                }, onExtensionFrame: onExtensionFrame)
                clients = FrameServer(loop: loop, config: clientConfig, log: { log("clients: \($0)") },
                                      onConnection: { [self] connection, handshake in if handshake == nil { forget(connection) } },
                                      onFrame: { [self] connection, kind, payload in clientFrame(connection, kind: kind, payload: payload) })
            } catch {
                return loop.makeFailedFuture(error)
            }
            let period = max(100, min(1_000, config.batchDelayMicrosecondsMax == 0 ? 1_000 : config.batchDelayMicrosecondsMax))
            ticker = loop.scheduleRepeatedTask(initialDelay: .microseconds(Int64(period)), delay: .microseconds(Int64(period))) { [self] _ in
                guard node != nil else { return }
                carryOut(node!.tick(now: Self.now()))
                forwardExtensionSteps()
            }
            // Before the first frame: a replica restarted during a partition stays cut off.
            reloadControl()
            return peers!.start().and(clients!.start()).map { (peer: $0, client: $1) }
        }
    }

    /// Reads the control file (on the calling thread) and applies its blocked peers to the peer
    /// transport (on the loop). A malformed file is logged and ignored: the previous blocking
    /// stays. Without a control file, nothing happens.
    public func reloadControl() {
        guard let controlFile else { return }
        let control: ReplicaControl
        do {
            control = try ReplicaControl.read(path: controlFile, replica: replica, replicas: cluster.groups[group].replicas.count)
        } catch {
            log("ignored the control file: \(error)")
            return
        }
        loop.execute { [self] in
            guard let peers, control.blockedPeers != blockedPeers else { return }
            blockedPeers = control.blockedPeers
            peers.block(control.blockedPeers)
            log(control.blockedPeers.isEmpty ? "control: no peer blocked"
                : "control: blocked peers " + control.blockedPeers.sorted().map { "r\($0)" }.joined(separator: " "))
        }
    }

    /// Stops listening and closes the files (what is buffered is written and synced).
    public func stop() -> EventLoopFuture<Void> {
        loop.flatSubmit { [self] in
            ticker?.cancel()
            ticker = nil
            node?.waitForExecutionLane()
            forwarder = nil
            if let extensionLink { _ = extensionLink.close() }
            let stopped = [peers?.stop(), clients?.stop()].compactMap { $0 }
            return EventLoopFuture.andAllComplete(stopped, on: loop).map { [self] in
                if let file = storage?.file {
                    do {
                        try file.close()
                    } catch {
                        log("closing the storage failed: \(error)")
                    }
                }
                node = nil
            }
        }
    }

    static func now() -> Instant { Instant(nanoseconds: NIODeadline.now().uptimeNanoseconds) }

    private func open() throws {
        let recovered: RecoveredState
        if settings.durability == .none {
            storage = HostStorage(memory: MemoryStorage())
            recovered = storage!.recovered!
        } else {
            guard let root = settings.dataDirectory else {
                throw ServerError.unsupported("durability \(settings.durability.rawValue) needs the group's data_dir in the cluster file")
            }
            let directory = URL(fileURLWithPath: root).appendingPathComponent("r\(replica)").path
            let (file, found) = try FileReplicaStorage.open(
                directory: directory, mode: settings.durability,
                onDurable: { [self] position in loop.execute { self.durable(position) } },
                onFailure: { [self] error in loop.execute { self.storageFailed(error) } })
            storage = HostStorage(file: file)
            recovered = found
            if let checkpoint = found.checkpoint {
                log("recovered the checkpoint at slot \(checkpoint.slot) and \(found.records.count) records after it from \(directory)")
            } else if !found.records.isEmpty {
                log("recovered \(found.records.count) records from \(directory)")
            }
        }
        node = try ReplicaNode.recover(config: config, id: ReplicaID(replica), now: Self.now(), storage: storage!, recovered: recovered,
                                       execution: WorkloadRunner.executionConfig(group: settings),
                                       extensionOrigin: extensionTarget == nil ? nil : UInt32(group),
                                       checkpointIntervalSlots: settings.checkpointIntervalSlots)
        node!.checkpointIntervalCommands = settings.checkpointIntervalCommands
        node!.encodesCheckpointsInline = false
        // The loop serves clients: slots a checkpoint covers are forgotten a little per input.
        node!.compactionStepSlots = 1_024
        node!.executesInline = false
        node!.stageClock = { Self.now() }
    }

    // MARK: Inputs

    private func peerFrame(from peer: Int, kind: UInt8, payload: [UInt8]) {
        guard node != nil else { return }
        guard case let .paxos(message)? = try? WireFormat.decode(kind: kind, payload: payload, limits: limits.codec) else {
            // The transport checked the handshake; a peer of this cluster that sends garbage is
            // broken, and its frame is dropped rather than trusted.
            counters.peerFramesRefused += 1
            log("dropped an undecodable frame of kind \(kind) from r\(peer)")
            return
        }
        counters.peerMessagesReceived += 1
        carryOut(node!.receive(message, from: ReplicaID(peer), now: Self.now()))
    }

    private func clientFrame(_ connection: ConnectionID, kind: UInt8, payload: [UInt8]) {
        let request: Request
        let sampled: Bool
        do {
            switch try WireFormat.decode(kind: kind, payload: payload, limits: limits.codec) {
            case let .request(decoded): (request, sampled) = (decoded, false)
            case let .sampledRequest(decoded): (request, sampled) = (decoded, true)
            default:
                refuse(connection, "frame kind \(kind) is not a request")
                return
            }
        } catch {
            refuse(connection, "\(error)")
            return
        }
        if let refusal = ClientPortPolicy.admit(request) {
            // Extension steps come from the origin group's replicas, never from a client (one
            // that sends them could forge another group's history); sessions open under nonces.
            counters.clientFramesRefused += 1
            log("refused a request from \(connection): \(request.command) is not permitted on the client port")
            clients?.send(to: connection, frame: WireFormat.encode(.reply(ClientReply(client: request.client, sequence: request.sequence, reply: refusal))))
            return
        }
        guard node != nil else {
            // Not running (its storage failed): send the client elsewhere at once.
            clients?.send(to: connection, frame: WireFormat.encode(.redirect(Redirect(answering: request, reason: .unavailable, replica: nil))))
            return
        }
        counters.clientRequests += 1
        route(request.client, to: connection)
        carryOut(node!.clientRequest(request, now: Self.now(), sampled: sampled))
    }

    // MARK: Extension steps

    /// A frame on an extension link: only steps of the link's own origin group are taken.
    private func extensionFrame(from link: ExtensionLinkID, kind: UInt8, payload: [UInt8]) {
        guard case let .extensionStep(origin, index, entry)? = try? WireFormat.decode(kind: kind, payload: payload, limits: limits.codec),
              origin == link.group, index >= 1 else {
            counters.peerFramesRefused += 1
            log("refused a frame of kind \(kind) on \(link): only extension steps of group \(link.group) are taken there")
            return
        }
        guard node != nil else { return }
        counters.extensionStepsReceived += 1
        let request = Request(client: .extensionClient(origin: origin), sequence: index, command: .logAppendFrom(origin: origin, index: index, entry: entry))
        carryOut(node!.clientRequest(request, now: Self.now()))
    }

    /// Sends the forwarder's due steps to the target replica over its link, dialing it first
    /// when there is none. When a resend on one link did not help either (two in a row), the
    /// next replica of the target group takes over, with everything unapplied.
    private func forwardExtensionSteps() {
        guard var forwarder, let target = extensionTarget else { return }
        guard let link = extensionLink else {
            dialExtensionLink(target: target)
            return
        }
        let requests = forwarder.due(nowNanoseconds: NIODeadline.now().uptimeNanoseconds)
        if forwarder.resends >= extensionResendsAtMove + 2 {
            extensionResendsAtMove = forwarder.resends
            forwarder.rewind()
            self.forwarder = forwarder
            moveExtensionLink(target: target)
            return
        }
        self.forwarder = forwarder
        for request in requests {
            guard case let .logAppendFrom(origin, index, entry) = request.command else { continue }
            counters.extensionStepsSent += 1
            link.send(kind: FrameKind.extensionStep, payload: WireFormat.payload(of: .extensionStep(origin: origin, index: index, entry: entry)))
        }
    }

    /// Leaves the current target replica for the next one; what was sent on the old link counts
    /// as lost.
    private func moveExtensionLink(target: Int) {
        extensionTargetReplica = (extensionTargetReplica + 1) % cluster.groups[target].replicas.count
        forwarder?.rewind()
        if let extensionLink { _ = extensionLink.close() }
        extensionLink = nil
    }

    private func dialExtensionLink(target: Int) {
        guard !extensionDialing, forwarder != nil else { return }
        let address = cluster.groups[target].replicas[extensionTargetReplica].peer
        guard let socket = try? SocketAddress.makeAddressResolvingHost(address.host, port: address.port) else { return }
        extensionDialing = true
        let handshake = Handshake(cluster: identity, role: .extensionOrigin, group: UInt32(group), replica: UInt32(replica))
        FrameClient.connect(to: socket, on: loop, handshake: handshake, limits: limits, log: { [log] in log("extension link: \($0)") },
                            onFrame: { [self] kind, payload in
            guard case let .extensionApplied(origin, _, applied)? = try? WireFormat.decode(kind: kind, payload: payload, limits: limits.codec),
                  origin == UInt32(group) else { return }
            forwarder?.acknowledged(applied: applied)
        }).whenComplete { [self] result in
            extensionDialing = false
            switch result {
            case let .success(client):
                guard forwarder != nil else {
                    _ = client.close()
                    return
                }
                extensionLink = client
                client.closeFuture.whenComplete { [self] _ in
                    loop.execute { [self] in
                        guard extensionLink === client else { return }
                        // Lost: the next replica of the target group takes the steps.
                        extensionLink = nil
                        moveExtensionLink(target: target)
                    }
                }
            case .failure:
                // Down: the next tick dials the next replica of the target group.
                moveExtensionLink(target: target)
            }
        }
    }

    private func refuse(_ connection: ConnectionID, _ reason: String) {
        counters.clientFramesRefused += 1
        log("refused \(connection): \(reason)")
        clients?.close(connection)
        forget(connection)
    }

    private func route(_ client: ClientID, to connection: ConnectionID) {
        if let old = replyRoutes[client], old != connection { routesByConnection[old]?.remove(client) }
        replyRoutes[client] = connection
        routesByConnection[connection, default: []].insert(client)
    }

    private func forget(_ connection: ConnectionID) {
        for client in routesByConnection.removeValue(forKey: connection) ?? [] where replyRoutes[client] == connection {
            replyRoutes[client] = nil
        }
    }

    // MARK: Effects

    private func carryOut(_ output: consuming NodeOutput) {
        if output.pendingCheckpoint != nil {
            // Encoded off the loop, which keeps serving, at low priority (`BackgroundQueue`).
            BackgroundQueue.checkpoints.encode(output.takePendingCheckpoint()!) { [self] encoded in
                loop.execute { [self] in node?.checkpointEncoded(encoded) }
            }
        }
        for job in output.executions {
            // Executed on the executor's lane while this loop goes on with consensus.
            job.runOnLane { [self] outcome in
                loop.execute { [self] in
                    guard node != nil else { return }
                    carryOut(node!.executed(outcome, now: Self.now()))
                }
            }
        }
        for delivery in output.deliveries {
            if case let .batch(requests) = delivery.value {
                counters.batchesDelivered += 1
                counters.commandsExecuted += UInt64(requests.count)
            }
        }
        counters.checkpoints += UInt64(output.checkpoints.count)
        if let transfer = output.stateTransfer {
            counters.stateTransfers += 1
            log(String(format: "installed r%d's checkpoint at slot %llu: %d bytes in %d chunks, %.1f ms", transfer.from.rawValue, transfer.slot,
                       transfer.bytes, transfer.chunks, Double(transfer.microseconds) / 1_000))
        }
        guard let storage else { return }
        for effects in gate.pass(output, durablePosition: storage.durablePosition) { send(effects) }
    }

    private func durable(_ position: UInt64) {
        guard node != nil else { return }
        for effects in gate.release(durablePosition: position) { send(effects) }
    }

    private func storageFailed(_ error: StorageError) {
        log("stopping: the storage failed: \(error)")
        node = nil
        gate = EffectGate()
    }

    private func send(_ effects: NodeEffects) {
        for outgoing in effects.messages {
            counters.peerMessagesSent += 1
            peers?.send(to: outgoing.to.rawValue, frame: WireFormat.encode(.paxos(outgoing.message)))
        }
        for put in effects.extensionSteps {
            let step = ExtensionStep(origin: UInt32(group), index: put.index, key: put.key, value: put.value)
            forwarder?.produced(index: step.index, entry: step.entry)
        }
        for var reply in effects.replies {
            if ClientID.extensionRange.contains(reply.client.rawValue) {
                // Every replica of the origin connected here learns how far the log got: a backup
                // that hears of progress made by others stays passive.
                let origin = UInt32(reply.client.rawValue - ClientID.extensionRange.lowerBound)
                guard case let .extensionStep(_, applied) = reply.reply else { continue }
                peers?.send(toExtensionLinksOf: origin, frame: WireFormat.encode(.extensionApplied(origin: origin, index: reply.sequence, applied: applied)))
                continue
            }
            guard let connection = replyRoutes[reply.client] else { continue }
            reply.stages?.released(atNanoseconds: Self.now().nanoseconds)
            counters.clientReplies += 1
            clients?.send(to: connection, frame: WireFormat.encode(.reply(reply)))
        }
    }

    /// Counters with the storage's and the links', read on the loop.
    /// The process's CPU time so far (all threads), so that a run can state CPU per command.
    static func processCPU() -> String {
        var usage = rusage()
        guard getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage) == 0 else { return "cpu unknown" }
        let user = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
        let system = Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        return String(format: "cpu user %.3f s, system %.3f s; voluntary context switches %ld", user, system, usage.ru_nvcsw)
    }

    public func report() -> EventLoopFuture<String> {
        loop.flatSubmit { [self] in
            let stats = storage?.file?.stats
            let linkCounters = peers?.counters() ?? loop.makeSucceededFuture([:])
            return linkCounters.map { [self] links in
                let sent = links.values.reduce(into: (frames: UInt64(0), bytes: UInt64(0))) { $0.frames += UInt64($1.framesSent); $0.bytes += UInt64($1.bytesSent) }
                let received = links.values.reduce(into: (frames: UInt64(0), bytes: UInt64(0))) { $0.frames += UInt64($1.framesReceived); $0.bytes += UInt64($1.bytesReceived) }
                let blockedSent = links.values.reduce(0) { $0 + $1.framesBlockedSent }
                let blockedReceived = links.values.reduce(0) { $0 + $1.framesBlockedReceived }
                return "counters: peer messages sent \(sent.frames) (\(sent.bytes) bytes), received \(received.frames) (\(received.bytes) bytes); "
                    + "peer frames blocked sent \(blockedSent), received \(blockedReceived); "
                    + "client requests \(counters.clientRequests), replies \(counters.clientReplies), refused frames \(counters.clientFramesRefused + counters.peerFramesRefused); "
                    + "batches \(counters.batchesDelivered), commands executed \(counters.commandsExecuted); "
                    + "slots opened \(node?.core.horizon ?? 0), skips ahead \(node?.core.skipsAhead ?? 0); checkpoints \(counters.checkpoints), state transfers \(counters.stateTransfers); "
                    + "extension steps sent \(counters.extensionStepsSent), received \(counters.extensionStepsReceived); "
                    + "syncs \(stats?.syncs ?? 0), records synced \(stats?.recordsSynced ?? 0); "
                    + Self.processCPU()
            }
        }
    }
}

/// What a replica server counts (reported on request and at exit).
public struct ServerCounters: Hashable, Sendable {
    public var peerMessagesSent: UInt64 = 0
    public var peerMessagesReceived: UInt64 = 0
    public var peerFramesRefused: UInt64 = 0
    public var clientRequests: UInt64 = 0
    public var clientReplies: UInt64 = 0
    public var clientFramesRefused: UInt64 = 0
    public var batchesDelivered: UInt64 = 0
    public var commandsExecuted: UInt64 = 0
    public var checkpoints: UInt64 = 0
    public var stateTransfers: UInt64 = 0
    public var extensionStepsSent: UInt64 = 0
    public var extensionStepsReceived: UInt64 = 0
}

public enum ServerError: Error, CustomStringConvertible {
    case unsupported(String)

    public var description: String {
        switch self {
        case let .unsupported(reason): reason
        }
    }
}
