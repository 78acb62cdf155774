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

/// Zipfian ranks, rank 0 the most popular: P(rank i) = (1 / (i + 1)^θ) / ζ(n, θ).
///
/// Sampled exactly by rejection-inversion (Hörmann and Derflinger, "Rejection-inversion to generate
/// variates from monotone discrete distributions", 1996): constant expected time per draw and no
/// table, so a hundred million keys cost nothing at start-up. (The YCSB generator of Gray et al.
/// is only approximate: its middle ranks are off by 10 % and more, which a test here showed.)
/// ζ(n, θ) is computed only for `probability(ofRank:)`, lazily.
public struct Zipfian: Sendable {
    public let count: Int
    public let theta: Double
    private let hIntegralFirst: Double
    private let hIntegralLast: Double
    private let squeeze: Double

    public init(count: Int, theta: Double) {
        precondition(count >= 1 && theta > 0, "zipfian needs count ≥ 1 and θ > 0, got \(count), \(theta)")
        self.count = count
        self.theta = theta
        hIntegralFirst = Self.hIntegral(1.5, theta) - 1
        hIntegralLast = Self.hIntegral(Double(count) + 0.5, theta)
        squeeze = 2 - Self.hIntegralInverse(Self.hIntegral(2.5, theta) - Self.h(2, theta), theta)
    }

    /// The probability theory gives `rank` (O(n): for tests and reports, not the hot path).
    public func probability(ofRank rank: Int) -> Double {
        var zeta = 0.0
        for k in 1...count { zeta += 1 / pow(Double(k), theta) }
        return 1 / pow(Double(rank + 1), theta) / zeta
    }

    public func next(_ random: inout SplitMix64) -> Int {
        while true {
            let u = hIntegralLast + random.unit() * (hIntegralFirst - hIntegralLast)
            let x = Self.hIntegralInverse(u, theta)
            let k = min(max(Int(x + 0.5), 1), count)
            if Double(k) - x <= squeeze || u >= Self.hIntegral(Double(k) + 0.5, theta) - Self.h(Double(k), theta) {
                return k - 1
            }
        }
    }

    /// h(x) = x^-θ, the unnormalised density.
    private static func h(_ x: Double, _ theta: Double) -> Double { exp(-theta * log(x)) }

    /// H(x), an antiderivative of h: (x^(1-θ) - 1) / (1 - θ), written to stay exact near θ = 1.
    private static func hIntegral(_ x: Double, _ theta: Double) -> Double {
        let logX = log(x)
        return expm1OverX((1 - theta) * logX) * logX
    }

    private static func hIntegralInverse(_ y: Double, _ theta: Double) -> Double {
        var t = y * (1 - theta)
        if t < -1 { t = -1 }  // Rounding can push t just below -1, where the logarithm fails.
        return exp(log1pOverX(t) * y)
    }

    /// (e^x - 1) / x, with its limit 1 at 0.
    private static func expm1OverX(_ x: Double) -> Double {
        abs(x) > 1e-8 ? expm1(x) / x : 1 + x * 0.5 * (1 + x / 3 * (1 + 0.25 * x))
    }

    /// ln(1 + x) / x, with its limit 1 at 0.
    private static func log1pOverX(_ x: Double) -> Double {
        abs(x) > 1e-8 ? log1p(x) / x : 1 - x * (0.5 - x * (1.0 / 3 - 0.25 * x))
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
        let size = nextSize(&random)
        return String(filler.utf8.prefix(size))!
    }

    private func nextSize(_ random: inout SplitMix64) -> Int {
        let span = spec.sizeBytesMax - spec.sizeBytesMin
        return spec.sizeBytesMin + (span == 0 ? 0 : Int(random.next() % UInt64(span + 1)))
    }

    /// A value no other write of the run carries: the writer and its sequence number, padded to a
    /// size drawn like `next`'s. A lost write or a stale read then shows in any history checker.
    /// The tag is kept whole even when it is longer than the drawn size.
    ///
    /// Written as ASCII bytes in one buffer: the load generator makes one per write, and building
    /// it from `Character`s (prefix, count, concatenation) cost a tenth of a saturated in-process
    /// run's CPU, taken from the replicas it shares the machine with.
    public func unique(client: UInt64, sequence: UInt64, _ random: inout SplitMix64) -> String {
        let size = nextSize(&random)
        var tag: [UInt8] = [UInt8(ascii: "c")]
        Self.appendDigits(client, radix: 16, to: &tag)
        tag.append(UInt8(ascii: "s"))
        Self.appendDigits(sequence, radix: 10, to: &tag)
        tag.append(UInt8(ascii: "."))
        let length = max(size, tag.count)
        return String(unsafeUninitializedCapacity: length) { buffer in
            _ = buffer.initialize(from: tag)
            buffer[tag.count..<length].update(repeating: UInt8(ascii: "v"))
            return length
        }
    }

    private static func appendDigits(_ value: UInt64, radix: UInt64, to bytes: inout [UInt8]) {
        let start = bytes.count
        var rest = value
        repeat {
            let digit = UInt8(rest % radix)
            bytes.append(digit < 10 ? UInt8(ascii: "0") + digit : UInt8(ascii: "a") + digit - 10)
            rest /= radix
        } while rest > 0
        bytes[start...].reverse()
    }
}
