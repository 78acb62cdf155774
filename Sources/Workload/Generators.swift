import Foundation
import Primitives

/// Draws key indices in 0 ..< count from the workload's distribution.
public struct KeyGenerator: Sendable {
    public let spec: KeySpec
    private let zipf: Zipfian?
    private var nextSequential = 0

    public init(spec: KeySpec) {
        self.spec = spec
        zipf = spec.distribution == .zipfian ? Zipfian(count: spec.count, theta: spec.zipfTheta) : nil
    }

    public mutating func next(_ random: inout SplitMix64) -> Int {
        switch spec.distribution {
        case .uniform:
            return Int(random.next() % UInt64(spec.count))
        case .zipfian:
            return zipf!.next(&random)
        case .hotspot:
            // The first `hotspotFraction` of the keys get `hotspotProbability` of the accesses.
            let hot = max(1, Int((Double(spec.count) * spec.hotspotFraction).rounded()))
            if hot >= spec.count || random.chance(spec.hotspotProbability) { return Int(random.next() % UInt64(hot)) }
            return hot + Int(random.next() % UInt64(spec.count - hot))
        case .sequential:
            defer { nextSequential = (nextSequential + 1) % spec.count }
            return nextSequential
        }
    }

    public static func key(_ index: Int) -> String { "k\(index)" }
}

/// Zipfian ranks, rank 0 the most popular, P(rank i) = (1 / (i + 1)^θ) / ζ(n, θ). The method of
/// Gray et al., "Quickly generating billion-record synthetic databases" (SIGMOD 1994), as YCSB
/// uses it: constant time per draw after an O(n) computation of ζ(n, θ) at start-up.
public struct Zipfian: Sendable {
    public let count: Int
    public let theta: Double
    let zetaN: Double
    let alpha: Double
    let eta: Double

    public init(count: Int, theta: Double) {
        precondition(count >= 1 && theta > 0 && theta < 1, "zipfian needs count ≥ 1 and 0 < θ < 1, got \(count), \(theta)")
        self.count = count
        self.theta = theta
        zetaN = Self.zeta(count, theta)
        let zeta2 = Self.zeta(min(2, count), theta)
        alpha = 1 / (1 - theta)
        eta = count == 1 ? 1 : (1 - pow(2 / Double(count), 1 - theta)) / (1 - zeta2 / zetaN)
    }

    static func zeta(_ count: Int, _ theta: Double) -> Double {
        var sum = 0.0
        for rank in 1...count { sum += 1 / pow(Double(rank), theta) }
        return sum
    }

    /// The probability theory gives `rank`.
    public func probability(ofRank rank: Int) -> Double { 1 / pow(Double(rank + 1), theta) / zetaN }

    public func next(_ random: inout SplitMix64) -> Int {
        let u = random.unit()
        let uz = u * zetaN
        if uz < 1 { return 0 }
        if uz < 1 + pow(0.5, theta) { return min(1, count - 1) }
        return min(count - 1, Int(Double(count) * pow(eta * u - eta + 1, alpha)))
    }
}

/// Picks operation kinds in the workload's proportions.
public struct MixPicker: Sendable {
    private let kinds: [OperationKind]
    private let cumulative: [Double]

    public init(mix: [OperationKind: Double]) {
        kinds = mix.keys.sorted()
        var running = 0.0
        cumulative = kinds.map { running += mix[$0]!; return running }
    }

    public func next(_ random: inout SplitMix64) -> OperationKind {
        let u = random.unit() * (cumulative.last ?? 1)
        for (index, bound) in cumulative.enumerated() where u < bound { return kinds[index] }
        return kinds.last!
    }
}

/// Open-loop inter-arrival gaps, in nanoseconds.
public struct ArrivalGenerator: Sendable {
    public let process: ArrivalProcess
    public let rateOperationsPerSecond: Double

    public init(process: ArrivalProcess, rateOperationsPerSecond: Double) {
        self.process = process
        self.rateOperationsPerSecond = rateOperationsPerSecond
    }

    public func nextGapNanoseconds(_ random: inout SplitMix64) -> UInt64 {
        let mean = 1e9 / rateOperationsPerSecond
        switch process {
        case .uniform: return UInt64(mean.rounded())
        case .poisson:
            // Exponential gaps; 1 - u is in (0, 1], so the logarithm is finite.
            return UInt64((-log(1 - random.unit()) * mean).rounded())
        }
    }
}

/// Values of the configured sizes. Content is cheap filler; only the size matters to the system.
public struct ValueGenerator: Sendable {
    public let spec: ValueSpec
    private let filler: String

    public init(spec: ValueSpec) {
        self.spec = spec
        filler = String(repeating: "v", count: spec.sizeBytesMax)
    }

    public func next(_ random: inout SplitMix64) -> String {
        let span = spec.sizeBytesMax - spec.sizeBytesMin
        let size = spec.sizeBytesMin + (span == 0 ? 0 : Int(random.next() % UInt64(span + 1)))
        return String(filler.prefix(size))
    }
}
