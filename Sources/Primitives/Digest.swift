// A state digest: equal state gives an equal digest on every replica and every run.
//
// FNV-1a (64-bit) over a canonical encoding. It detects divergence between replicas; it is not a
// defence against an adversary, which SMR with crash faults does not need.

public struct Digest: Hashable, Sendable, CustomStringConvertible {
    public private(set) var value: UInt64

    private static let offsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325
    private static let prime: UInt64 = 0x0000_0100_0000_01b3

    public init() { value = Digest.offsetBasis }

    public init(of bytes: some Sequence<UInt8>) {
        self.init()
        update(bytes)
    }

    public mutating func update(_ bytes: some Sequence<UInt8>) {
        for byte in bytes {
            value = (value ^ UInt64(byte)) &* Digest.prime
        }
    }

    /// Folds another digest in, order-sensitively (for digests of several parts).
    public mutating func combine(_ other: Digest) {
        var writer = ByteWriter(capacity: 8)
        writer.write(other.value)
        update(writer.bytes)
    }

    public var description: String {
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
