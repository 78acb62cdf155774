import Composition
import EtcdAPI
import Foundation
import Harness
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Primitives
import Services
import SwiftProtobuf
import Workload

/// The load generator's view of an etcd v3 cluster: kv.get is a linearizable Range, kv.put a
/// Put, each a unary gRPC call.
///
/// Clients share connections: a connection (`UnaryGRPCConnection`, one HTTP/2 connection to one
/// member) carries the calls of every client mapped to it concurrently, as etcd's own Go client
/// does; connections go round robin over the members. The cluster is one group of one "replica"
/// to the driver: etcd routes inside (a follower forwards a Put to the leader and asks it for the
/// read index of a Range), so the driver never picks a member.
///
/// Sessions are the harness's, not etcd's: `openSession` is answered here with a fresh client id
/// and never reaches etcd, which has no session to de-duplicate a second copy of a Put. So every
/// request is called once and answered once: a copy the driver sends again (its retry timeout
/// passed while the call was out) is dropped, and a call that fails is answered with
/// `outcomeUnknown`, which the driver counts as an error and a recorded history keeps pending.
/// A call is sent again (at once, at most `attemptsMax` times in all) only when that cannot apply
/// it twice: a Range that failed `unavailable` (it changes nothing; etcd's Go client retries
/// reads so), and any call the server never processed (above a GOAWAY's last stream, or refused).
public final class EtcdTarget: LoadTarget, @unchecked Sendable {
    // Immutable after init except through the locks (the unchecked Sendable rests on that).
    public let router: Router
    public var groupCount: Int { 1 }
    public func replicaCount(of group: Int) -> Int { 1 }
    private let connections: [UnaryGRPCConnection]
    private let loop: any EventLoop
    private let ownGroup: MultiThreadedEventLoopGroup?
    private let onReply: @Sendable (Int, ClientReply) -> Void
    private let onEvent: @Sendable (String) -> Void
    /// Per client, the highest sequence called: a request at or below it is a copy.
    private let calledSequence = NIOLockedValueBox<[ClientID: UInt64]>([:])
    private let state = NIOLockedValueBox(State())

    static let rangePath = "/etcdserverpb.KV/Range"
    static let putPath = "/etcdserverpb.KV/Put"

    private struct State {
        var sessionsOpened: UInt64 = 0
        var stopped = false
        var failures = 0
    }

    /// - Parameters:
    ///   - endpoints: `host:port` client URLs of the members.
    ///   - channelCount: connections to open, spread round robin over `endpoints`.
    ///   - loop: where the connections run: the load generator's own loop in a run, so a call and
    ///     its reply never cross threads (the members share this machine's two cores with the
    ///     load generator, and each wake-up of another thread is taken from them); nil for a
    ///     thread of the target's own.
    public init(endpoints: [String], channelCount: Int, loop: (any EventLoop)? = nil,
                onReply: @escaping @Sendable (Int, ClientReply) -> Void, onEvent: @escaping @Sendable (String) -> Void) throws {
        precondition(!endpoints.isEmpty && channelCount > 0, "an etcd target needs endpoints and at least one channel")
        router = Router(spec: CompositionSpec(name: "etcd",
                                              groups: [CompositionSpec.Group(name: "etcd", replicas: 1, toleratedFailures: 0, mode: .multiLeader,
                                                                             services: [.kv])],
                                              extendPutsIntoLog: false, partition: nil))
        self.onReply = onReply
        self.onEvent = onEvent
        let addresses = try endpoints.map(Self.hostAndPort)
        let ownGroup = loop == nil ? MultiThreadedEventLoopGroup(numberOfThreads: 1) : nil
        self.ownGroup = ownGroup
        let connectionLoop = loop ?? ownGroup!.next()
        self.loop = connectionLoop
        connections = (0..<channelCount).map { index in
            let (host, port) = addresses[index % addresses.count]
            return UnaryGRPCConnection(host: host, port: port, loop: connectionLoop, onEvent: onEvent)
        }
    }

    /// `host:port` split; the host is an address or a name to resolve.
    static func hostAndPort(_ endpoint: String) throws -> (String, Int) {
        guard let colon = endpoint.lastIndex(of: ":"), let port = Int(endpoint[endpoint.index(after: colon)...]),
              (1...65_535).contains(port), colon != endpoint.startIndex else {
            throw EtcdError.badEndpoint(endpoint)
        }
        return (String(endpoint[..<colon]), port)
    }

    /// Returns once every connection has answered a Range, or throws after `seconds`.
    public func waitUntilServing(seconds: Double) async throws {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1_000))
        var request = Etcdserverpb_RangeRequest()
        request.key = Data("csmr-health".utf8)
        let message: [UInt8] = try request.serializedBytes()
        for connection in connections {
            while true {
                let result = await withCheckedContinuation { continuation in
                    connection.call(path: Self.rangePath, message: message, timeout: .seconds(1)) { continuation.resume(returning: $0) }
                }
                if case .success = result { break }
                if ContinuousClock.now >= deadline {
                    throw EtcdError.notServing("\(connection.host):\(connection.port) did not answer a Range within \(seconds) s: \(result)")
                }
                try await Task.sleep(for: .milliseconds(200))
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
        case let .kvGet(key):
            guard isFirstCall(request) else { return }
            // serializable stays false: a linearizable read (etcd's default).
            var range = Etcdserverpb_RangeRequest()
            range.key = Data(key.utf8)
            send(request, path: Self.rangePath, message: range, attempt: 1)
        case let .kvPut(key, value):
            guard isFirstCall(request) else { return }
            var put = Etcdserverpb_PutRequest()
            put.key = Data(key.utf8)
            put.value = Data(value.utf8)
            send(request, path: Self.putPath, message: put, attempt: 1)
        default:
            // Refused when the workload was read (WorkloadSpec); answered, so a run never hangs on it.
            reply(ClientReply(client: request.client, sequence: request.sequence, reply: .failure(.notPermitted)))
        }
    }

    /// Sequences of a client only grow (its session never expires), so a copy, whether its first
    /// call is still out or already answered, is never called again.
    private func isFirstCall(_ request: Request) -> Bool {
        calledSequence.withLockedValue { called in
            if let latest = called[request.client], request.sequence <= latest { return false }
            called[request.client] = request.sequence
            return true
        }
    }

    /// Calls of one request, at most (see the type's comment for which are sent again).
    static let attemptsMax = 3

    private func send(_ request: Request, path: String, message: some SwiftProtobuf.Message, attempt: Int) {
        do {
            send(request, path: path, bytes: try message.serializedBytes(), attempt: attempt)
        } catch {
            // Only a message with unset required fields fails to encode; kv messages have none.
            reply(ClientReply(client: request.client, sequence: request.sequence, reply: .failure(.outcomeUnknown)))
        }
    }

    /// Calls `path` with the serialized message; a call sent again reuses the bytes.
    private func send(_ request: Request, path: String, bytes: [UInt8], attempt: Int) {
        let connection = connections[Int(request.client.rawValue % UInt64(connections.count))]
        connection.call(path: path, message: bytes) { [self] result in
            switch result {
            case let .success(response):
                answer(request, response: response)
            case let .failure(error):
                let isRead = path == Self.rangePath
                let again = attempt < Self.attemptsMax && !state.withLockedValue({ $0.stopped })
                    && (error.neverApplied || (isRead && error.isUnavailable))
                failed(request, on: connection, error: error, retried: again)
                if again {
                    send(request, path: path, bytes: bytes, attempt: attempt + 1)
                } else {
                    reply(ClientReply(client: request.client, sequence: request.sequence, reply: .failure(.outcomeUnknown)))
                }
            }
        }
    }

    private func answer(_ request: Request, response: ByteBuffer) {
        let answer: Reply
        switch request.command {
        case .kvGet:
            do {
                let range = try Etcdserverpb_RangeResponse(serializedBytes: Array(response.readableBytesView))
                answer = .value(range.kvs.first.map { String(decoding: $0.value, as: UTF8.self) })
            } catch {
                onEvent("etcd: a Range response did not decode: \(error)")
                answer = .failure(.outcomeUnknown)
            }
        default:
            // A Put's response holds only the header (revision, term); status OK means it applied.
            answer = .stored
        }
        reply(ClientReply(client: request.client, sequence: request.sequence, reply: answer))
    }

    /// Counts a failed call and reports the 1st, 2nd, 4th, 8th…: visible, never a flood.
    private func failed(_ request: Request, on connection: UnaryGRPCConnection, error: UnaryCallError, retried: Bool) {
        let failures = state.withLockedValue { state in
            state.failures += 1
            return state.failures
        }
        if failures & (failures - 1) == 0 {
            onEvent("etcd \(connection.host):\(connection.port): \(request.command.operationName) failed (\(failures) so far)\(retried ? ", called again" : ""): \(error)")
        }
    }

    /// Calls that failed since the start, each attempt counted (the driver counts the requests
    /// answered `outcomeUnknown` among its errors).
    public var failedCalls: Int { state.withLockedValue { $0.failures } }

    /// The server's HTTP/2 PINGs seen since the start (grpc-go's flow-control probes; the HTTP/2
    /// handler answers each).
    public func serverPings() async throws -> Int {
        var total = 0
        for connection in connections { total += try await connection.serverPings().get() }
        return total
    }

    private func reply(_ reply: ClientReply) {
        guard !state.withLockedValue({ $0.stopped }) else { return }
        onReply(0, reply)
    }

    public func stop() -> EventLoopFuture<Void> {
        state.withLockedValue { $0.stopped = true }
        // Calls still out finish first; a member that stopped answering is not waited for.
        let closing = connections.map { $0.close(graceSeconds: 5) }
        return EventLoopFuture.andAllComplete(closing, on: loop)
    }

    /// Ends the connections' thread when the target has its own; after `stop()` has completed.
    public func close() {
        try? ownGroup?.syncShutdownGracefully()
    }

    /// etcd members are not crashed or paused by the run (refused when the workload is read).
    public func inject(_ action: TimedEvent.Action, group: Int) {}
}

extension UnaryCallError {
    var isUnavailable: Bool {
        if case .unavailable = self { return true }
        return false
    }
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
