import Foundation
import Histogram

/// Latency histograms per operation kind, merged across every client of a run.
///
/// Values are microseconds. One histogram per kind for the measured window, and coarser ones for
/// the second in progress, which are reduced to count, p50 and p99 when the next second begins:
/// a run of any length keeps a few numbers per second, not a histogram per second. Histograms
/// are merged, never averaged: percentiles of the whole are computed from the whole.
public struct LatencyRecorder: Sendable {
    public static let highestTrackableMicroseconds: UInt64 = 3_600_000_000

    public private(set) var measured: [OperationKind: Histogram<UInt64>] = [:]
    public private(set) var errors: [OperationKind: Int] = [:]
    /// Finished seconds of the run: per kind, and all kinds together.
    private var finishedSeconds: [Int: [OperationKind: SecondSummary]] = [:]
    private var finishedSecondsAll: [Int: SecondSummary] = [:]
    /// The second replies are arriving in now (completion seconds only move forward), and its
    /// histograms.
    private var liveSecond: Int?
    private var live: [OperationKind: Histogram<UInt64>] = [:]
    public private(set) var events: [Int: [String]] = [:]
    /// Successful completions whose reply arrived inside the measured window, whenever they were
    /// meant to be sent: the numerator of achieved throughput.
    public private(set) var completedInWindow: [OperationKind: UInt64] = [:]
    /// Requests meant to be sent inside the measured window (sent or not): the numerator of
    /// offered load.
    public private(set) var intendedInWindow: [OperationKind: UInt64] = [:]
    /// Requests meant to be sent inside the measured window that had no reply when the drain
    /// ended (never in `errors`).
    public private(set) var unfinished: [OperationKind: Int] = [:]
    /// Requests meant to be sent per second of the run, per kind (the offered load over time).
    public private(set) var intendedPerSecond: [Int: [OperationKind: UInt64]] = [:]
    /// Client locations (see `ClientPlacement`), and the same accounting for the clients at each:
    /// its own histograms, so a location's percentiles come from its own operations. Empty
    /// without locations.
    public private(set) var locationNames: [String] = []
    public private(set) var byLocation: [LatencyRecorder] = []

    /// Each finished second's histogram of all kinds (by reply second), kept only when asked:
    /// a sweep step merges the seconds after its steady point.
    public private(set) var secondHistograms: [Int: Histogram<UInt64>] = [:]
    public var keepsSecondHistograms = false

    public init(keepsSecondHistograms: Bool = false) { self.keepsSecondHistograms = keepsSecondHistograms }

    /// A recorder that also keeps the accounting of each client location apart.
    public init(locations: [String], keepsSecondHistograms: Bool = false) {
        self.keepsSecondHistograms = keepsSecondHistograms
        locationNames = locations
        byLocation = locations.map { _ in LatencyRecorder() }
    }

    public static func makeHistogram(digits: SignificantDigits = .three) -> Histogram<UInt64> {
        Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: highestTrackableMicroseconds, numberOfSignificantValueDigits: digits)
    }

    /// Records one completed operation.
    /// - Parameters:
    ///   - second: the second of the run the reply arrived in.
    ///   - measured: whether it was meant to be sent inside the measured window (its latency then
    ///     counts, wherever it completes).
    ///   - completedInWindow: whether its reply arrived inside the measured window (it then counts
    ///     toward achieved throughput, whenever it was meant to be sent).
    ///   - location: the client's location, an index into `locationNames` (nil: none).
    public mutating func record(_ kind: OperationKind, latencyMicroseconds: UInt64, second: Int, measured isMeasured: Bool,
                                completedInWindow inWindow: Bool, location: Int? = nil) {
        if let location {
            byLocation[location].record(kind, latencyMicroseconds: latencyMicroseconds, second: second, measured: isMeasured, completedInWindow: inWindow)
        }
        let value = min(max(latencyMicroseconds, 1), Self.highestTrackableMicroseconds)
        if isMeasured {
            _ = measured[kind, default: Self.makeHistogram()].record(value)
        }
        if inWindow { completedInWindow[kind, default: 0] += 1 }
        if let current = liveSecond, second > current { finishLiveSecond() }
        if liveSecond == nil { liveSecond = second }
        _ = live[kind, default: Self.makeHistogram(digits: .two)].record(value)
    }

    private mutating func finishLiveSecond() {
        guard let second = liveSecond else { return }
        (finishedSeconds[second], finishedSecondsAll[second]) = Self.summarize(live)
        if keepsSecondHistograms {
            var all = Self.makeHistogram(digits: .two)
            for histogram in live.values { all.add(histogram) }
            secondHistograms[second] = all
        }
        live = [:]
        liveSecond = nil
    }

    private static func summarize(_ histograms: [OperationKind: Histogram<UInt64>]) -> ([OperationKind: SecondSummary], SecondSummary) {
        var all = makeHistogram(digits: .two)
        for histogram in histograms.values { all.add(histogram) }
        return (histograms.mapValues(SecondSummary.init), SecondSummary(all))
    }

    /// The histogram of all kinds for one second of the run, when seconds are kept.
    public func histogram(ofSecond second: Int) -> Histogram<UInt64>? {
        if let histogram = secondHistograms[second] { return histogram }
        guard keepsSecondHistograms, second == liveSecond else { return nil }
        var all = Self.makeHistogram(digits: .two)
        for histogram in live.values { all.add(histogram) }
        return all
    }

    /// Per second of the run (replies by the second they arrived in): per kind, and all kinds.
    public var perSecond: [Int: (kinds: [OperationKind: SecondSummary], all: SecondSummary)] {
        var result: [Int: (kinds: [OperationKind: SecondSummary], all: SecondSummary)] = [:]
        for (second, kinds) in finishedSeconds { result[second] = (kinds, finishedSecondsAll[second]!) }
        if let second = liveSecond { result[second] = Self.summarize(live) }
        return result
    }

    /// Resident memory and storage counters, once a second.
    public private(set) var resources: [ResourceSample] = []

    public mutating func recordResources(_ sample: ResourceSample) { resources.append(sample) }

    /// Records a request meant to be sent in `second` of the run.
    public mutating func recordIntended(_ kind: OperationKind, second: Int, measured isMeasured: Bool, location: Int? = nil) {
        if let location { byLocation[location].recordIntended(kind, second: second, measured: isMeasured) }
        intendedPerSecond[second, default: [:]][kind, default: 0] += 1
        if isMeasured { intendedInWindow[kind, default: 0] += 1 }
    }

    public mutating func recordError(_ kind: OperationKind, location: Int? = nil) {
        if let location { byLocation[location].recordError(kind) }
        errors[kind, default: 0] += 1
    }

    public mutating func recordUnfinished(_ kind: OperationKind, location: Int? = nil) {
        if let location { byLocation[location].recordUnfinished(kind) }
        unfinished[kind, default: 0] += 1
    }

    public mutating func recordEvent(_ label: String, second: Int) { events[second, default: []].append(label) }

    /// All kinds merged.
    public var all: Histogram<UInt64> {
        var total = Self.makeHistogram()
        for histogram in measured.values { total.add(histogram) }
        return total
    }

    public var measuredCount: UInt64 { measured.values.reduce(0) { $0 + $1.totalCount } }
}

/// One second's reading of the process: resident memory, and the storage's cumulative counters.
public struct ResourceSample: Hashable, Sendable {
    public var second: Int
    public var residentBytes: UInt64
    public var syncs: UInt64
    public var recordsSynced: UInt64

    public init(second: Int, residentBytes: UInt64, syncs: UInt64, recordsSynced: UInt64) {
        self.second = second
        self.residentBytes = residentBytes
        self.syncs = syncs
        self.recordsSynced = recordsSynced
    }

    /// This process's resident set size, from /proc/self/statm (0 where there is none).
    public static func residentBytes() -> UInt64 {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = UInt64(fields[1]) else { return 0 }
        return pages * UInt64(sysconf(Int32(_SC_PAGESIZE)))
    }

    public static let header = "second,rss_bytes,syncs,records_synced"
    public var csv: String { "\(second),\(residentBytes),\(syncs),\(recordsSynced)" }
}

/// One second of the time series for one kind (or all): replies, and their p50 and p99.
public struct SecondSummary: Hashable, Sendable {
    public var count: UInt64
    public var p50: UInt64
    public var p99: UInt64
    /// The second's maximum: a stall shows in the second it happened.
    public var max: UInt64

    public init(count: UInt64, p50: UInt64, p99: UInt64, max: UInt64 = 0) {
        self.count = count
        self.p50 = p50
        self.p99 = p99
        self.max = max
    }

    init(_ histogram: Histogram<UInt64>) {
        count = histogram.totalCount
        p50 = count == 0 ? 0 : histogram.valueAtPercentile(50)
        p99 = count == 0 ? 0 : histogram.valueAtPercentile(99)
        max = count == 0 ? 0 : histogram.max
    }
}
