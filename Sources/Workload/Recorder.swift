import Foundation
import Histogram

/// Latency histograms per operation kind, merged across every client of a run.
///
/// Values are microseconds. One histogram per kind for the measured window, and coarser ones per
/// second of the whole run (warm-up included) for the time series. Histograms are merged, never
/// averaged: percentiles of the whole are computed from the whole.
public struct LatencyRecorder: Sendable {
    public static let highestTrackableMicroseconds: UInt64 = 3_600_000_000

    public private(set) var measured: [OperationKind: Histogram<UInt64>] = [:]
    public private(set) var errors: [OperationKind: Int] = [:]
    public private(set) var perSecond: [Int: [OperationKind: Histogram<UInt64>]] = [:]
    public private(set) var events: [Int: [String]] = [:]

    public init() {}

    static func makeHistogram(digits: SignificantDigits = .three) -> Histogram<UInt64> {
        Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: highestTrackableMicroseconds, numberOfSignificantValueDigits: digits)
    }

    /// Records one completed operation.
    public mutating func record(_ kind: OperationKind, latencyMicroseconds: UInt64, second: Int, measured isMeasured: Bool) {
        let value = min(max(latencyMicroseconds, 1), Self.highestTrackableMicroseconds)
        if isMeasured {
            _ = measured[kind, default: Self.makeHistogram()].record(value)
        }
        _ = perSecond[second, default: [:]][kind, default: Self.makeHistogram(digits: .two)].record(value)
    }

    public mutating func recordError(_ kind: OperationKind) { errors[kind, default: 0] += 1 }

    public mutating func recordEvent(_ label: String, second: Int) { events[second, default: []].append(label) }

    public mutating func merge(_ other: LatencyRecorder) {
        for (kind, histogram) in other.measured { measured[kind, default: Self.makeHistogram()].add(histogram) }
        for (kind, count) in other.errors { errors[kind, default: 0] += count }
        for (second, kinds) in other.perSecond {
            for (kind, histogram) in kinds { perSecond[second, default: [:]][kind, default: Self.makeHistogram(digits: .two)].add(histogram) }
        }
        for (second, labels) in other.events { events[second, default: []] += labels }
    }

    /// All kinds merged.
    public var all: Histogram<UInt64> {
        var total = Self.makeHistogram()
        for histogram in measured.values { total.add(histogram) }
        return total
    }

    public var measuredCount: UInt64 { measured.values.reduce(0) { $0 + $1.totalCount } }
}
