import CSMRClient
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Primitives
import Services
import Transport
import Wire

/// A stand-in for a replica group until `csmr replica` exists: one `FrameServer` per replica on
/// 127.0.0.1, all executing on one `StateMachine` behind a lock, which is what consensus gives a
/// real group. Each replica can be told to misbehave.
final class TestGroup: Sendable {
    enum Behaviour: Sendable {
        case serve
        /// Executes requests but never answers, as a replica that crashed after executing.
        case executeSilently
        /// Answers every request with a redirect to `replica` (nil: no hint).
        case redirect(to: UInt32?)
        /// Answers nothing and executes nothing.
        case ignore
    }

    static let cluster = ClusterIdentity(name: "client-test")

    let machine: NIOLockedValueBox<StateMachine>
    let servers: [FrameServer]
    let ports: [Int]
    private let behaviours: [NIOLockedValueBox<Behaviour>]
    /// Requests each replica received (retries included).
    let received: [NIOLockedValueBox<Int>]
    /// Requests answered from the session table: retries of requests that had executed.
    let duplicates: NIOLockedValueBox<Int>

    /// Starts `replicas` servers of group `group` on `loop`.
    static func start(replicas: Int, group: UInt32 = 0, loop: EventLoop,
                      machine: NIOLockedValueBox<StateMachine> = NIOLockedValueBox(StateMachine())) async throws -> TestGroup {
        let behaviours = (0..<replicas).map { _ in NIOLockedValueBox(Behaviour.serve) }
        let received = (0..<replicas).map { _ in NIOLockedValueBox(0) }
        var servers: [FrameServer] = []
        var ports: [Int] = []
        let duplicates = NIOLockedValueBox(0)
        for replica in 0..<replicas {
            let slot = ServerSlot()
            let server = FrameServer(loop: loop, config: FrameServerConfig(cluster: cluster, group: group,
                                                                           listenAddress: try SocketAddress(ipAddress: "127.0.0.1", port: 0)),
                                     log: { _ in }) { connection, kind, payload in
                guard kind == FrameKind.request, case let .request(request) = try? WireFormat.decode(kind: kind, payload: payload),
                      let server = slot.server.withLockedValue({ $0 }) else { return }
                received[replica].withLockedValue { $0 += 1 }
                let answer: Message
                switch behaviours[replica].withLockedValue({ $0 }) {
                case .ignore: return
                case .executeSilently:
                    _ = machine.withLockedValue { $0.apply(request) }
                    return
                case let .redirect(to):
                    answer = .redirect(Redirect(answering: request, reason: .notLeader, replica: to))
                case .serve:
                    let reply = ClientPortPolicy.admit(request) ?? machine.withLockedValue { machine in
                        if case .duplicate = machine.sessionVerdict(for: request) { duplicates.withLockedValue { $0 += 1 } }
                        return machine.apply(request)
                    }
                    answer = .reply(ClientReply(client: request.client, sequence: request.sequence, reply: reply))
                }
                server.send(to: connection, frame: WireFormat.encode(answer))
            }
            slot.server.withLockedValue { $0 = server }
            let address = try await server.start().get()
            servers.append(server)
            ports.append(address.port!)
        }
        return TestGroup(machine: machine, servers: servers, ports: ports, behaviours: behaviours, received: received, duplicates: duplicates)
    }

    private init(machine: NIOLockedValueBox<StateMachine>, servers: [FrameServer], ports: [Int], behaviours: [NIOLockedValueBox<Behaviour>],
                 received: [NIOLockedValueBox<Int>], duplicates: NIOLockedValueBox<Int>) {
        self.duplicates = duplicates
        self.machine = machine
        self.servers = servers
        self.ports = ports
        self.behaviours = behaviours
        self.received = received
    }

    var endpoints: [Endpoint] { ports.map { Endpoint(port: $0) } }

    func set(_ behaviour: Behaviour, replica: Int) { behaviours[replica].withLockedValue { $0 = behaviour } }

    func stop(replica: Int) async throws { try await servers[replica].stop().get() }

    func stopAll() async throws {
        for server in servers { try await server.stop().get() }
    }
}

/// Lets a server's frame callback reach the server it belongs to.
private final class ServerSlot: Sendable {
    let server = NIOLockedValueBox<FrameServer?>(nil)
}
