import Composition
import EtcdAPI
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Harness
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Primitives
import Services
import Workload

/// The load generator's view of an etcd v3 cluster: kv.get is a linearizable Range, kv.put a
/// Put, each a unary gRPC call.
///
/// Clients share channels: a channel is one `GRPCClient` (one HTTP/2 connection) to one member,
/// and carries the calls of every client mapped to it concurrently, as etcd's own Go client does;
/// channels go round robin over the members. The cluster is one group of one "replica" to the
/// driver: etcd routes inside (a follower forwards a Put to the leader and asks it for the read
/// index of a Range), so the driver never picks a member.
///
/// Sessions are the harness's, not etcd's: `openSession` is answered here with a fresh client id
/// and never reaches etcd, which has no session to de-duplicate a second copy of a Put. So every
/// request is called once and answered once: a copy the driver sends again (its retry timeout
/// passed while the call was out) is dropped, and a call that fails is answered with
/// `outcomeUnknown`, which the driver counts as an error and a recorded history keeps pending.
/// Only a Range is tried again first (at once, as etcd's Go client retries reads that fail
/// `unavailable`): it changes nothing, so a second copy cannot apply twice. A failed Put is never
/// resent, as the Go client does not resend one whose request may have left.
public final class EtcdTarget: LoadTarget, @unchecked Sendable {
    // Immutable after init except through the locks (the unchecked Sendable rests on that).
    public let router: Router
    public var groupCount: Int { 1 }
    public func replicaCount(of group: Int) -> Int { 1 }
    private let channels: [Channel]
    private let runs: [Task<Void, Never>]
    private let loopGroup: MultiThreadedEventLoopGroup
    private let onReply: @Sendable (Int, ClientReply) -> Void
    private let onEvent: @Sendable (String) -> Void
    /// Per client, the highest sequence called: a request at or below it is a copy.
    private let calledSequence = NIOLockedValueBox<[ClientID: UInt64]>([:])
    private let state = NIOLockedValueBox(State())
    /// The server's PINGs answered by `ServerPingAnswerer` (see there for why).
    private let pingsAnswered: NIOLockedValueBox<Int>

    private struct State {
        var sessionsOpened: UInt64 = 0
        var stopped = false
        var failures = 0
    }

    private struct Channel: Sendable {
        var endpoint: String
        var kv: Etcdserverpb_KV.Client<HTTP2ClientTransport.Posix>
        var client: GRPCClient<HTTP2ClientTransport.Posix>
    }

    /// - Parameters:
    ///   - endpoints: `host:port` client URLs of the members.
    ///   - channelCount: gRPC channels to open, spread round robin over `endpoints`.
    ///   - eventLoopThreads: threads for the channels' connections. One by default: on the 2-core
    ///     machine the members share, one thread got 0.79x the Go client's puts and gets at 64
    ///     clients where two got 0.66x (the calls' async steps run on the concurrency pool
    ///     anyway, and a second loop thread only added wake-ups); running the calls on the loop
    ///     thread itself (a task executor) used less CPU per call but got less done (0.60x).
    public init(endpoints: [String], channelCount: Int, eventLoopThreads: Int = 1,
                onReply: @escaping @Sendable (Int, ClientReply) -> Void, onEvent: @escaping @Sendable (String) -> Void) throws {
        precondition(!endpoints.isEmpty && channelCount > 0, "an etcd target needs endpoints and at least one channel")
        router = Router(spec: CompositionSpec(name: "etcd",
                                              groups: [CompositionSpec.Group(name: "etcd", replicas: 1, toleratedFailures: 0, mode: .multiLeader,
                                                                             services: [.kv])],
                                              extendPutsIntoLog: false, partition: nil))
        self.onReply = onReply
        self.onEvent = onEvent
        loopGroup = MultiThreadedEventLoopGroup(numberOfThreads: eventLoopThreads)
        var config = HTTP2ClientTransport.Posix.Config.defaults
        let pingsAnswered = NIOLockedValueBox(0)
        self.pingsAnswered = pingsAnswered
        config.channelDebuggingCallbacks.onCreateTCPConnection = { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(ServerPingAnswerer(answered: pingsAnswered), position: .first)
            }
        }
        var channels: [Channel] = []
        for index in 0..<channelCount {
            let endpoint = endpoints[index % endpoints.count]
            let transport = try HTTP2ClientTransport.Posix(target: try Self.resolvable(endpoint), transportSecurity: .plaintext,
                                                           config: config, eventLoopGroup: loopGroup)
            let client = GRPCClient(transport: transport)
            channels.append(Channel(endpoint: endpoint, kv: Etcdserverpb_KV.Client(wrapping: client), client: client))
        }
        self.channels = channels
        runs = channels.map { channel in
            Task { try? await channel.client.runConnections() }
        }
    }

    /// `host:port` as a gRPC target: an IPv4 address as is, anything else through DNS.
    static func resolvable(_ endpoint: String) throws -> any ResolvableTarget {
        guard let colon = endpoint.lastIndex(of: ":"), let port = Int(endpoint[endpoint.index(after: colon)...]) else {
            throw EtcdError.badEndpoint(endpoint)
        }
        let host = String(endpoint[..<colon])
        let isIPv4 = host.split(separator: ".").count == 4 && host.split(separator: ".").allSatisfy { UInt8($0) != nil }
        if isIPv4 { return .ipv4(address: host, port: port) }
        return .dns(host: host, port: port)
    }

    /// Returns once every channel has answered a Range, or throws after `seconds`.
    public func waitUntilServing(seconds: Double) async throws {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1_000))
        for channel in channels {
            var request = Etcdserverpb_RangeRequest()
            request.key = Data("csmr-health".utf8)
            var options = CallOptions.defaults
            options.timeout = .seconds(1)
            while true {
                do {
                    _ = try await channel.kv.range(request, options: options)
                    break
                } catch {
                    if ContinuousClock.now >= deadline {
                        throw EtcdError.notServing("\(channel.endpoint) did not answer a Range within \(seconds) s: \(error)")
                    }
                    try await Task.sleep(for: .milliseconds(200))
                }
            }
        }
    }

    public func start() {}

    public func submit(_ request: Request, group: Int, replica: Int) {
        switch request.command {
        case .openSession:
            let id = state.withLockedValue { state in
                state.sessionsOpened += 1
                return state.sessionsOpened
            }
            reply(ClientReply(client: request.client, sequence: request.sequence, reply: .session(ClientID(id))))
        case .kvGet, .kvPut:
            // Sequences of a client only grow (its session never expires), so a copy, whether its
            // first call is still out or already answered, is never called again.
            let isCopy = calledSequence.withLockedValue { called in
                if let latest = called[request.client], request.sequence <= latest { return true }
                called[request.client] = request.sequence
                return false
            }
            guard !isCopy else { return }
            let channel = channels[Int(request.client.rawValue % UInt64(channels.count))]
            Task { await call(request, on: channel) }
        default:
            // Refused when the workload was read (WorkloadSpec); answered, so a run never hangs on it.
            reply(ClientReply(client: request.client, sequence: request.sequence, reply: .failure(.notPermitted)))
        }
    }

    /// Calls of a Range that fails `unavailable` (its stream or connection closed), at most:
    /// tried again at once, so a closed stream costs no retry timeout.
    static let rangeAttemptsMax = 3

    private func call(_ request: Request, on channel: Channel) async {
        let answer: Reply
        switch request.command {
        case let .kvGet(key):
            // serializable stays false: a linearizable read (etcd's default).
            var range = Etcdserverpb_RangeRequest()
            range.key = Data(key.utf8)
            var attempt = 1
            while true {
                do {
                    let response = try await channel.kv.range(range)
                    answer = .value(response.kvs.first.map { String(decoding: $0.value, as: UTF8.self) })
                    break
                } catch {
                    let retry = attempt < Self.rangeAttemptsMax && (error as? RPCError)?.code == .unavailable
                        && !state.withLockedValue({ $0.stopped })
                    failed(request, on: channel, error: error, retried: retry)
                    guard retry else {
                        answer = .failure(.outcomeUnknown)
                        break
                    }
                    attempt += 1
                }
            }
        case let .kvPut(key, value):
            var put = Etcdserverpb_PutRequest()
            put.key = Data(key.utf8)
            put.value = Data(value.utf8)
            do {
                _ = try await channel.kv.put(put)
                answer = .stored
            } catch {
                failed(request, on: channel, error: error, retried: false)
                answer = .failure(.outcomeUnknown)
            }
        default:
            return
        }
        reply(ClientReply(client: request.client, sequence: request.sequence, reply: answer))
    }

    /// Counts a failed call and reports the 1st, 2nd, 4th, 8th…: visible, never a flood.
    private func failed(_ request: Request, on channel: Channel, error: any Error, retried: Bool) {
        let failures = state.withLockedValue { state in
            state.failures += 1
            return state.failures
        }
        if failures & (failures - 1) == 0 {
            onEvent("etcd \(channel.endpoint): \(request.command.operationName) failed (\(failures) so far)\(retried ? ", called again" : ""): \(error)")
        }
    }

    /// Calls that failed since the start, each attempt counted (the driver counts the requests
    /// answered `outcomeUnknown` among its errors).
    public var failedCalls: Int { state.withLockedValue { $0.failures } }

    /// The server's HTTP/2 PINGs answered since the start (grpc-go's flow-control probes).
    public var serverPingsAnswered: Int { pingsAnswered.withLockedValue { $0 } }

    private func reply(_ reply: ClientReply) {
        guard !state.withLockedValue({ $0.stopped }) else { return }
        onReply(0, reply)
    }

    public func stop() -> EventLoopFuture<Void> {
        state.withLockedValue { $0.stopped = true }
        let promise = loopGroup.next().makePromise(of: Void.self)
        let (channels, runs) = (channels, runs)
        Task.detached {
            for channel in channels { channel.client.beginGracefulShutdown() }
            // Calls still out finish first; a member that stopped answering is not waited for.
            let cutoff = Task {
                try? await Task.sleep(for: .seconds(5))
                for run in runs { run.cancel() }
            }
            for run in runs { await run.value }
            cutoff.cancel()
            promise.succeed()
        }
        return promise.futureResult
    }

    /// Ends the connections' threads; after `stop()` has completed.
    public func close() {
        try? loopGroup.syncShutdownGracefully()
    }

    /// etcd members are not crashed or paused by the run (refused when the workload is read).
    public func inject(_ action: TimedEvent.Action, group: Int) {}
}

public enum EtcdError: Error, CustomStringConvertible {
    case badEndpoint(String)
    case notServing(String)
    case notInstalled(String)
    case memberExited(String)

    public var description: String {
        switch self {
        case let .badEndpoint(endpoint): "etcd endpoint \(endpoint): expected host:port"
        case let .notServing(reason): "etcd is not serving: \(reason)"
        case let .notInstalled(binary): "\(binary) not found: install etcd with `bash scripts/setup --etcd` (Debian etcd-server) or set etcd.binary"
        case let .memberExited(reason): "an etcd member exited: \(reason)"
        }
    }
}
