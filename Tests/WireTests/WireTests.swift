import Primitives
import Services
import Testing
import Wire

/// One message of every shape, including edge values.
let sampleMessages: [Message] = {
    let commands: [Command] = [
        .kvGet(key: "k"), .kvGet(key: ""), .kvPut(key: "k", value: String(repeating: "v", count: 100)),
        .kvPut(key: "ключ", value: "значение"), .lockAcquire(name: "L"), .lockRelease(name: "L"),
        .logAppend(entry: "entry"), .logRetrieve(first: 0, last: UInt64.max), .logTruncate(index: 12), .openSession,
    ]
    let replies: [Reply] = [
        .value(nil), .value("x"), .value(""), .stored, .flag(true), .flag(false), .index(UInt64.max),
        .entries(first: 3, ["a", "b", ""]), .entries(first: 0, []),
        .failure(.outOfRange(first: 1, last: 9, available: 2..<4)), .failure(.emptyRange(first: 2, last: 1)),
        .failure(.rangeTooLong(requested: 9, limit: 4)), .failure(.sessionExpired),
        .failure(.staleSequence(sequence: 1, latest: 3)), .failure(.notPermitted), .failure(.outcomeUnknown), .session(ClientID(42)),
    ]
    var messages = commands.enumerated().map { index, command in
        Message.request(Request(client: ClientID(UInt64(index)), sequence: UInt64(index + 1), command: command))
    }
    messages += [
        .redirect(Redirect(client: ClientID(7), sequence: 3, reason: .notLeader, replica: 2)),
        .redirect(Redirect(client: ClientID(UInt64.max), sequence: UInt64.max, reason: .unavailable, replica: nil)),
        .redirect(Redirect(client: ClientID(1), sequence: 1, reason: .overloaded, replica: 0)),
        .extensionStep(origin: 0, index: 1, entry: "g0#1 put k=v"), .extensionStep(origin: UInt32.max, index: UInt64.max, entry: ""),
        .extensionApplied(origin: 3, index: 9, applied: 8), .extensionApplied(origin: 0, index: UInt64.max, applied: UInt64.max),
    ]
    // The latency breakdown's kinds: a sampled request, and replies carrying stage durations.
    messages += [
        .sampledRequest(Request(client: ClientID(5), sequence: 9, command: .kvPut(key: "k", value: "v"))),
        .reply(ClientReply(client: ClientID(5), sequence: 9, reply: .stored,
                           stages: ReplicaStages(queueNanoseconds: 1, orderingNanoseconds: 250_000, executionNanoseconds: 0, holdNanoseconds: UInt64.max))),
        .reply(ClientReply(client: ClientID(6), sequence: 1, reply: .value(nil),
                           stages: ReplicaStages(queueNanoseconds: 0, orderingNanoseconds: 0, executionNanoseconds: 0, holdNanoseconds: 0))),
    ]
    messages += replies.enumerated().map { index, reply in
        Message.reply(ClientReply(client: ClientID(UInt64.max - UInt64(index)), sequence: UInt64(index), reply: reply))
    }
    return messages
}()

@Suite struct FramingTests {
    @Test(arguments: sampleMessages)
    func everyMessageRoundTrips(message: Message) throws {
        #expect(try WireFormat.decode(WireFormat.encode(message)) == message)
    }

    @Test func framesFedOneByteAtATimeDecodeToTheSameMessages() throws {
        var stream = ByteWriter()
        for message in sampleMessages { WireFormat.encode(message, into: &stream) }
        var decoder = FrameDecoder()
        var decoded: [Message] = []
        for byte in stream.bytes {
            decoder.append(CollectionOfOne(byte))
            while let message = try decoder.next() { decoded.append(message) }
        }
        #expect(decoded == sampleMessages)
        #expect(decoder.bufferedBytes == 0)
    }

    @Test func framesSplitAtRandomPointsDecodeToTheSameMessages() throws {
        var stream = ByteWriter()
        for message in sampleMessages { WireFormat.encode(message, into: &stream) }
        var random = SplitMix64(seed: 5)
        for _ in 0..<200 {
            var decoder = FrameDecoder()
            var decoded: [Message] = []
            var offset = 0
            while offset < stream.count {
                let chunk = Int(random.next() % 40) + 1
                let end = min(stream.count, offset + chunk)
                decoder.append(stream.bytes[offset..<end])
                offset = end
                while let message = try decoder.next() { decoded.append(message) }
            }
            #expect(decoded == sampleMessages)
        }
    }

    @Test func anIncompleteFrameAsksForMoreBytes() throws {
        let frame = WireFormat.encode(sampleMessages[2])
        var decoder = FrameDecoder()
        decoder.append(frame.dropLast())
        #expect(try decoder.next() == nil)
        #expect(decoder.bytesNeeded == 1)
        #expect(throws: WireError.truncated(needed: 1)) { try WireFormat.decode(Array(frame.dropLast())) }
    }

    @Test func anOversizedLengthIsRefusedBeforeBuffering() {
        var decoder = FrameDecoder(limits: WireLimits(frameBytesMax: 1024, codec: CodecLimits(stringBytesMax: 512)))
        decoder.append([0x7F, 0xFF, 0xFF, 0xFF])
        #expect(throws: WireError.frameTooLarge(length: 0x7FFF_FFFF, limit: 1024)) { try decoder.next() }
    }

    @Test func anUnknownVersionIsRefused() {
        var frame = WireFormat.encode(sampleMessages[0])
        frame[4] = 2
        #expect(throws: WireError.unknownVersion(2)) { try WireFormat.decode(frame) }
    }

    @Test func anUnknownKindIsRefused() {
        var frame = WireFormat.encode(sampleMessages[0])
        frame[5] = 200
        #expect(throws: WireError.unknownKind(200)) { try WireFormat.decode(frame) }
    }

    @Test func aFrameTooShortForItsHeaderIsRefused() {
        #expect(throws: WireError.frameTooShort(length: 1)) { try WireFormat.decode([0, 0, 0, 1, 1]) }
    }

    @Test func trailingBytesInsideAFrameAreMalformed() {
        var frame = WireFormat.encode(.request(Request(client: ClientID(1), sequence: 1, command: .kvGet(key: "k"))))
        frame.append(0)
        frame[3] += 1
        #expect(throws: WireError.malformed(kind: 1, .trailingBytes(count: 1))) { try WireFormat.decode(frame) }
    }

    @Test func aStringLongerThanTheLimitIsMalformed() {
        let frame = WireFormat.encode(.request(Request(client: ClientID(1), sequence: 1, command: .kvGet(key: String(repeating: "k", count: 200)))))
        let limits = WireLimits(frameBytesMax: 4096, codec: CodecLimits(stringBytesMax: 100))
        #expect(throws: WireError.malformed(kind: 1, .lengthTooLarge(offset: 17, length: 200, limit: 100))) {
            try WireFormat.decode(frame, limits: limits)
        }
    }

    @Test func aSampledRequestAndAStagedReplyTravelAsTheirOwnKinds() throws {
        let request = Request(client: ClientID(3), sequence: 4, command: .kvGet(key: "k"))
        #expect(WireFormat.encode(.sampledRequest(request))[5] == FrameKind.sampledRequest)
        #expect(WireFormat.encode(.reply(ClientReply(client: ClientID(3), sequence: 4, reply: .stored)))[5] == FrameKind.reply)
        let staged = ClientReply(client: ClientID(3), sequence: 4, reply: .stored,
                                 stages: ReplicaStages(queueNanoseconds: 10, orderingNanoseconds: 20, executionNanoseconds: 30, holdNanoseconds: 40))
        #expect(WireFormat.encode(.reply(staged))[5] == FrameKind.stagedReply)
        // The payloads match kinds 1 and 2 (plus the durations): a kind 5 is a request, nothing more.
        #expect(WireFormat.payload(of: .sampledRequest(request)) == WireFormat.payload(of: .request(request)))
    }

    @Test func aStagedReplyMissingDurationsIsMalformed() {
        let staged = ClientReply(client: ClientID(3), sequence: 4, reply: .stored,
                                 stages: ReplicaStages(queueNanoseconds: 10, orderingNanoseconds: 20, executionNanoseconds: 30, holdNanoseconds: 40))
        let payload = WireFormat.payload(of: .reply(staged))
        for cut in 1...8 {
            #expect(throws: WireError.self) { try WireFormat.decode(kind: FrameKind.stagedReply, payload: Array(payload.dropLast(cut))) }
        }
        // A plain reply's payload sent as kind 6 lacks all four.
        let plain = WireFormat.payload(of: .reply(ClientReply(client: ClientID(3), sequence: 4, reply: .stored)))
        #expect(throws: WireError.self) { try WireFormat.decode(kind: FrameKind.stagedReply, payload: plain) }
    }

    @Test func sequenceZeroIsMalformed() {
        var frame = WireFormat.encode(.request(Request(client: ClientID(1), sequence: 1, command: .kvGet(key: "k"))))
        frame[6 + 8 + 7] = 0
        #expect(throws: WireError.malformed(kind: 1, .invalidValue(offset: 8, reason: "request sequence must start at 1"))) {
            try WireFormat.decode(frame)
        }
    }
}

/// Untrusted bytes never trap: random and mutated inputs only ever give messages or typed errors.
@Suite struct DecoderFuzzTests {
    static let limits = WireLimits(frameBytesMax: 1 << 16)

    /// Decodes `bytes` as a stream; returns how many messages came out before it stopped.
    @discardableResult
    static func decodeStream(_ bytes: [UInt8]) -> Int {
        var decoder = FrameDecoder(limits: limits)
        decoder.append(bytes)
        var count = 0
        do {
            while try decoder.next() != nil { count += 1 }
        } catch {
            // Any WireError is an acceptable answer to garbage.
        }
        return count
    }

    @Test func oneHundredThousandRandomAndMutatedInputsNeverCrash() {
        var random = SplitMix64(seed: 0xF00D)
        let valid = sampleMessages.map { WireFormat.encode($0) }
        var decodedMessages = 0
        for round in 0..<100_000 {
            var bytes: [UInt8]
            switch round % 4 {
            case 0:
                // Pure garbage, with a plausible length prefix half the time.
                let count = Int(random.next() % 64)
                bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                if random.chance(0.5), count >= 6 {
                    bytes.replaceSubrange(0..<4, with: [0, 0, 0, UInt8(count - 4)])
                    bytes[4] = WireFormat.version
                }
            case 1:
                // A valid frame with bytes flipped.
                bytes = valid[Int(random.next() % UInt64(valid.count))]
                for _ in 0...(random.next() % 4) {
                    bytes[Int(random.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: random.next())
                }
            case 2:
                // A valid frame cut short or extended.
                bytes = valid[Int(random.next() % UInt64(valid.count))]
                if random.chance(0.5) {
                    bytes.removeLast(Int(random.next() % UInt64(bytes.count)))
                } else {
                    bytes += (0..<(random.next() % 16)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                }
            default:
                // Several valid frames with one byte inserted or deleted somewhere.
                bytes = (0..<3).flatMap { _ in valid[Int(random.next() % UInt64(valid.count))] }
                let at = Int(random.next() % UInt64(bytes.count))
                if random.chance(0.5) { bytes.remove(at: at) } else { bytes.insert(UInt8(truncatingIfNeeded: random.next()), at: at) }
            }
            decodedMessages += Self.decodeStream(bytes)
            // The one-shot decoder must hold up too.
            _ = try? WireFormat.decode(bytes, limits: Self.limits)
        }
        // Mutation keeps many frames intact, so a decoder that refused everything would show here.
        #expect(decodedMessages > 10_000)
    }

    @Test func randomSnapshotsNeverCrashTheRestorer() {
        var random = SplitMix64(seed: 0xBEEF)
        var machine = StateMachine()
        for _ in 0..<5 { _ = machine.apply(Request(client: ClientID(0), sequence: 1, command: .openSession)) }
        for step in 1...50 {
            _ = machine.apply(Request(client: ClientID(UInt64(step % 5 + 1)), sequence: UInt64(step / 5 + 1),
                                      command: step % 2 == 0 ? .kvPut(key: "k\(step)", value: "v") : .logAppend(entry: "e")))
        }
        let snapshot = machine.snapshot()
        for _ in 0..<5_000 {
            var bytes = snapshot
            for _ in 0...(random.next() % 3) {
                bytes[Int(random.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: random.next())
            }
            _ = try? StateMachine(snapshot: bytes, codec: CodecLimits(snapshotItemsMax: 10_000))
        }
    }
}
