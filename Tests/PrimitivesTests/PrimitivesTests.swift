import Primitives
import Testing

@Suite struct ByteCodingTests {
    @Test func integersAndStringsRoundTrip() throws {
        var writer = ByteWriter()
        writer.write(UInt8(7)); writer.write(UInt16(0xBEEF)); writer.write(UInt32(0xDEAD_BEEF))
        writer.write(UInt64.max); writer.write(true); writer.write("héllo")
        var reader = ByteReader(writer.bytes)
        #expect(try reader.readUInt8() == 7)
        #expect(try reader.readUInt16() == 0xBEEF)
        #expect(try reader.readUInt32() == 0xDEAD_BEEF)
        #expect(try reader.readUInt64() == UInt64.max)
        #expect(try reader.readBool())
        #expect(try reader.readString(maxBytes: 100) == "héllo")
        try reader.expectEnd()
    }

    @Test func integersAreBigEndian() {
        var writer = ByteWriter()
        writer.write(UInt32(0x0102_0304))
        #expect(writer.bytes == [1, 2, 3, 4])
    }

    @Test func readsPastTheEndAreTypedErrors() {
        var reader = ByteReader([0, 0, 0, 9, 65])
        #expect(throws: DecodeError.truncated(offset: 4, needed: 8)) { try reader.readString(maxBytes: 100) }
        var short = ByteReader([1, 2])
        #expect(throws: DecodeError.truncated(offset: 0, needed: 2)) { try short.readUInt32() }
    }

    @Test func oversizedLengthsAreRefusedBeforeReading() {
        var reader = ByteReader([0xFF, 0xFF, 0xFF, 0xFF])
        #expect(throws: DecodeError.lengthTooLarge(offset: 0, length: 0xFFFF_FFFF, limit: 10)) { try reader.readBlob(maxBytes: 10) }
    }

    @Test func forgedCountsCannotExceedTheBytesLeft() {
        var reader = ByteReader([0, 0, 0, 200, 1, 2])
        #expect(throws: DecodeError.self) { try reader.readCount(max: 1_000, minElementBytes: 4) }
    }

    @Test func invalidUTF8IsATypedError() {
        var reader = ByteReader([0, 0, 0, 2, 0xC3, 0x28])
        #expect(throws: DecodeError.invalidUTF8(offset: 0)) { try reader.readString(maxBytes: 10) }
    }

    /// The ASCII fast path agrees with the standard library's validation on every input: ASCII,
    /// valid multi-byte UTF-8 and invalid bytes, of every length around the eight-byte step, read
    /// from a slice that does not start at index 0.
    @Test func stringsDecodeAsTheStandardValidatorSays() throws {
        var random = SplitMix64(seed: 12)
        let alphabets: [[UInt8]] = [
            Array(0x20...0x7E),
            Array("aé€😀".utf8),
            [0x41, 0x7F, 0x80, 0xC3, 0xA9, 0xE2, 0xFF, 0xF0, 0x9F],
        ]
        for round in 0..<3_000 {
            let alphabet = alphabets[round % alphabets.count]
            let length = Int(random.next() % 40)
            let body = (0..<length).map { _ in alphabet[Int(random.next() % UInt64(alphabet.count))] }
            var writer = ByteWriter()
            writer.write(UInt8(9))
            writer.write(bytes: body)
            var reader = ByteReader(writer.bytes[1...])
            let expected = String(validating: body, as: UTF8.self)
            if let expected {
                #expect(try reader.readString(maxBytes: 100) == expected)
                try reader.expectEnd()
            } else {
                #expect(throws: DecodeError.invalidUTF8(offset: 0)) { try reader.readString(maxBytes: 100) }
            }
        }
    }

    @Test func booleansOtherThanZeroOrOneAreRefused() {
        var reader = ByteReader([2])
        #expect(throws: DecodeError.self) { try reader.readBool() }
    }
}

@Suite struct RandomTests {
    @Test func theSameSeedGivesTheSameStream() {
        var one = SplitMix64(seed: 7), two = SplitMix64(seed: 7)
        for _ in 0..<100 { #expect(one.next() == two.next()) }
    }

    @Test func derivedStreamsDifferFromEachOtherAndTheParent() {
        let parent = SplitMix64(seed: 7)
        var a = parent.derived(stream: 1), b = parent.derived(stream: 2), p = parent
        let first = [a.next(), b.next(), p.next()]
        #expect(Set(first).count == 3)
    }

    @Test func unitIsUniformEnough() {
        var random = SplitMix64(seed: 1)
        var buckets = [Int](repeating: 0, count: 10)
        for _ in 0..<100_000 { buckets[Int(random.unit() * 10)] += 1 }
        for bucket in buckets { #expect(abs(bucket - 10_000) < 600) }
    }
}

@Suite struct DigestTests {
    @Test func digestIsFNV1a() {
        // Published FNV-1a 64-bit test vectors.
        #expect(Digest(of: []).value == 0xcbf2_9ce4_8422_2325)
        #expect(Digest(of: Array("a".utf8)).value == 0xaf63_dc4c_8601_ec8c)
        #expect(Digest(of: Array("foobar".utf8)).value == 0x8594_4171_f739_67e8)
    }
}

@Suite struct LinkTests {
    @Test func aPartitionCutsBothWaysBetweenSidesAndNothingWithinOne() {
        let cut = Link.cut(bySides: [[0, 1], [2], [3]], replicas: 5)
        #expect(cut.contains(Link(0, 2)) && cut.contains(Link(2, 0)) && cut.contains(Link(2, 3)) && cut.contains(Link(3, 1)))
        #expect(!cut.contains(Link(0, 1)) && !cut.contains(Link(1, 0)))
        // Replica 4 is on no side: it keeps every link.
        #expect(!cut.contains { $0.from == 4 || $0.to == 4 })
        #expect(cut.count == 2 * (2 * 1 + 2 * 1 + 1 * 1))
    }

    @Test func indicesOutsideTheGroupAndAReplicaOnTwoSidesCutNothingOfTheirOwn() {
        #expect(Link.cut(bySides: [[0, 9], [1, -1]], replicas: 3) == [Link(0, 1), Link(1, 0)])
        #expect(!Link.cut(bySides: [[0], [0, 1]], replicas: 2).contains(Link(0, 0)))
    }
}
