import NIOCore
import NIOEmbedded
import Primitives
import Testing
import Wire
@testable import Transport

let testCluster = ClusterIdentity(name: "test-cluster")

@Suite struct HandshakeCodecTests {
    static let samples: [Handshake] = [
        Handshake(cluster: testCluster, role: .peer, group: 0, replica: 2),
        Handshake(cluster: ClusterIdentity(name: "", id: 0), role: .client, group: UInt32.max),
        Handshake(protocolVersion: UInt16.max, cluster: ClusterIdentity(name: String(repeating: "é", count: 128), id: UInt64.max),
                  role: .peer, group: 7, replica: UInt32.max),
    ]

    @Test(arguments: samples)
    func aHandshakeRoundTripsThroughItsPayload(handshake: Handshake) throws {
        #expect(try Handshake.decode(payload: handshake.encodePayload()) == handshake)
    }

    @Test func theClusterIdIsDerivedFromTheNameWhenNotConfigured() {
        #expect(ClusterIdentity(name: "a").id == ClusterIdentity(name: "a").id)
        #expect(ClusterIdentity(name: "a").id != ClusterIdentity(name: "b").id)
    }

    @Test func everyTruncationAndTrailingByteIsATypedError() {
        let payload = Handshake.samples[0].encodePayload()
        for length in 0..<payload.count {
            #expect(throws: HandshakeError.self) { try Handshake.decode(payload: payload[..<length]) }
        }
        #expect(throws: HandshakeError.self) { try Handshake.decode(payload: payload + [0]) }
    }

    @Test func randomBytesDecodeWithoutTrapping() {
        var random = SplitMix64(seed: 0x5eed)
        let valid = Handshake.samples[0].encodePayload()
        var decoded = 0
        for round in 0..<20_000 {
            var bytes: [UInt8]
            if round % 2 == 0 {
                bytes = (0..<Int(random.next() % 64)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            } else {
                // Mutations of a valid payload reach deeper into the decoder.
                bytes = valid
                for _ in 0..<(1 + random.next() % 3) {
                    bytes[Int(random.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: random.next())
                }
            }
            if (try? Handshake.decode(payload: bytes)) != nil { decoded += 1 }
        }
        #expect(decoded < 20_000)
    }

    @Test func theExpectationNamesWhatIsWrong() throws {
        let expectation = HandshakeExpectation(cluster: testCluster, group: 1, role: .peer)
        try expectation.check(Handshake(cluster: testCluster, role: .peer, group: 1, replica: 0))
        #expect(throws: HandshakeError.cluster(got: ClusterIdentity(name: "other"), expected: testCluster)) {
            try expectation.check(Handshake(cluster: ClusterIdentity(name: "other"), role: .peer, group: 1))
        }
        #expect(throws: HandshakeError.group(got: 2, expected: 1)) {
            try expectation.check(Handshake(cluster: testCluster, role: .peer, group: 2))
        }
        #expect(throws: HandshakeError.role(got: .client, expected: .peer)) {
            try expectation.check(Handshake(cluster: testCluster, role: .client, group: 1))
        }
        #expect(throws: HandshakeError.protocolVersion(got: 9, expected: Handshake.protocolVersionCurrent)) {
            try expectation.check(Handshake(protocolVersion: 9, cluster: testCluster, role: .peer, group: 1))
        }
    }
}

extension Handshake {
    static var samples: [Handshake] { HandshakeCodecTests.samples }
}

@Suite struct RawFrameDecoderTests {
    @Test func framesSplitAtEveryByteDecodeToTheSameFrames() throws {
        let frames = [RawFrame(kind: 1, payload: []), RawFrame(kind: 0x10, payload: Array(0..<200)), RawFrame(kind: 255, payload: [7])]
        let stream = frames.flatMap { FrameEncoding.frame(kind: $0.kind, payload: $0.payload) }
        let decoder = RawFrameDecoder(frameBytesMax: 1024)
        var buffer = ByteBuffer()
        var decoded: [RawFrame] = []
        for byte in stream {
            buffer.writeInteger(byte)
            while let frame = try decoder.nextFrame(&buffer) { decoded.append(frame) }
        }
        #expect(decoded == frames)
        #expect(buffer.readableBytes == 0)
    }

    @Test func aLengthAboveTheLimitIsRefusedFromItsFourBytesAlone() {
        let decoder = RawFrameDecoder(frameBytesMax: 64)
        var buffer = ByteBuffer(bytes: [0, 0, 0, 65])
        #expect(throws: WireError.frameTooLarge(length: 65, limit: 64)) { try decoder.nextFrame(&buffer) }
        buffer = ByteBuffer(bytes: [0xff, 0xff, 0xff, 0xff])
        #expect(throws: WireError.self) { try decoder.nextFrame(&buffer) }
    }

    @Test func aWrongVersionIsRefusedFromItsByteAlone() {
        let decoder = RawFrameDecoder(frameBytesMax: 64)
        var buffer = ByteBuffer(bytes: [0, 0, 0, 10, 2])
        #expect(throws: WireError.unknownVersion(2)) { try decoder.nextFrame(&buffer) }
        buffer = ByteBuffer(bytes: [0, 0, 0, 1])
        #expect(throws: WireError.frameTooShort(length: 1)) { try decoder.nextFrame(&buffer) }
    }

    @Test func randomStreamsNeverTrap() {
        var random = SplitMix64(seed: 42)
        let decoder = RawFrameDecoder(frameBytesMax: 256)
        for _ in 0..<5_000 {
            var buffer = ByteBuffer(bytes: (0..<Int(random.next() % 300)).map { index in
                // Small lengths and the right version often enough to reach the payload path.
                index % 4 < 2 || index == 4 ? UInt8(random.next() % 2) : UInt8(truncatingIfNeeded: random.next())
            })
            for _ in 0..<300 {
                guard let frame = try? decoder.nextFrame(&buffer) else { break }
                #expect(frame.payload.count <= 254)
            }
        }
    }
}

@Suite struct OutboundQueueTests {
    @Test func aFullQueueDropsTheNewestFrameAndCountsIt() {
        let loop = EmbeddedEventLoop()
        let queue = OutboundQueue(loop: loop, sendQueueBytesMax: 100)
        let frame = ByteBuffer(bytes: FrameEncoding.frame(kind: 1, payload: [UInt8](repeating: 0, count: 24)))
        var accepted = 0
        for _ in 0..<10 where queue.enqueue(frame) { accepted += 1 }
        #expect(accepted == 3)
        #expect(queue.pendingBytes == 90)
        #expect(queue.counters.framesDropped == 7)
        #expect(queue.counters.framesSent == 0)
        queue.clear()
        #expect(queue.pendingBytes == 0)
    }
}
