import Foundation
import Histogram

/// One row of `summary.csv`.
public struct SummaryRow: Hashable, Sendable {
    public var operation: String
    /// Operations meant to be sent inside the measured window that completed (whenever they
    /// completed): the population of the latency statistics.
    public var count: UInt64
    public var errors: Int
    /// Operations meant to be sent inside the measured window without a reply when the drain ended.
    public var unfinished: Int
    /// Operations meant to be sent inside the window, per second of window.
    public var offeredOperationsPerSecond: Double
    /// Operations that completed inside the window, per second of window.
    public var achievedOperationsPerSecond: Double
    public var meanMicroseconds: Double
    public var p50: UInt64, p90: UInt64, p99: UInt64, p999: UInt64, p9999: UInt64, max: UInt64

    public static let header = "op,count,errors,unfinished,offered_ops_s,achieved_ops_s,mean_us,p50_us,p90_us,p99_us,p999_us,p9999_us,max_us"

    public init(operation: String, histogram: Histogram<UInt64>, errors: Int, unfinished: Int, intended: UInt64, completedInWindow: UInt64,
                seconds: Double) {
        self.operation = operation
        count = histogram.totalCount
        self.errors = errors
        self.unfinished = unfinished
        offeredOperationsPerSecond = seconds > 0 ? Double(intended) / seconds : 0
        achievedOperationsPerSecond = seconds > 0 ? Double(completedInWindow) / seconds : 0
        let empty = count == 0
        meanMicroseconds = empty ? 0 : histogram.mean
        p50 = empty ? 0 : histogram.valueAtPercentile(50)
        p90 = empty ? 0 : histogram.valueAtPercentile(90)
        p99 = empty ? 0 : histogram.valueAtPercentile(99)
        p999 = empty ? 0 : histogram.valueAtPercentile(99.9)
        p9999 = empty ? 0 : histogram.valueAtPercentile(99.99)
        max = empty ? 0 : histogram.max
    }

    public var csv: String {
        [operation, "\(count)", "\(errors)", "\(unfinished)", Self.fixed(offeredOperationsPerSecond), Self.fixed(achievedOperationsPerSecond),
         Self.fixed(meanMicroseconds), "\(p50)", "\(p90)", "\(p99)", "\(p999)", "\(p9999)", "\(max)"].joined(separator: ",")
    }

    static func fixed(_ value: Double) -> String { String(format: "%.1f", value) }

    /// A row of a `summary.csv` written by another process (csmr-etcd hands its results back so).
    public init?(csv line: Substring) {
        let fields = line.split(separator: ",", omittingEmptySubsequences: false)
        guard fields.count == Self.header.split(separator: ",").count else { return nil }
        let integers = fields[1...3].compactMap { Int($0) } + fields[7...].compactMap { Int($0) }
        let decimals = fields[4...6].compactMap { Double($0) }
        guard integers.count == 9, decimals.count == 3, integers.allSatisfy({ $0 >= 0 }) else { return nil }
        operation = String(fields[0])
        count = UInt64(integers[0])
        errors = integers[1]
        unfinished = integers[2]
        (offeredOperationsPerSecond, achievedOperationsPerSecond, meanMicroseconds) = (decimals[0], decimals[1], decimals[2])
        (p50, p90, p99, p999, p9999, max) = (UInt64(integers[3]), UInt64(integers[4]), UInt64(integers[5]), UInt64(integers[6]),
                                             UInt64(integers[7]), UInt64(integers[8]))
    }
}

/// The measured outcome of one run.
public struct RunSummary: Sendable {
    public var spec: WorkloadSpec
    public var recorder: LatencyRecorder
    /// Length of the measured window, in seconds.
    public var measuredSeconds: Double
    /// Group commit over the window, when replicas wrote files.
    public var storage: StorageSummary?
    /// Stage times of the sampled requests meant for the window (`breakdown.csv`).
    public var breakdown = BreakdownRecorder()

    public init(spec: WorkloadSpec, recorder: LatencyRecorder, measuredSeconds: Double) {
        self.spec = spec
        self.recorder = recorder
        self.measuredSeconds = measuredSeconds
    }

    /// Requests meant to be sent inside the window that never completed.
    public var unfinished: Int { recorder.unfinished.values.reduce(0, +) }

    /// A row per operation kind that occurred, in a fixed order, then `all`.
    public var rows: [SummaryRow] { Self.rows(recorder, seconds: measuredSeconds) }

    /// Per client location (none without locations): its rows, as `rows` for its clients alone.
    public var locationRows: [(location: String, rows: [SummaryRow])] {
        zip(recorder.locationNames, recorder.byLocation).map { ($0, Self.rows($1, seconds: measuredSeconds)) }
    }

    /// `locations.csv`: `rows` per client location (nil without locations).
    public var locationsCSV: String? {
        let locations = locationRows
        guard !locations.isEmpty else { return nil }
        var lines = ["location," + SummaryRow.header]
        for (location, rows) in locations { lines += rows.map { CompareSpec.csvField(location) + "," + $0.csv } }
        return lines.joined(separator: "\n") + "\n"
    }

    static func rows(_ recorder: LatencyRecorder, seconds measuredSeconds: Double) -> [SummaryRow] {
        var rows: [SummaryRow] = []
        for kind in OperationKind.allCases
        where recorder.measured[kind] != nil || recorder.errors[kind] != nil || recorder.intendedInWindow[kind] != nil || recorder.completedInWindow[kind] != nil {
            rows.append(SummaryRow(operation: kind.rawValue, histogram: recorder.measured[kind] ?? LatencyRecorder.makeHistogram(),
                                   errors: recorder.errors[kind] ?? 0, unfinished: recorder.unfinished[kind] ?? 0,
                                   intended: recorder.intendedInWindow[kind] ?? 0, completedInWindow: recorder.completedInWindow[kind] ?? 0,
                                   seconds: measuredSeconds))
        }
        rows.append(SummaryRow(operation: "all", histogram: recorder.all, errors: recorder.errors.values.reduce(0, +),
                               unfinished: recorder.unfinished.values.reduce(0, +),
                               intended: recorder.intendedInWindow.values.reduce(0, +),
                               completedInWindow: recorder.completedInWindow.values.reduce(0, +), seconds: measuredSeconds))
        return rows
    }

    public var summaryCSV: String { ([SummaryRow.header] + rows.map(\.csv)).joined(separator: "\n") + "\n" }

    public static let timeseriesHeader = "second,op,count,offered,p50_us,p99_us,max_us,events"

    /// Per second of the run (warm-up and drain included; `second` counts from the start of the
    /// load) and per operation kind: `count` replies arrived in that second, `offered` requests
    /// were meant to be sent in it. Events are listed on the first row of their second.
    public var timeseriesCSV: String {
        var lines = [Self.timeseriesHeader]
        let perSecond = recorder.perSecond
        let seconds = Set(perSecond.keys).union(recorder.events.keys).union(recorder.intendedPerSecond.keys).sorted()
        let none = SecondSummary(count: 0, p50: 0, p99: 0)
        for second in seconds {
            var events = (recorder.events[second] ?? []).joined(separator: "; ")
            let kinds = perSecond[second]?.kinds ?? [:]
            let intended = recorder.intendedPerSecond[second] ?? [:]
            for kind in OperationKind.allCases where kinds[kind] != nil || intended[kind] != nil {
                let summary = kinds[kind] ?? none
                lines.append("\(second),\(kind.rawValue),\(summary.count),\(intended[kind] ?? 0),\(summary.p50),\(summary.p99),\(summary.max),\(Self.quoted(events))")
                events = ""
            }
            let all = perSecond[second]?.all ?? none
            lines.append("\(second),all,\(all.count),\(intended.values.reduce(0, +)),\(all.p50),\(all.p99),\(all.max),\(Self.quoted(events))")
        }
        return lines.joined(separator: "\n") + "\n"
    }


    static func quoted(_ text: String) -> String { text.isEmpty ? "" : "\"\(text.replacingOccurrences(of: "\"", with: "\"\""))\"" }

    /// HdrHistogram's percentile distribution text (values in microseconds).
    public func hgrm(_ histogram: Histogram<UInt64>) -> String {
        var text = ""
        histogram.outputPercentileDistribution(to: &text, outputValueUnitScalingRatio: 1)
        return text
    }

    /// `resources.csv`: resident memory and storage counters, a row per second of the run.
    public var resourcesCSV: String { ([ResourceSample.header] + recorder.resources.map(\.csv)).joined(separator: "\n") + "\n" }

    /// `storage.csv`: group commit over the window (nil when nothing was written to files).
    public var storageCSV: String? {
        guard let storage else { return nil }
        return StorageSummary.header + "\n" + storage.csv(completedPerSecond: rows.last?.achievedOperationsPerSecond ?? 0) + "\n"
    }

    /// A fixed-width table for the terminal.
    public var table: String { Self.table(rows, locationRows: locationRows) }

    /// The table of rows read back from a `summary.csv` (and the rows per client location).
    public static func table(_ rows: [SummaryRow], locationRows: [(location: String, rows: [SummaryRow])] = []) -> String {
        let header = ["op", "count", "errors", "unfinished", "offered/s", "achieved/s", "mean µs", "p50 µs", "p99 µs", "p99.9 µs", "max µs"]
        // Per client location, each operation labelled with its clients' location.
        let labelled = rows.map { ($0.operation, $0) } + locationRows.flatMap { location in location.rows.map { ("\($0.operation) @\(location.location)", $0) } }
        let width = max(14, (labelled.map(\.0.count).max() ?? 0) + 2)
        var lines = [header.enumerated().map { $0.element.padding($0.offset == 0 ? width : 12) }.joined()]
        for (label, row) in labelled {
            lines.append([label, "\(row.count)", "\(row.errors)", "\(row.unfinished)", SummaryRow.fixed(row.offeredOperationsPerSecond),
                          SummaryRow.fixed(row.achievedOperationsPerSecond),
                          SummaryRow.fixed(row.meanMicroseconds), "\(row.p50)", "\(row.p99)", "\(row.p999)", "\(row.max)"]
                .enumerated().map { $0.element.padding($0.offset == 0 ? width : 12) }.joined())
        }
        return lines.joined(separator: "\n")
    }

    /// Writes summary.csv, timeseries.csv and one .hgrm per operation kind (and all.hgrm).
    public func write(to directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try summaryCSV.write(to: directory.appendingPathComponent("summary.csv"), atomically: true, encoding: .utf8)
        try timeseriesCSV.write(to: directory.appendingPathComponent("timeseries.csv"), atomically: true, encoding: .utf8)
        for (kind, histogram) in recorder.measured {
            try hgrm(histogram).write(to: directory.appendingPathComponent("\(kind.rawValue).hgrm"), atomically: true, encoding: .utf8)
        }
        try hgrm(recorder.all).write(to: directory.appendingPathComponent("all.hgrm"), atomically: true, encoding: .utf8)
        try resourcesCSV.write(to: directory.appendingPathComponent("resources.csv"), atomically: true, encoding: .utf8)
        if let storageCSV {
            try storageCSV.write(to: directory.appendingPathComponent("storage.csv"), atomically: true, encoding: .utf8)
        }
        if let locationsCSV {
            try locationsCSV.write(to: directory.appendingPathComponent("locations.csv"), atomically: true, encoding: .utf8)
        }
        if !breakdown.isEmpty {
            try breakdown.csv.write(to: directory.appendingPathComponent("breakdown.csv"), atomically: true, encoding: .utf8)
        }
    }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self + " " : self + String(repeating: " ", count: width - count) }
}
