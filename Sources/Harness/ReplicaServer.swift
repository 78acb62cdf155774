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
/// Everything runs on one event loop: inputs from peers, clients, the tick timer and the sync
/// thread's durability reports (hopped onto it). That confinement is what makes the unchecked
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

    /// - Parameter log: one line per notable event (refusals, state transfers, failures).
    public init(cluster: ClusterSpec, group: Int, replica: Int, loop: EventLoop, log: @escaping @Sendable (String) -> Void) throws {
        precondition(cluster.groups.indices.contains(group) && cluster.groups[group].replicas.indices.contains(replica),
                     "replica \(replica) of group \(group) is not in the cluster file")
        self.cluster = cluster
        self.group = group
        self.replica = replica
        self.loop = loop
        self.log = log
        let settings = cluster.groups[group].settings
        guard let config = try WorkloadRunner.paxosConfig(group: settings) else {
            throw ServerError.unsupported("protocol unreplicated has no replicas to run as processes")
        }
        self.config = config
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
                let peerConfig = PeerTransportConfig(cluster: identity, group: UInt32(group), replica: replica,
                                                     listenAddress: try SocketAddress.makeAddressResolvingHost(me.peer.host, port: me.peer.port),
                                                     peers: peerAddresses, limits: limits, jitterSeed: UInt64(replica + 1))
                let clientConfig = FrameServerConfig(cluster: identity, group: UInt32(group),
                                                     listenAddress: try SocketAddress.makeAddressResolvingHost(me.client.host, port: me.client.port),
                                                     limits: limits)
                let log = self.log
                peers = PeerTransport(loop: loop, config: peerConfig, log: { log("peers: \($0)") }, onFrame: { [self] from, kind, payload in
                    peerFrame(from: from, kind: kind, payload: payload)
                })
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
            }
            return peers!.start().and(clients!.start()).map { (peer: $0, client: $1) }
        }
    }

    /// Stops listening and closes the files (what is buffered is written and synced).
    public func stop() -> EventLoopFuture<Void> {
        loop.flatSubmit { [self] in
            ticker?.cancel()
            ticker = nil
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
                                       checkpointIntervalSlots: settings.checkpointIntervalSlots)
        node!.encodesCheckpointsInline = false
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

    private func carryOut(_ output: NodeOutput) {
        if let pending = output.pendingCheckpoint {
            // Encoded off the loop, which keeps serving.
            DispatchQueue.global().async { [self] in
                let bytes = pending.encode()
                loop.execute { [self] in node?.checkpointEncoded(pending, bytes: bytes) }
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
        for var reply in effects.replies {
            guard let connection = replyRoutes[reply.client] else { continue }
            reply.stages?.released(atNanoseconds: Self.now().nanoseconds)
            counters.clientReplies += 1
            clients?.send(to: connection, frame: WireFormat.encode(.reply(reply)))
        }
    }

    /// Counters with the storage's and the links', read on the loop.
    public func report() -> EventLoopFuture<String> {
        loop.flatSubmit { [self] in
            let stats = storage?.file?.stats
            let linkCounters = peers?.counters() ?? loop.makeSucceededFuture([:])
            return linkCounters.map { [self] links in
                let sent = links.values.reduce(into: (frames: UInt64(0), bytes: UInt64(0))) { $0.frames += UInt64($1.framesSent); $0.bytes += UInt64($1.bytesSent) }
                let received = links.values.reduce(into: (frames: UInt64(0), bytes: UInt64(0))) { $0.frames += UInt64($1.framesReceived); $0.bytes += UInt64($1.bytesReceived) }
                return "counters: peer messages sent \(sent.frames) (\(sent.bytes) bytes), received \(received.frames) (\(received.bytes) bytes); "
                    + "client requests \(counters.clientRequests), replies \(counters.clientReplies), refused frames \(counters.clientFramesRefused + counters.peerFramesRefused); "
                    + "batches \(counters.batchesDelivered), commands executed \(counters.commandsExecuted); checkpoints \(counters.checkpoints), state transfers \(counters.stateTransfers); "
                    + "syncs \(stats?.syncs ?? 0), records synced \(stats?.recordsSynced ?? 0)"
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
}

public enum ServerError: Error, CustomStringConvertible {
    case unsupported(String)

    public var description: String {
        switch self {
        case let .unsupported(reason): reason
        }
    }
}
