import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Primitives
import Testing
import Wire
@testable import Transport

/// Log lines captured from the transport, for assertions.
final class LogCapture: Sendable {
    private let lines = NIOLockedValueBox<[String]>([])

    var log: TransportLog { { line in self.lines.withLockedValue { $0.append(line) } } }

    func contains(_ text: String) -> Bool { lines.withLockedValue { $0.contains { $0.contains(text) } } }

    var all: [String] { lines.withLockedValue { $0 } }
}

/// Polls `condition` every 10 ms for at most `seconds`; true if it became true.
func eventually(seconds: Double = 30, _ condition: () -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}

/// Free loopback addresses, found by binding port 0 and releasing it (the listeners set
/// SO_REUSEADDR, so the port can be bound again at once).
func freeAddresses(_ count: Int, group: EventLoopGroup) async throws -> [SocketAddress] {
    var addresses: [SocketAddress] = []
    for _ in 0..<count {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0).get()
        addresses.append(try SocketAddress(ipAddress: "127.0.0.1", port: channel.localAddress?.port ?? 0))
        try await channel.close()
    }
    return addresses
}

/// What one replica received, per sender: the count and whether order held.
struct Inbox {
    var counts: [Int: Int] = [:]
    var outOfOrder = 0
    var times: [ContinuousClock.Instant] = []
}

final class Receiver: Sendable {
    let inbox = NIOLockedValueBox(Inbox())

    func record(from replica: Int, payload: [UInt8]) {
        var reader = ByteReader(payload)
        let sequence = Int((try? reader.readUInt32()) ?? UInt32.max)
        inbox.withLockedValue { inbox in
            let expected = inbox.counts[replica, default: 0]
            if sequence != expected { inbox.outOfOrder += 1 }
            inbox.counts[replica] = expected + 1
            inbox.times.append(.now)
        }
    }

    func count(from replica: Int) -> Int { inbox.withLockedValue { $0.counts[replica, default: 0] } }
}

func sequencePayload(_ sequence: Int, filler: Int = 12) -> [UInt8] {
    var writer = ByteWriter()
    writer.write(UInt32(sequence))
    writer.append(raw: [UInt8](repeating: 0xab, count: filler))
    return writer.bytes
}

/// Builds peer transports for `addresses`, one per replica id, each on its own loop of `group`.
func makePeers(_ addresses: [SocketAddress], group: EventLoopGroup, log: @escaping TransportLog, cluster: ClusterIdentity = testCluster,
               delayMicroseconds: Int64 = 0, only: [Int]? = nil,
               onFrame: @escaping @Sendable (_ me: Int, _ from: Int, _ kind: UInt8, _ payload: [UInt8]) -> Void) -> [Int: PeerTransport] {
    var peers: [Int: SocketAddress] = [:]
    for (index, address) in addresses.enumerated() { peers[index] = address }
    var transports: [Int: PeerTransport] = [:]
    for replica in only ?? Array(addresses.indices) {
        var delays: [Int: Int64] = [:]
        for other in addresses.indices where other != replica { delays[other] = delayMicroseconds }
        let config = PeerTransportConfig(cluster: cluster, group: 1, replica: replica, listenAddress: addresses[replica], peers: peers,
                                         reconnectDelayMicrosecondsMax: 200_000, delayMicroseconds: delays,
                                         jitterSeed: UInt64(replica))
        transports[replica] = PeerTransport(loop: group.next(), config: config, log: log) { from, kind, payload in
            onFrame(replica, from, kind, payload)
        }
    }
    return transports
}

/// `count` started peer transports, each on its own loop, each recording what it receives.
func startedPeers(_ count: Int) async throws -> (MultiThreadedEventLoopGroup, LogCapture, [Receiver], [Int: PeerTransport]) {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: count)
    let logs = LogCapture()
    let addresses = try await freeAddresses(count, group: group)
    let receivers = (0..<count).map { _ in Receiver() }
    let transports = makePeers(addresses, group: group, log: logs.log) { me, from, _, payload in
        receivers[me].record(from: from, payload: payload)
    }
    for transport in transports.values { _ = try await transport.start().get() }
    return (group, logs, receivers, transports)
}

@Suite(.serialized) struct PeerTransportTests {
    @Test(.timeLimit(.minutes(2)))
    func threePeersExchangeTenThousandFramesEachWayInOrder() async throws {
        let (group, logs, receivers, transports) = try await startedPeers(3)

        let framesPerLink = 10_000
        for (replica, transport) in transports {
            // All sends in one loop turn: the queue takes them, and the flush happens once per turn.
            transport.loop.execute {
                for sequence in 0..<framesPerLink {
                    for other in 0..<3 where other != replica {
                        transport.send(to: other, kind: 0x42, payload: sequencePayload(sequence))
                    }
                }
            }
        }
        let done = try await eventually(seconds: 60) {
            (0..<3).allSatisfy { me in (0..<3).allSatisfy { from in from == me || receivers[me].count(from: from) == framesPerLink } }
        }
        #expect(done, "logs: \(logs.all)")
        for receiver in receivers { #expect(receiver.inbox.withLockedValue { $0.outOfOrder } == 0) }

        var counters: [Int: [Int: LinkCounters]] = [:]
        for (replica, transport) in transports { counters[replica] = try await transport.counters().get() }
        let frameBytes = FrameEncoding.headerBytes + sequencePayload(0).count
        for sender in 0..<3 {
            for receiver in 0..<3 where receiver != sender {
                let out = try #require(counters[sender]?[receiver])
                let into = try #require(counters[receiver]?[sender])
                #expect(out.framesSent == framesPerLink)
                #expect(out.bytesSent == framesPerLink * frameBytes)
                #expect(out.framesDropped == 0)
                #expect(into.framesReceived == framesPerLink)
                #expect(into.bytesReceived == out.bytesSent)
            }
        }
        for transport in transports.values { try await transport.stop().get() }
        try await group.shutdownGracefully()
    }

    @Test(.timeLimit(.minutes(1)))
    func aPeerOfAnotherClusterIsRefusedAndTheRightPeersKeepTalking() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let logs = LogCapture()
        let addresses = try await freeAddresses(2, group: group)
        let receivers = (0..<2).map { _ in Receiver() }
        let transports = makePeers(addresses, group: group, log: logs.log) { me, from, _, payload in
            receivers[me].record(from: from, payload: payload)
        }
        for transport in transports.values { _ = try await transport.start().get() }

        // An impostor claims to be replica 0 of another cluster.
        let impostor = try await FrameClient.connect(
            to: addresses[1], on: group.next(),
            handshake: Handshake(cluster: ClusterIdentity(name: "other-cluster"), role: .peer, group: 1, replica: 0),
            log: logs.log) { _, _ in }
        impostor.send(kind: 0x42, payload: sequencePayload(0))
        #expect(try await eventually { !impostor.channel.isActive })
        #expect(try await eventually { logs.contains("wrong cluster identity other-cluster") })

        // Another sends a frame before any handshake.
        let eager = try await FrameClient.connect(to: addresses[1], on: group.next(), handshake: nil, log: logs.log) { _, _ in }
        eager.send(kind: 0x42, payload: sequencePayload(0))
        #expect(try await eventually { !eager.channel.isActive })
        #expect(try await eventually { logs.contains("expected a handshake (kind 16) first, got a frame of kind 66") })

        // A client knocking on the peer port.
        let client = try await FrameClient.connect(
            to: addresses[1], on: group.next(),
            handshake: Handshake(cluster: testCluster, role: .client, group: 1), log: logs.log) { _, _ in }
        #expect(try await eventually { !client.channel.isActive })
        #expect(try await eventually { logs.contains("wrong role client, expected peer") })

        for sequence in 0..<100 {
            transports[0]?.send(to: 1, kind: 0x42, payload: sequencePayload(sequence))
            transports[1]?.send(to: 0, kind: 0x42, payload: sequencePayload(sequence))
        }
        #expect(try await eventually { receivers[1].count(from: 0) == 100 && receivers[0].count(from: 1) == 100 })
        #expect(receivers[1].count(from: 0) == 100, "the impostor's frame must not count as replica 0's")

        await impostor.close()
        await eager.close()
        await client.close()
        for transport in transports.values { try await transport.stop().get() }
        try await group.shutdownGracefully()
    }

    @Test(.timeLimit(.minutes(1)))
    func aRestartedPeerOnTheSamePortGetsFramesAgainAfterTheBackoff() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let logs = LogCapture()
        let addresses = try await freeAddresses(2, group: group)
        let receivers = (0..<2).map { _ in Receiver() }
        let restarted = Receiver()
        var transports = makePeers(addresses, group: group, log: logs.log) { me, from, _, payload in
            receivers[me].record(from: from, payload: payload)
        }
        for transport in transports.values { _ = try await transport.start().get() }
        transports[0]?.send(to: 1, kind: 0x42, payload: sequencePayload(0))
        #expect(try await eventually { receivers[1].count(from: 0) == 1 })

        try await transports[1]?.stop().get()
        let replacement = makePeers(addresses, group: group, log: logs.log, only: [1]) { _, from, _, payload in
            restarted.record(from: from, payload: payload)
        }
        transports[1] = replacement[1]
        _ = try await transports[1]?.start().get()

        // Frames sent while replica 0 still holds the dead connection are lost; keep sending
        // (as Paxos would retransmit) until one arrives, for at most 100 tries.
        var arrived = false
        for attempt in 0..<100 where !arrived {
            transports[0]?.send(to: 1, kind: 0x43, payload: sequencePayload(attempt))
            arrived = try await eventually(seconds: 0.1) { restarted.count(from: 0) > 0 }
        }
        #expect(arrived, "logs: \(logs.all)")
        transports[1]?.send(to: 0, kind: 0x42, payload: sequencePayload(1))
        #expect(try await eventually { receivers[0].count(from: 1) == 1 })
        let counters = try await transports[0]?.counters().get()
        #expect((counters?[1]?.reconnects ?? 0) >= 1)

        for transport in transports.values { try await transport.stop().get() }
        try await group.shutdownGracefully()
    }

    @Test(.timeLimit(.minutes(1)))
    func aTwentyMillisecondOneWayDelayMakesARoundTripTakeAtLeastForty() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let logs = LogCapture()
        let addresses = try await freeAddresses(2, group: group)
        let pongs = Receiver()
        let transportsBox = NIOLockedValueBox<[Int: PeerTransport]>([:])
        let transports = makePeers(addresses, group: group, log: logs.log, delayMicroseconds: 20_000) { me, from, kind, payload in
            if me == 1 {
                transportsBox.withLockedValue { $0[1] }?.send(to: from, kind: kind, payload: payload)
            } else {
                pongs.record(from: from, payload: payload)
            }
        }
        transportsBox.withLockedValue { $0 = transports }
        for transport in transports.values { _ = try await transport.start().get() }

        for ping in 0..<5 {
            let start = ContinuousClock.now
            transports[0]?.send(to: 1, kind: 0x42, payload: sequencePayload(ping))
            #expect(try await eventually { pongs.count(from: 1) == ping + 1 })
            let received = try #require(pongs.inbox.withLockedValue { $0.times.last })
            #expect(received - start >= .milliseconds(40), "round trip \(received - start)")
        }

        for transport in transports.values { try await transport.stop().get() }
        try await group.shutdownGracefully()
    }

    @Test(.timeLimit(.minutes(1)))
    func aBlockOnOneSideCutsTheLinkBothWaysAndAHealRestoresItOnTheSameConnection() async throws {
        let (group, logs, receivers, transports) = try await startedPeers(3)
        let isolated = try #require(transports[2]), other = try #require(transports[0])
        func exchange(_ sequences: Range<Int>) {
            for sequence in sequences {
                other.send(to: 2, kind: 0x42, payload: sequencePayload(sequence))
                isolated.send(to: 0, kind: 0x42, payload: sequencePayload(sequence))
            }
        }
        exchange(0..<50)
        #expect(try await eventually { receivers[2].count(from: 0) == 50 && receivers[0].count(from: 2) == 50 }, "logs: \(logs.all)")

        // Only replica 2 is told: replica 0 still sends, and replica 2 drops what arrives.
        isolated.block([0, 1])
        #expect(try await isolated.blockedPeers().get() == [0, 1])
        exchange(50..<100)
        for sequence in 0..<50 { other.send(to: 1, kind: 0x42, payload: sequencePayload(sequence)) }
        #expect(try await eventually { receivers[1].count(from: 0) == 50 })
        var link = LinkCounters()
        for _ in 0..<3_000 {
            link = try await isolated.counters().get()[0] ?? link
            if link.framesBlockedReceived == 50 { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(link.framesBlockedSent == 50 && link.framesBlockedReceived == 50, "\(link)")
        #expect(receivers[2].count(from: 0) == 50 && receivers[0].count(from: 2) == 50)

        isolated.block([])
        #expect(try await isolated.blockedPeers().get() == [])
        exchange(100..<150)
        #expect(try await eventually { receivers[2].count(from: 0) == 100 && receivers[0].count(from: 2) == 100 })
        // The connection stayed up across the partition.
        let counters = try await isolated.counters().get()
        #expect(counters[0]?.reconnects == 0 && counters[1]?.reconnects == 0, "\(counters)")

        for transport in transports.values { try await transport.stop().get() }
        try await group.shutdownGracefully()
    }
}

@Suite(.serialized) struct FrameServerTests {
    @Test(.timeLimit(.minutes(1)))
    func badFramesCloseOnlyTheirConnection() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let logs = LogCapture()
        let serverBox = NIOLockedValueBox<FrameServer?>(nil)
        let config = FrameServerConfig(cluster: testCluster, group: 3, listenAddress: try SocketAddress(ipAddress: "127.0.0.1", port: 0),
                                       limits: WireLimits(frameBytesMax: 65_536))
        let server = FrameServer(loop: group.next(), config: config, log: logs.log) { connection, kind, payload in
            serverBox.withLockedValue { $0 }?.send(to: connection, kind: kind, payload: payload)
        }
        serverBox.withLockedValue { $0 = server }
        let address = try await server.start().get()
        let handshake = Handshake(cluster: testCluster, role: .client, group: 3)

        let echoes = Receiver()
        let good = try await FrameClient.connect(to: address, on: group.next(), handshake: handshake, log: logs.log) { _, payload in
            echoes.record(from: 0, payload: payload)
        }

        let wrongVersion = try await FrameClient.connect(to: address, on: group.next(), handshake: handshake, log: logs.log) { _, _ in }
        var frame = FrameEncoding.frame(kind: 1, payload: [1, 2, 3])
        frame[4] = WireFormat.version &+ 1
        wrongVersion.sendUnframed(frame)
        #expect(try await eventually { !wrongVersion.channel.isActive })
        #expect(try await eventually { logs.contains("unknown wire version 2") })

        let tooLong = try await FrameClient.connect(to: address, on: group.next(), handshake: handshake, log: logs.log) { _, _ in }
        tooLong.sendUnframed([0x00, 0x10, 0x00, 0x00, 1, 1])
        #expect(try await eventually { !tooLong.channel.isActive })
        #expect(try await eventually { logs.contains("frame of 1048576 bytes exceeds the limit of 65536") })

        let wrongGroup = try await FrameClient.connect(
            to: address, on: group.next(), handshake: Handshake(cluster: testCluster, role: .client, group: 4), log: logs.log) { _, _ in }
        #expect(try await eventually { !wrongGroup.channel.isActive })
        #expect(try await eventually { logs.contains("wrong group 4, expected 3") })

        let headless = try await FrameClient.connect(to: address, on: group.next(), handshake: handshake, log: logs.log) { _, _ in }
        // A raw stream without framing at all: the bytes read as a huge length.
        headless.sendUnframed(Array("GET / HTTP/1.1\r\n\r\n".utf8))
        #expect(try await eventually { !headless.channel.isActive })

        for sequence in 0..<100 { good.send(kind: 7, payload: sequencePayload(sequence)) }
        #expect(try await eventually { echoes.count(from: 0) == 100 })
        #expect(echoes.inbox.withLockedValue { $0.outOfOrder } == 0)
        #expect(good.channel.isActive)
        let counters = try await server.counters().get()
        #expect(counters.count == 1)
        #expect(counters.values.first?.framesReceived == 100)

        for client in [good, wrongVersion, tooLong, wrongGroup, headless] { await client.close() }
        try await server.stop().get()
        try await group.shutdownGracefully()
    }

    /// A client's emulated link: 50 ms each way on the client's side, so an echo takes at least
    /// 100 ms, and frames keep their order through both delays.
    @Test(.timeLimit(.minutes(1)))
    func aFiftyMillisecondClientLinkDelaysBothTheRequestAndTheReply() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let logs = LogCapture()
        let serverBox = NIOLockedValueBox<FrameServer?>(nil)
        let arrivals = Receiver()
        let config = FrameServerConfig(cluster: testCluster, group: 3, listenAddress: try SocketAddress(ipAddress: "127.0.0.1", port: 0))
        let server = FrameServer(loop: group.next(), config: config, log: logs.log) { connection, kind, payload in
            arrivals.record(from: 0, payload: payload)
            serverBox.withLockedValue { $0 }?.send(to: connection, kind: kind, payload: payload)
        }
        serverBox.withLockedValue { $0 = server }
        let address = try await server.start().get()
        let echoes = Receiver()
        let client = try await FrameClient.connect(to: address, on: group.next(), handshake: Handshake(cluster: testCluster, role: .client, group: 3),
                                                   delayMicroseconds: 50_000, log: logs.log) { _, payload in
            echoes.record(from: 0, payload: payload)
        }
        let start = ContinuousClock.now
        for sequence in 0..<20 { client.send(kind: 7, payload: sequencePayload(sequence)) }
        #expect(try await eventually { echoes.count(from: 0) == 20 }, "logs: \(logs.all)")
        let reachedServer = try #require(arrivals.inbox.withLockedValue { $0.times.first })
        let firstEcho = try #require(echoes.inbox.withLockedValue { $0.times.first })
        #expect(reachedServer - start >= .milliseconds(50), "one way \(reachedServer - start)")
        #expect(firstEcho - start >= .milliseconds(100), "round trip \(firstEcho - start)")
        #expect(echoes.inbox.withLockedValue { $0.outOfOrder } == 0 && arrivals.inbox.withLockedValue { $0.outOfOrder } == 0)

        await client.close()
        try await server.stop().get()
        try await group.shutdownGracefully()
    }
}
