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
/// and never reaches etcd. A request the driver sends again while its first copy is still out
/// (its retry timeout passed) is dropped: gRPC delivers the first or fails it, and etcd has no
/// session to de-duplicate a second Put.
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
    /// Per client, the sequence of its request in flight.
    private let inFlight = NIOLockedValueBox<[ClientID: UInt64]>([:])
    private let state = NIOLockedValueBox(State())

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
    ///   - eventLoopThreads: threads for the channels' connections.
    public init(endpoints: [String], channelCount: Int, eventLoopThreads: Int = 2,
                onReply: @escaping @Sendable (Int, ClientReply) -> Void, onEvent: @escaping @Sendable (String) -> Void) throws {
        precondition(!endpoints.isEmpty && channelCount > 0, "an etcd target needs endpoints and at least one channel")
        router = Router(spec: CompositionSpec(name: "etcd",
                                              groups: [CompositionSpec.Group(name: "etcd", replicas: 1, toleratedFailures: 0, mode: .multiLeader,
                                                                             services: [.kv])],
                                              extendPutsIntoLog: false, partition: nil))
        self.onReply = onReply
        self.onEvent = onEvent
        loopGroup = MultiThreadedEventLoopGroup(numberOfThreads: eventLoopThreads)
        var channels: [Channel] = []
        for index in 0..<channelCount {
            let endpoint = endpoints[index % endpoints.count]
            let transport = try HTTP2ClientTransport.Posix(target: try Self.resolvable(endpoint), transportSecurity: .plaintext,
                                                           eventLoopGroup: loopGroup)
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
            let isCopy = inFlight.withLockedValue { $0.updateValue(request.sequence, forKey: request.client) == request.sequence }
            guard !isCopy else { return }
            let channel = channels[Int(request.client.rawValue % UInt64(channels.count))]
            Task { await call(request, on: channel) }
        default:
            // Refused when the workload was read (WorkloadSpec); answered, so a run never hangs on it.
            reply(ClientReply(client: request.client, sequence: request.sequence, reply: .failure(.notPermitted)))
        }
    }

    /// A failed call is tried again at once this many times before it is left to the driver's
    /// retry timeout (a second by default): a stream the transport reports as closed
    /// ("unavailable") would otherwise cost a whole timeout. A Put may then apply twice, as with
    /// any etcd client that retries; the driver still counts one operation from its first send.
    static let immediateAttemptsMax = 3

    private func call(_ request: Request, on channel: Channel, attempt: Int = 1) async {
        let answer: Reply
        do {
            switch request.command {
            case let .kvGet(key):
                // serializable stays false: a linearizable read (etcd's default).
                var range = Etcdserverpb_RangeRequest()
                range.key = Data(key.utf8)
                let response = try await channel.kv.range(range)
                answer = .value(response.kvs.first.map { String(decoding: $0.value, as: UTF8.self) })
            case let .kvPut(key, value):
                var put = Etcdserverpb_PutRequest()
                put.key = Data(key.utf8)
                put.value = Data(value.utf8)
                _ = try await channel.kv.put(put)
                answer = .stored
            default:
                return
            }
        } catch {
            let failures = state.withLockedValue { state in
                state.failures += 1
                return state.failures
            }
            if failures & (failures - 1) == 0 {  // the 1st, 2nd, 4th, 8th…: visible, never a flood
                onEvent("etcd \(channel.endpoint): \(request.command.operationName) failed (\(failures) so far): \(error)")
            }
            if attempt < Self.immediateAttemptsMax, !state.withLockedValue({ $0.stopped }) {
                await call(request, on: channel, attempt: attempt + 1)
            } else {
                // Unanswered: the driver sends it again after its retry timeout.
                finished(request)
            }
            return
        }
        finished(request)
        reply(ClientReply(client: request.client, sequence: request.sequence, reply: answer))
    }

    private func finished(_ request: Request) {
        inFlight.withLockedValue { inFlight in
            if inFlight[request.client] == request.sequence { inFlight[request.client] = nil }
        }
    }

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
