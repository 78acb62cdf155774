import Foundation
import Composition
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

/// The log group's side of an extension: steps are taken only on extension links whose handshake
/// names a replica of the origin group of this cluster, never from a client port.
@Suite(.serialized) struct ExtensionLinkTests {
    @Test func stepsAreTakenOnlyFromTheOriginGroupsReplicasNeverFromAClient() async throws {
        var settings = GroupSpec()
        settings.replicas = 1
        func replica() throws -> ClusterSpec.Replica {
            ClusterSpec.Replica(peer: .init(host: "127.0.0.1", port: try ProcessCluster.freePort()),
                                client: .init(host: "127.0.0.1", port: try ProcessCluster.freePort()))
        }
        let cluster = ClusterSpec(name: "extension", groups: [ClusterSpec.Group(name: "store", settings: settings, replicas: [try replica()]),
                                                              ClusterSpec.Group(name: "journal", settings: settings, replicas: [try replica()])])
        let composition = CompositionSpec(name: "extension", groups: [
            CompositionSpec.Group(name: "store", replicas: 1, toleratedFailures: 0, mode: .multiLeader, services: [.kv, .lock]),
            CompositionSpec.Group(name: "journal", replicas: 1, toleratedFailures: 0, mode: .multiLeader, services: [.log]),
        ], extendPutsIntoLog: true, partition: nil)
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let lines = NIOLockedValueBox([String]())
        // Only the journal's replica runs: the test plays the store's replicas and a client.
        let server = try ReplicaServer(cluster: cluster, group: 1, replica: 0, composition: composition, loop: loops.next(),
                                       log: { line in lines.withLockedValue { $0.append(line) } })
        _ = try await server.start().get()
        let journal = cluster.groups[1].replicas[0]
        let peerAddress = try SocketAddress(ipAddress: "127.0.0.1", port: journal.peer.port)
        let clientAddress = try SocketAddress(ipAddress: "127.0.0.1", port: journal.client.port)
        let identity = ClusterIdentity(name: "extension")
        let answers = NIOLockedValueBox([Message]())
        let onFrame: FrameClient.FrameCallback = { kind, payload in
            if let message = try? WireFormat.decode(kind: kind, payload: payload) { answers.withLockedValue { $0.append(message) } }
        }
        let forged = Message.extensionStep(origin: 0, index: 1, entry: "g0#1 put k=forged")

        // A client sends an extension step frame on the client port: the connection is closed.
        let client = try await FrameClient.connect(to: clientAddress, on: loops.next(), handshake: Handshake(cluster: identity, role: .client, group: 1),
                                                   log: { _ in }, onFrame: onFrame)
        client.send(kind: FrameKind.extensionStep, payload: WireFormat.payload(of: forged))
        try await client.closeFuture.get()
        // A client that dials the peer port presenting itself as an extension origin of a group
        // that extends nothing here (the journal itself), or as a replica the origin group does
        // not have: refused at the handshake.
        for (group, replica) in [(UInt32(1), UInt32(0)), (UInt32(0), UInt32(3))] {
            let impostor = try await FrameClient.connect(to: peerAddress, on: loops.next(),
                                                         handshake: Handshake(cluster: identity, role: .extensionOrigin, group: group, replica: replica),
                                                         log: { _ in }, onFrame: onFrame)
            impostor.send(kind: FrameKind.extensionStep, payload: WireFormat.payload(of: forged))
            try await impostor.closeFuture.get()
        }
        // Another cluster's origin replica: refused.
        let stranger = try await FrameClient.connect(to: peerAddress, on: loops.next(),
                                                     handshake: Handshake(cluster: ClusterIdentity(name: "elsewhere"), role: .extensionOrigin, group: 0),
                                                     log: { _ in }, onFrame: onFrame)
        try await stranger.closeFuture.get()

        // The store's replica 0: a step of another origin is dropped; its own step is applied once.
        let origin = try await FrameClient.connect(to: peerAddress, on: loops.next(),
                                                   handshake: Handshake(cluster: identity, role: .extensionOrigin, group: 0, replica: 0),
                                                   log: { _ in }, onFrame: onFrame)
        origin.send(kind: FrameKind.extensionStep, payload: WireFormat.payload(of: .extensionStep(origin: 7, index: 1, entry: "g7#1 put k=v")))
        let step = "g0#1 put k=v"
        for expected in 1...2 {
            // The second is a resend after the first was applied: answered, not applied again.
            origin.send(kind: FrameKind.extensionStep, payload: WireFormat.payload(of: .extensionStep(origin: 0, index: 1, entry: step)))
            for _ in 0..<500 where answers.withLockedValue({ $0.count }) < expected { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(answers.withLockedValue { $0.count } == 2)
        #expect(answers.withLockedValue { $0 }.allSatisfy { $0 == .extensionApplied(origin: 0, index: 1, applied: 1) }, "\(answers.withLockedValue { $0 })")
        _ = try await origin.close().get()
        try await server.stop().get()
        try await loops.shutdownGracefully()

        let log = lines.withLockedValue { $0 }.joined(separator: "\n")
        #expect(log.contains("refused") && log.contains("kind \(FrameKind.extensionStep)"), "log: \(log)")
        #expect(log.contains("elsewhere"), "log: \(log)")
        #expect(log.contains("only extension steps of group 0"), "log: \(log)")
    }
}

/// Three `ReplicaServer`s whose cluster file puts them 50 ms apart: the replicas apply the
/// delays to their peer links, so a put through a replica that does not lead (single-leader) takes
/// at least the forward to the leader and the leader's accept back (100 ms).
@Suite(.serialized) struct ReplicaLinkDelayTests {
    @Test(.timeLimit(.minutes(1)))
    func aPutThroughAFollowerPaysTheTripToTheLeaderAndBack() async throws {
        var settings = GroupSpec()
        settings.replication = .singleLeader
        settings.network = NetworkSpec(locations: ["a", "b", "c"], delaysMicroseconds: [("a", "b", 50_000), ("a", "c", 50_000), ("b", "c", 50_000)])
        let replicas = try (0..<3).map { _ in
            ClusterSpec.Replica(peer: .init(host: "127.0.0.1", port: try ProcessCluster.freePort()),
                                client: .init(host: "127.0.0.1", port: try ProcessCluster.freePort()))
        }
        let cluster = ClusterSpec(name: "wan", groups: [ClusterSpec.Group(name: "main", settings: settings, replicas: replicas)])
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var servers: [ReplicaServer] = []
        for replica in 0..<3 {
            let server = try ReplicaServer(cluster: cluster, group: 0, replica: replica, loop: loops.next(), log: { _ in })
            _ = try await server.start().get()
            servers.append(server)
        }
        let replies = NIOLockedValueBox([ClientReply]())
        let client = try await FrameClient.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: replicas[2].client.port), on: loops.next(),
                                                   handshake: Handshake(cluster: ClusterIdentity(name: "wan"), role: .client, group: 0),
                                                   log: { _ in }) { kind, payload in
            if case let .reply(reply)? = try? WireFormat.decode(kind: kind, payload: payload) { replies.withLockedValue { $0.append(reply) } }
        }
        /// Sends one request and waits (at most 10 s) for its reply.
        func call(_ request: Request) async throws -> (reply: Reply?, elapsed: Duration) {
            let start = ContinuousClock.now
            client.send(kind: FrameKind.request, payload: WireFormat.payload(of: .request(request)))
            for _ in 0..<1_000 {
                if let reply = replies.withLockedValue({ $0.first { $0.client == request.client && $0.sequence == request.sequence } }) {
                    return (reply.reply, ContinuousClock.now - start)
                }
                try await Task.sleep(for: .milliseconds(10))
            }
            return (nil, ContinuousClock.now - start)
        }
        var random = SystemRandomNumberGenerator()
        let nonce = ClientID.nonce(using: &random)
        let opened = try await call(Request(client: nonce, sequence: 1, command: .openSession))
        guard case let .session(id)? = opened.reply else {
            Issue.record("no session: \(String(describing: opened.reply))")
            return
        }
        for sequence in UInt64(1)...3 {
            let put = try await call(Request(client: id, sequence: sequence, command: .kvPut(key: "k", value: "v\(sequence)")))
            #expect(put.reply == .stored, "put \(sequence): \(String(describing: put.reply))")
            #expect(put.elapsed >= .milliseconds(100), "put \(sequence) took \(put.elapsed)")
        }
        await client.close()
        for server in servers { try await server.stop().get() }
        try await loops.shutdownGracefully()
    }
}
