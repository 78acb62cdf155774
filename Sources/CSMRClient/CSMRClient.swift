import Composition
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Primitives
import Services
import Transport
import Wire

/// A client of a csmr cluster over TCP (the protocol is docs/protocol.md).
///
///     let client = try await CSMRClient.connect(cluster: ClusterEndpoints(cluster: "demo", ports: [7101, 7102, 7103]))
///     try await client.kv.put("k", "v")
///     let value = try await client.kv.get("k")
///     await client.close()
///
/// Calls are exactly-once: each runs in a session, under a sequence number, and a request
/// unanswered after `retryTimeout` goes again, unchanged, to the group's next replica, whose
/// session table answers a retry of an executed request with the stored reply. Routing, sessions,
/// retries and redirects are `ProxyCore`'s; this class carries out its directives on one event
/// loop.
///
/// Pipelining: every replica gets one connection, shared by all calls. The client keeps
/// `options.sessions` sessions; a session has at most one request outstanding per group (its
/// replicas keep only the latest reply per session), so up to `sessions` calls per group are in
/// flight at once and further calls wait behind the least busy session. Lock calls always use the
/// session their lock name hashes to, so a lock acquired through this client is released by it:
/// locks belong to the client, not to the task that called.
///
/// Call `close()` when done: it fails calls still running with `closed`, closes the connections
/// and stops the client's thread.
public final class CSMRClient: @unchecked Sendable {
    // Sendable: everything mutable below is touched only on `loop`.
    public let endpoints: ClusterEndpoints
    public let options: CSMRClientOptions
    private let group: MultiThreadedEventLoopGroup
    private let loop: EventLoop
    private let addresses: [[SocketAddress]]

    private struct Session {
        var core: ProxyCore
        var calls: [ProxyCore.OperationID: CheckedContinuation<Reply, any Error>] = [:]
    }

    private enum Link {
        /// Not connected; the last dial failed at this time, if it did.
        case idle(failedAtNanoseconds: UInt64?)
        /// Dialing; payloads of request frames to send once connected.
        case connecting([[UInt8]])
        case connected(FrameClient)
    }

    /// Whether calls are still taken; read off the loop, so behind a lock. Once false, nothing
    /// is submitted to the loop any more, which may be shut down.
    private let open = NIOLockedValueBox(true)
    private var sessions: [Session] = []
    private var links: [[Link]]
    /// Dials under way, which `close` waits for before it stops the loop they complete on.
    private var dials: [UInt64: EventLoopFuture<Void>] = [:]
    private var dialsStarted: UInt64 = 0
    private var ticker: RepeatedTask?
    private var closed = false

    /// Frames queued per replica while its connection is being dialed.
    private static let framesWhileDialingMax = 4_096

    private init(endpoints: ClusterEndpoints, options: CSMRClientOptions, addresses: [[SocketAddress]]) {
        self.endpoints = endpoints
        self.options = options
        self.addresses = addresses
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        loop = group.next()
        links = addresses.map { Array(repeating: .idle(failedAtNanoseconds: nil), count: $0.count) }
    }

    /// Connects to every replica of every group and opens nothing else yet: sessions open with
    /// each group's first call. Throws `unreachable` if no replica of some group accepts a
    /// connection.
    public static func connect(cluster endpoints: ClusterEndpoints, options: CSMRClientOptions = CSMRClientOptions()) async throws -> CSMRClient {
        if let problem = endpoints.problem { throw CSMRClientError.invalidEndpoints(problem) }
        precondition(options.sessions >= 1 && options.waitingCallsMax >= 1, "sessions and waitingCallsMax must be at least 1")
        let addresses: [[SocketAddress]]
        do {
            addresses = try endpoints.groups.map { try $0.map { try SocketAddress.makeAddressResolvingHost($0.host, port: $0.port) } }
        } catch {
            throw CSMRClientError.invalidEndpoints("\(error)")
        }
        let client = CSMRClient(endpoints: endpoints, options: options, addresses: addresses)
        let unreachable = try await client.loop.flatSubmit { client.start() }.get()
        if let unreachable {
            await client.close()
            throw CSMRClientError.unreachable(group: unreachable)
        }
        return client
    }

    /// Runs `command` exactly once and returns its reply (a refusal is a `.failure` reply here;
    /// the typed calls throw it). `timeout` bounds the call, retries included.
    public func execute(_ command: Command, timeout: Duration? = nil) async throws -> Reply {
        guard command.usesSession else { throw CSMRClientError.notAClientCommand(command) }
        let timeoutNanoseconds = (timeout ?? options.callTimeout).nanoseconds
        return try await withCheckedThrowingContinuation { continuation in
            open.withLockedValue { open in
                guard open else { return continuation.resume(throwing: CSMRClientError.closed) }
                loop.execute { self.start(command, timeoutNanoseconds: timeoutNanoseconds, continuation) }
            }
        }
    }

    /// Fails the calls still running, closes every connection and stops the client's thread.
    /// Calling it again does nothing.
    public func close() async {
        let wasOpen = open.withLockedValue { open in
            defer { open = false }
            return open
        }
        guard wasOpen else { return }
        let closing: EventLoopFuture<Void> = loop.flatSubmit { self.shutDown() }
        try? await closing.get()
        try? await group.shutdownGracefully()
    }

    public var kv: KeyValueCalls { KeyValueCalls(client: self) }
    public var lock: LockCalls { LockCalls(client: self) }
    public var log: LogCalls { LogCalls(client: self) }

    // MARK: On the loop

    private func now() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

    /// Builds the sessions, dials everything, starts the ticker; the group no replica of which
    /// answered, if any.
    private func start() -> EventLoopFuture<Int?> {
        var random: any RandomNumberGenerator = options.nonceSeed.map { SplitMix64(seed: $0) as any RandomNumberGenerator }
            ?? SystemRandomNumberGenerator()
        let router = Router(spec: endpoints.composition)
        let counts = addresses.map(\.count)
        for index in 0..<options.sessions {
            // Sessions start at different replicas, so load spreads before the first retry.
            let config = ProxyCore.Config(replicaCounts: counts, firstReplicas: counts.map { index % $0 },
                                          retryTimeoutNanoseconds: options.retryTimeout.nanoseconds, waitingCommandsMax: options.waitingCallsMax)
            sessions.append(Session(core: ProxyCore(nonce: .nonce(using: &random), router: router, config: config)))
        }
        let tick = TimeAmount.nanoseconds(Int64(options.tickInterval.nanoseconds))
        ticker = loop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { _ in self.tick() }
        var groupDials: [EventLoopFuture<Bool>] = []
        for group in addresses.indices {
            let replicas = addresses[group].indices.map { dial(group: group, replica: $0) }
            groupDials.append(EventLoopFuture.whenAllComplete(replicas, on: loop).map { results in
                results.contains { if case .success(true) = $0 { true } else { false } }
            })
        }
        return EventLoopFuture.whenAllSucceed(groupDials, on: loop).map { reached in reached.firstIndex(of: false) }
    }

    private func start(_ command: Command, timeoutNanoseconds: UInt64, _ continuation: CheckedContinuation<Reply, any Error>) {
        guard !closed else {
            continuation.resume(throwing: CSMRClientError.closed)
            return
        }
        let index: Int
        switch command {
        case let .lockAcquire(name), let .lockRelease(name):
            index = Int(Digest(of: name.utf8).value % UInt64(sessions.count))
        default:
            index = sessions.indices.min { sessions[$0].calls.count < sessions[$1].calls.count }!
        }
        let now = now()
        let submission = sessions[index].core.submit(command, nowNanoseconds: now, deadlineNanoseconds: now &+ timeoutNanoseconds)
        sessions[index].calls[submission.operation] = continuation
        carryOut(submission.directives, session: index)
    }

    private func tick() {
        let now = now()
        for index in sessions.indices { carryOut(sessions[index].core.tick(nowNanoseconds: now), session: index) }
    }

    private func carryOut(_ directives: [ProxyCore.Directive], session index: Int) {
        for directive in directives {
            switch directive {
            case let .send(request, group, replica):
                send(WireFormat.payload(of: .request(request)), group: group, replica: replica)
            case let .completed(operation, _, reply):
                sessions[index].calls.removeValue(forKey: operation)?.resume(returning: reply)
            case let .failed(operation, _, failure):
                let error: CSMRClientError = switch failure {
                case let .timedOut(sent): .timedOut(sent: sent)
                case .queueFull: .busy
                }
                sessions[index].calls.removeValue(forKey: operation)?.resume(throwing: error)
            }
        }
    }

    /// Sends a request frame, dialing first if needed. A frame for a replica that cannot be
    /// reached is dropped: the session's retry timer sends it elsewhere.
    private func send(_ payload: [UInt8], group: Int, replica: Int) {
        switch links[group][replica] {
        case let .connected(connection):
            connection.send(kind: FrameKind.request, payload: payload)
        case var .connecting(queued):
            if queued.count < Self.framesWhileDialingMax { queued.append(payload) }
            links[group][replica] = .connecting(queued)
        case let .idle(failedAt):
            if let failedAt, now() &- failedAt < options.redialDelay.nanoseconds { return }
            _ = dial(group: group, replica: replica, first: payload)
        }
    }

    /// Dials one replica; the future says whether it connected.
    private func dial(group: Int, replica: Int, first: [UInt8]? = nil) -> EventLoopFuture<Bool> {
        links[group][replica] = .connecting(first.map { [$0] } ?? [])
        let handshake = Handshake(cluster: endpoints.cluster, role: .client, group: UInt32(group))
        let address = addresses[group][replica]
        let log = options.log
        let delays = options.linkDelayMicroseconds
        let delay = delays.indices.contains(group) && delays[group].indices.contains(replica) ? max(0, delays[group][replica]) : 0
        let connected = FrameClient.connect(to: address, on: loop, handshake: handshake, delayMicroseconds: delay, log: log) { kind, payload in
            self.received(kind: kind, payload: payload, group: group)
        }.hop(to: loop).map { connection -> Bool in
            guard !self.closed, case let .connecting(queued) = self.links[group][replica] else {
                connection.channel.close(promise: nil)
                return false
            }
            self.links[group][replica] = .connected(connection)
            for payload in queued { connection.send(kind: FrameKind.request, payload: payload) }
            // The channel lives on `loop`, so this runs there.
            connection.closeFuture.whenComplete { _ in
                guard case let .connected(current) = self.links[group][replica], current === connection else { return }
                log("connection to group \(group) replica \(replica) (\(address)) closed")
                self.links[group][replica] = .idle(failedAtNanoseconds: nil)
                self.lost(group: group, replica: replica)
            }
            return true
        }.recover { error in
            if !self.closed { log("cannot connect to group \(group) replica \(replica) (\(address)): \(error)") }
            self.links[group][replica] = .idle(failedAtNanoseconds: self.now())
            self.lost(group: group, replica: replica)
            return false
        }
        let dial = dialsStarted
        dialsStarted += 1
        dials[dial] = connected.map { _ in }
        connected.whenComplete { _ in self.dials[dial] = nil }
        return connected
    }

    /// A replica cannot be reached: the sessions waiting on it move on now. Frames to it are
    /// dropped until `redialDelay` has passed, so this cannot cycle without bound.
    private func lost(group: Int, replica: Int) {
        guard !closed else { return }
        let now = now()
        for index in sessions.indices {
            carryOut(sessions[index].core.unreachable(group: group, replica: replica, nowNanoseconds: now), session: index)
        }
    }

    private func received(kind: UInt8, payload: [UInt8], group: Int) {
        let message: Message
        do {
            message = try WireFormat.decode(kind: kind, payload: payload)
        } catch {
            options.log("dropping a frame of kind \(kind) from group \(group): \(error)")
            return
        }
        let now = now()
        switch message {
        case let .reply(reply):
            guard let index = sessions.firstIndex(where: { $0.core.owns(reply.client, group: group) }) else { return }
            carryOut(sessions[index].core.receive(reply, group: group, nowNanoseconds: now), session: index)
        case let .redirect(redirect):
            guard let index = sessions.firstIndex(where: { $0.core.owns(redirect.client, group: group) }) else { return }
            carryOut(sessions[index].core.redirected(client: redirect.client, sequence: redirect.sequence, group: group,
                                                      toReplica: redirect.replica.map(Int.init), nowNanoseconds: now), session: index)
        case .request, .sampledRequest, .paxos, .extensionStep, .extensionApplied:
            options.log("dropping a frame of kind \(kind) from group \(group): replicas do not send it to clients")
        }
    }

    private func shutDown() -> EventLoopFuture<Void> {
        closed = true
        ticker?.cancel()
        for index in sessions.indices {
            for continuation in sessions[index].calls.values { continuation.resume(throwing: CSMRClientError.closed) }
            sessions[index].calls = [:]
        }
        var closing = Array(dials.values)
        for group in links.indices {
            for replica in links[group].indices {
                if case let .connected(connection) = links[group][replica] { closing.append(connection.close()) }
                links[group][replica] = .idle(failedAtNanoseconds: nil)
            }
        }
        return EventLoopFuture.andAllComplete(closing, on: loop)
    }
}
