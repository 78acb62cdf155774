// Identifiers shared by every module. Plain integers inside, distinct types outside, so a slot
// cannot be passed where a client id is expected.

/// A client session. Sessions are how replicas execute each request at most once.
public struct ClientID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public static func < (lhs: ClientID, rhs: ClientID) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "c\(rawValue)" }
}

/// A replica's index within its group, 0 ..< n.
public struct ReplicaID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: Int
    public init(_ rawValue: Int) { self.rawValue = rawValue }
    public static func < (lhs: ReplicaID, rhs: ReplicaID) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "r\(rawValue)" }
}

// Client ids share one 64-bit space, split into ranges so the kinds never collide. Replicas
// de-duplicate proposals on (client id, sequence), so two writers of one id would lose requests.
extension ClientID {
    /// Sessions, numbered 1, 2, … by the replicated session table; never reaches the top.
    public static let sessionRange: Range<UInt64> = 1..<(1 << 48)
    /// Pseudo-clients of extension steps: 2^56 + the origin group.
    public static let extensionRange: Range<UInt64> = (1 << 56)..<((1 << 56) + (1 << 32))
    /// Nonces: what a client sends `openSession` with, before it has a session. Random, so
    /// clients in different processes do not collide; the top bit keeps them out of the ranges
    /// above.
    public static let nonceRange: ClosedRange<UInt64> = (1 << 63)...UInt64.max

    /// The pseudo-client that carries origin group `origin`'s extension steps.
    public static func extensionClient(origin: UInt32) -> ClientID { ClientID(extensionRange.lowerBound + UInt64(origin)) }

    /// A fresh nonce (63 random bits) from `random`: seeded in simulations, the system's
    /// generator in real clients.
    public static func nonce(using random: inout some RandomNumberGenerator) -> ClientID {
        ClientID(random.next() | nonceRange.lowerBound)
    }

    public var isNonce: Bool { Self.nonceRange.contains(rawValue) }
}
