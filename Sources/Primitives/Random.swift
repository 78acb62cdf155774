// Seeded randomness. Nothing in csmr draws from the system's random source where a run must
// replay: simulations, workloads and tests take a seed and derive every generator from it.

/// SplitMix64 (Steele, Lea and Flood): tiny, fast, and good enough for simulation and load
/// generation. Also used to derive independent child seeds from one printed seed.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xbf58_476d_1ce4_e5b9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94d0_49bb_1331_11eb
        return mixed ^ (mixed >> 31)
    }

    /// A generator whose stream is independent of this one's, for the sub-part named `stream`.
    public func derived(stream: UInt64) -> SplitMix64 {
        var mixer = SplitMix64(seed: state ^ (stream &* 0xd605_0b7f_4c2b_3a91))
        return SplitMix64(seed: mixer.next())
    }

    /// True with probability `probability` (clamped to 0...1).
    public mutating func chance(_ probability: Double) -> Bool {
        if probability <= 0 { return false }
        if probability >= 1 { return true }
        return Double(next() >> 11) * 0x1.0p-53 < probability
    }

    /// A uniform double in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}
