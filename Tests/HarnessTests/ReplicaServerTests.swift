import Foundation
import Harness
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Primitives
import Services
import Testing
import Transport
import Wire
import Workload

/// One `ReplicaServer` (a group of one) facing hostile or confused connections: each is refused
/// with a log line, and the replica keeps serving a correct client.
@Suite(.serialized) struct ReplicaServerTests {
    /// A group of one replica on free loopback ports, started.
    private func startServer(cluster name: String, loops: MultiThreadedEventLoopGroup,
                             lines: NIOLockedValueBox<[String]>) async throws -> (ReplicaServer, SocketAddress) {
        var settings = GroupSpec()
        settings.replicas = 1
        let peerPort = try ProcessCluster.freePort(), clientPort = try ProcessCluster.freePort()
        let cluster = ClusterSpec(name: name, groups: [ClusterSpec.Group(
            name: "main", settings: settings,
            replicas: [ClusterSpec.Replica(peer: .init(host: "127.0.0.1", port: peerPort), client: .init(host: "127.0.0.1", port: clientPort))])])
        let server = try ReplicaServer(cluster: cluster, group: 0, replica: 0, loop: loops.next(), log: { line in lines.withLockedValue { $0.append(line) } })
        _ = try await server.start().get()
        return (server, try SocketAddress(ipAddress: "127.0.0.1", port: clientPort))
    }

    /// Opens a session under a fresh nonce; `answer` finds the reply to that nonce (nil: none yet).
    private func openSession(on client: FrameClient, answer: (ClientID) -> Reply?) async throws -> ClientID? {
        var random = SystemRandomNumberGenerator()
        let nonce = ClientID.nonce(using: &random)
        client.send(kind: FrameKind.request, payload: WireFormat.payload(of: .request(Request(client: nonce, sequence: 1, command: .openSession))))
        for _ in 0..<500 {
            try await Task.sleep(for: .milliseconds(10))
            if case let .session(id)? = answer(nonce) { return id }
        }
        return nil
    }

    @Test func aSampledRequestIsAnsweredWithTheReplicasStageDurations() async throws {
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let (server, address) = try await startServer(cluster: "stages", loops: loops, lines: NIOLockedValueBox([String]()))
        let replies = NIOLockedValueBox([(kind: UInt8, reply: ClientReply)]())
        let client = try await FrameClient.connect(to: address, on: loops.next(), handshake: Handshake(cluster: ClusterIdentity(name: "stages"), role: .client, group: 0),
                                                   log: { _ in }, onFrame: { kind, payload in
            if case let .reply(reply)? = try? WireFormat.decode(kind: kind, payload: payload) { replies.withLockedValue { $0.append((kind, reply)) } }
        })
        let id = try #require(await openSession(on: client) { nonce in replies.withLockedValue { $0.first { $0.reply.client == nonce }?.reply.reply } })
        let sampled = Message.sampledRequest(Request(client: id, sequence: 1, command: .kvPut(key: "k", value: "v")))
        client.send(kind: sampled.kind, payload: WireFormat.payload(of: sampled))
        client.send(kind: FrameKind.request, payload: WireFormat.payload(of: .request(Request(client: id, sequence: 2, command: .kvGet(key: "k")))))
        for _ in 0..<500 where !replies.withLockedValue({ $0.contains { $0.reply.client == id && $0.reply.sequence == 2 } }) {
            try await Task.sleep(for: .milliseconds(10))
        }
        let answered = replies.withLockedValue { $0.filter { $0.reply.client == id } }
        // The sampled put comes back as kind 6 with durations; the plain get as kind 2 without.
        #expect(answered.first { $0.reply.sequence == 1 }.map { $0.kind == FrameKind.stagedReply && $0.reply.stages != nil } == true, "\(answered)")
        #expect(answered.first { $0.reply.sequence == 2 }.map { $0.kind == FrameKind.reply && $0.reply.stages == nil } == true, "\(answered)")
        _ = try await client.close().get()
        try await server.stop().get()
        try await loops.shutdownGracefully()
    }

    @Test func wrongIdentityWrongVersionAndOversizedFramesAreRefusedAndTheReplicaKeepsServing() async throws {
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let lines = NIOLockedValueBox([String]())
        let (server, address) = try await startServer(cluster: "refusals", loops: loops, lines: lines)
        let replies = NIOLockedValueBox([ClientReply]())
        let onFrame: FrameClient.FrameCallback = { kind, payload in
            if case let .reply(reply)? = try? WireFormat.decode(kind: kind, payload: payload) { replies.withLockedValue { $0.append(reply) } }
        }

        // Another cluster's client.
        let stranger = try await FrameClient.connect(to: address, on: loops.next(),
                                                     handshake: Handshake(cluster: ClusterIdentity(name: "elsewhere"), role: .client, group: 0),
                                                     log: { _ in }, onFrame: onFrame)
        stranger.send(kind: FrameKind.request, payload: WireFormat.payload(of: .request(Request(client: ClientID(UInt64.max), sequence: 1, command: .openSession))))
        // A frame of another wire version, then a frame announcing more than the limit.
        let handshake = Handshake(cluster: ClusterIdentity(name: "refusals"), role: .client, group: 0)
        let oldVersion = try await FrameClient.connect(to: address, on: loops.next(), handshake: handshake, log: { _ in }, onFrame: onFrame)
        oldVersion.sendUnframed([0, 0, 0, 2, WireFormat.version &+ 1, FrameKind.request])
        let oversized = try await FrameClient.connect(to: address, on: loops.next(), handshake: handshake, log: { _ in }, onFrame: onFrame)
        oversized.sendUnframed([0xFF, 0xFF, 0xFF, 0xF0, WireFormat.version, FrameKind.request])
        try await stranger.closeFuture.get()
        try await oldVersion.closeFuture.get()
        try await oversized.closeFuture.get()

        // A correct client is served: a session, then a put and a get.
        let client = try await FrameClient.connect(to: address, on: loops.next(), handshake: handshake, log: { _ in }, onFrame: onFrame)
        let id = try #require(await openSession(on: client) { nonce in replies.withLockedValue { $0.first { $0.client == nonce }?.reply } })
        client.send(kind: FrameKind.request, payload: WireFormat.payload(of: .request(Request(client: id, sequence: 1, command: .kvPut(key: "k", value: "v")))))
        client.send(kind: FrameKind.request, payload: WireFormat.payload(of: .request(Request(client: id, sequence: 2, command: .kvGet(key: "k")))))
        for _ in 0..<500 where !replies.withLockedValue({ $0.contains { $0.client == id && $0.sequence == 2 } }) {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(replies.withLockedValue { $0.contains { $0.client == id && $0.sequence == 2 && $0.reply == .value("v") } })
        // An extension step from a client is refused with notPermitted, and logged.
        client.send(kind: FrameKind.request, payload: WireFormat.payload(of: .request(Request(client: id, sequence: 3, command: .logAppendFrom(origin: 0, index: 1, entry: "forged")))))
        for _ in 0..<500 where !replies.withLockedValue({ $0.contains { $0.sequence == 3 } }) { try await Task.sleep(for: .milliseconds(10)) }
        #expect(replies.withLockedValue { $0.contains { $0.sequence == 3 && $0.reply == .failure(.notPermitted) } })
        _ = try await client.close().get()
        try await server.stop().get()
        try await loops.shutdownGracefully()

        let log = lines.withLockedValue { $0 }.joined(separator: "\n")
        #expect(log.contains("elsewhere"), "log: \(log)")
        #expect(log.contains("version"), "log: \(log)")
        #expect(log.contains("exceeds") || log.contains("too large") || log.contains("limit"), "log: \(log)")
        #expect(log.contains("not permitted"), "log: \(log)")
        #expect(replies.withLockedValue { $0.allSatisfy { $0.client != ClientID(0) } })
    }
}
