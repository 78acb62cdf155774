import Composition
import Foundation
import NIOCore
import NIOPosix
import Primitives
import Services
import Transport
import Wire
import Workload

/// The composition proxy as a server: it speaks the client protocol (docs/protocol.md) on one
/// port, so a composed service looks like one group to its clients, and routes every command with
/// the composition's `Router` to a replica of the group that serves it.
///
/// Sessions. A client opens a session at the proxy; the proxy answers it itself, and keeps for it
/// a `ProxyCore` with sessions of its own in every group. The client's requests are numbered in
/// its proxy session; the proxy answers a retry of the latest one from its cache (or not at all
/// while it is still running) and submits each new one once to the core, which retries it toward
/// the group with the same group sequence until it is answered. So a command runs at most once
/// per client request, and exactly once while the proxy lives. A restarted proxy knows no session:
/// clients get `sessionExpired` and open a new one (a command in flight when it died may or may
/// not have run, as with any client whose session expired).
///
/// Everything runs on one event loop (client server, group connections, timers), which is what
/// makes the unchecked `Sendable` sound.
public final class ProxyServer: @unchecked Sendable {
    public let cluster: ClusterSpec
    public let loop: EventLoop
    private let router: Router
    private let listen: ClusterSpec.Address
    private let log: @Sendable (String) -> Void
    private var server: FrameServer?
    private var backends: [[FrameClient?]]
    private var dialing: [[Bool]]
    private var sessions: [ClientID: ProxySession] = [:]
    /// Opened sessions by the nonce that opened them, so a retried open gets the same session.
    private var openedBy: [ClientID: ClientID] = [:]
    /// The proxy session behind each group session the cores opened.
    private var owners: [[ClientID: ClientID]]
    private var random = SystemRandomNumberGenerator()
    private var ticker: RepeatedTask?
    private var stopping = false
    public private(set) var requestsRouted: UInt64 = 0
    /// Sessions kept; the least recently used idle one goes first beyond this.
    public static let sessionsMax = 65_536

    private struct ProxySession {
        var core: ProxyCore
        var connection: ConnectionID
        var lastSequence: UInt64 = 0
        /// The reply to `lastSequence`, once it has one.
        var lastReply: Reply?
        var operation: ProxyCore.OperationID?
        var lastUsedNanoseconds: UInt64
    }

    public init(cluster: ClusterSpec, composition: CompositionSpec, listen: ClusterSpec.Address, loop: EventLoop,
                log: @escaping @Sendable (String) -> Void) throws {
        guard composition.groups.count == cluster.groups.count else {
            throw ServerError.unsupported("the composition has \(composition.groups.count) groups, the cluster file \(cluster.groups.count)")
        }
        self.cluster = cluster
        self.loop = loop
        self.listen = listen
        self.log = log
        router = Router(spec: composition)
        backends = cluster.groups.map { Array(repeating: nil, count: $0.replicas.count) }
        dialing = cluster.groups.map { Array(repeating: false, count: $0.replicas.count) }
        owners = cluster.groups.map { _ in [:] }
    }

    static func now() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

    public func start() -> EventLoopFuture<SocketAddress> {
        loop.flatSubmit { [self] in
            let address: SocketAddress
            do {
                address = try SocketAddress.makeAddressResolvingHost(listen.host, port: listen.port)
            } catch {
                return loop.makeFailedFuture(error)
            }
            // Clients see one group: the proxy presents group 0.
            let config = FrameServerConfig(cluster: ClusterIdentity(name: cluster.name), group: 0, listenAddress: address)
            let log = self.log
            server = FrameServer(loop: loop, config: config, log: { log("clients: \($0)") },
                                 onFrame: { [self] connection, kind, payload in clientFrame(connection, kind: kind, payload: payload) })
            ticker = loop.scheduleRepeatedTask(initialDelay: .milliseconds(20), delay: .milliseconds(20)) { [self] _ in tick() }
            for group in cluster.groups.indices {
                for replica in cluster.groups[group].replicas.indices { dial(group: group, replica: replica) }
            }
            return server!.start()
        }
    }

    public func stop() -> EventLoopFuture<Void> {
        loop.flatSubmit { [self] in
            stopping = true
            ticker?.cancel()
            for client in backends.joined().compactMap({ $0 }) { _ = client.close() }
            return server?.stop() ?? loop.makeSucceededFuture(())
        }
    }

    // MARK: Clients

    private func clientFrame(_ connection: ConnectionID, kind: UInt8, payload: [UInt8]) {
        let request: Request
        switch try? WireFormat.decode(kind: kind, payload: payload) {
        // The proxy carries no stage times: a sampled request is served as a plain one (its
        // reply comes back as kind 2, which docs/protocol.md allows).
        case let .request(decoded)?, let .sampledRequest(decoded)?: request = decoded
        default:
            log("refused \(connection): frame kind \(kind) is not a request")
            server?.close(connection)
            return
        }
        let now = Self.now()
        if let refusal = ClientPortPolicy.admit(request) {
            answer(connection, ClientReply(client: request.client, sequence: request.sequence, reply: refusal))
            return
        }
        if case .openSession = request.command {
            let session = openedBy[request.client] ?? openSession(by: request.client, connection: connection, now: now)
            answer(connection, ClientReply(client: request.client, sequence: request.sequence, reply: .session(session)))
            return
        }
        guard var session = sessions[request.client] else {
            answer(connection, ClientReply(client: request.client, sequence: request.sequence, reply: .failure(.sessionExpired)))
            return
        }
        session.connection = connection
        session.lastUsedNanoseconds = now
        if request.sequence < session.lastSequence {
            sessions[request.client] = session
            answer(connection, ClientReply(client: request.client, sequence: request.sequence,
                                           reply: .failure(.staleSequence(sequence: request.sequence, latest: session.lastSequence))))
            return
        }
        if request.sequence == session.lastSequence {
            // A retry: the cached reply, or nothing while the command still runs.
            sessions[request.client] = session
            if let reply = session.lastReply { answer(connection, ClientReply(client: request.client, sequence: request.sequence, reply: reply)) }
            return
        }
        session.lastSequence = request.sequence
        session.lastReply = nil
        let submission = session.core.submit(request.command, nowNanoseconds: now)
        session.operation = submission.operation
        sessions[request.client] = session
        requestsRouted += 1
        carryOut(submission.directives, session: request.client)
    }

    private func openSession(by nonce: ClientID, connection: ConnectionID, now: UInt64) -> ClientID {
        if sessions.count >= Self.sessionsMax, let oldest = sessions.filter({ $0.value.core.isIdle }).min(by: { $0.value.lastUsedNanoseconds < $1.value.lastUsedNanoseconds }) {
            sessions[oldest.key] = nil
            openedBy = openedBy.filter { $0.value != oldest.key }
        }
        var id: ClientID
        repeat {
            id = ClientID(ClientID.sessionRange.lowerBound + random.next() % UInt64(ClientID.sessionRange.count))
        } while sessions[id] != nil
        let config = ProxyCore.Config(replicaCounts: cluster.groups.map(\.replicas.count),
                                      firstReplicas: cluster.groups.map { Int.random(in: 0..<$0.replicas.count, using: &random) })
        sessions[id] = ProxySession(core: ProxyCore(nonce: ClientID.nonce(using: &random), router: router, config: config),
                                    connection: connection, lastUsedNanoseconds: now)
        openedBy[nonce] = id
        return id
    }

    private func answer(_ connection: ConnectionID, _ reply: ClientReply) {
        server?.send(to: connection, frame: WireFormat.encode(.reply(reply)))
    }

    // MARK: Groups

    private func carryOut(_ directives: [ProxyCore.Directive], session id: ClientID) {
        var pending = directives
        while !pending.isEmpty {
            let directive = pending.removeFirst()
            switch directive {
            case let .send(request, group, replica):
                owners[group][request.client] = id
                if let backend = backends[group][replica] {
                    backend.send(kind: FrameKind.request, payload: WireFormat.payload(of: .request(request)))
                } else {
                    dial(group: group, replica: replica)
                    guard var session = sessions[id] else { continue }
                    pending += session.core.unreachable(group: group, replica: replica, nowNanoseconds: Self.now())
                    sessions[id] = session
                }
            case let .completed(operation, _, reply):
                guard var session = sessions[id], session.operation == operation else { continue }
                session.lastReply = reply
                session.operation = nil
                sessions[id] = session
                answer(session.connection, ClientReply(client: id, sequence: session.lastSequence, reply: reply))
            case let .failed(operation, command, failure):
                // Only a full queue fails (no deadlines are set): the client's retry submits again.
                log("\(command) (\(operation)) failed: \(failure)")
                if var session = sessions[id], session.operation == operation {
                    session.operation = nil
                    session.lastSequence -= 1
                    sessions[id] = session
                }
            }
        }
    }

    private func groupFrame(group: Int, kind: UInt8, payload: [UInt8]) {
        let now = Self.now()
        switch try? WireFormat.decode(kind: kind, payload: payload) {
        case let .reply(reply)?:
            guard let id = owners[group][reply.client], var session = sessions[id] else { return }
            let directives = session.core.receive(reply, group: group, nowNanoseconds: now)
            if case .session(let groupSession) = reply.reply { owners[group][groupSession] = id }
            sessions[id] = session
            carryOut(directives, session: id)
        case let .redirect(redirect)?:
            guard let id = owners[group][redirect.client], var session = sessions[id] else { return }
            let directives = session.core.redirected(client: redirect.client, sequence: redirect.sequence, group: group,
                                                     toReplica: redirect.replica.map(Int.init), nowNanoseconds: now)
            sessions[id] = session
            carryOut(directives, session: id)
        default:
            log("dropped an undecodable frame of kind \(kind) from group \(cluster.groups[group].name)")
        }
    }

    private func tick() {
        let now = Self.now()
        for id in Array(sessions.keys) where !(sessions[id]!.core.isIdle) {
            var session = sessions[id]!
            let directives = session.core.tick(nowNanoseconds: now)
            sessions[id] = session
            carryOut(directives, session: id)
        }
    }

    private func dial(group: Int, replica: Int) {
        guard !stopping, !dialing[group][replica], backends[group][replica] == nil else { return }
        let target = cluster.groups[group].replicas[replica].client
        guard let address = try? SocketAddress.makeAddressResolvingHost(target.host, port: target.port) else { return }
        dialing[group][replica] = true
        let handshake = Handshake(cluster: ClusterIdentity(name: cluster.name), role: .client, group: UInt32(group))
        FrameClient.connect(to: address, on: loop, handshake: handshake, log: { _ in }, onFrame: { [self] kind, payload in
            groupFrame(group: group, kind: kind, payload: payload)
        }).whenComplete { [self] result in
            dialing[group][replica] = false
            switch result {
            case let .success(client):
                backends[group][replica] = client
                client.closeFuture.whenComplete { [self] _ in
                    loop.execute { [self] in if backends[group][replica] === client { backends[group][replica] = nil } }
                }
            case .failure:
                // Dialed again when a request needs it (a core's `unreachable` moves on meanwhile).
                break
            }
        }
    }
}
