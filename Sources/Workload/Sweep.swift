import Foundation
import Yams
import Histogram

/// A saturation sweep: open-loop steps of increasing offered rate, each measured once it is
/// steady, and the knee, the highest offered rate the system still keeps up with.
///
///     sweep:
///       rates_ops_s: [1000, 2000, 4000]      # or start_ops_s / stop_ops_s / step_ops_s
///       p99_bound_us: 20000                   # the knee's latency bound
///       step_s: 5                             # measured seconds per step, once steady
///       steady_window_s: 3                    # k: seconds in the rolling window
///       steady_tolerance_percent: 5           # x: how much the window may vary
///       steady_wait_max_s: 10                 # give up waiting for steadiness after this
///
/// Steady (see `Steadiness.settledAfter`): the first second s such that the achieved throughput of
/// seconds s, s + 1, …, s + k − 1 varies by less than x % of their mean ((max − min) / mean).
/// Seconds before s are discarded; s is reported as `steady_after_s`. A step that is not steady
/// by `steady_wait_max_s` is measured from there anyway and reported as not settled.
public struct SweepSpec: Hashable, Sendable {
    public var ratesOperationsPerSecond: [Double] = []
    public var p99BoundMicroseconds: UInt64 = 50_000
    public var stepSeconds = 5
    public var steadyWindowSeconds = 3
    public var steadyTolerancePercent = 5.0
    public var steadyWaitMaxSeconds = 10
    /// The share of the offered rate a step must achieve to be within the knee.
    public var achievedShareMin = 0.97

    public init() {}

    /// How long a step runs: the longest wait for steadiness, then the measured seconds (plus
    /// the rolling window, so a step that settles at the last moment still has its window).
    public var stepRunSeconds: Int { steadyWaitMaxSeconds + max(stepSeconds, steadyWindowSeconds) }

    public static let fields = ["rates_ops_s", "start_ops_s", "stop_ops_s", "step_ops_s", "p99_bound_us", "step_s", "steady_window_s",
                                "steady_tolerance_percent", "steady_wait_max_s"]

    /// Reads a `sweep:` mapping; problems land in its errors.
    public static func read(from fields: YAMLFields) -> SweepSpec {
        var sweep = SweepSpec()
        let listed = fields.sequence("rates_ops_s")
        let ranged = ["start_ops_s", "stop_ops_s", "step_ops_s"].filter(fields.has)
        if !listed.isEmpty, !ranged.isEmpty {
            fields.fail(fields.value("rates_ops_s"), field: fields.qualified("rates_ops_s"), "give either rates_ops_s or start/stop/step, not both")
        }
        for (path, node) in listed {
            guard let rate = node.scalar.flatMap({ Double($0.string.replacingOccurrences(of: "_", with: "")) }), rate >= 1, rate <= 10_000_000 else {
                fields.fail(node, field: path, "expected a rate in 1...10000000 operations per second")
                continue
            }
            sweep.ratesOperationsPerSecond.append(rate)
        }
        if !ranged.isEmpty {
            if ranged.count != 3 { fields.fail(nil, field: fields.qualified("start_ops_s"), "start_ops_s, stop_ops_s and step_ops_s go together") }
            let start = fields.double("start_ops_s", default: 1_000, range: 1...10_000_000, unit: "operations per second")
            let stop = fields.double("stop_ops_s", default: start, range: 1...10_000_000, unit: "operations per second")
            let step = fields.double("step_ops_s", default: 1_000, range: 1...10_000_000, unit: "operations per second")
            if stop < start {
                fields.fail(fields.value("stop_ops_s"), field: fields.qualified("stop_ops_s"), "must be at least start_ops_s (\(start)), got \(stop)")
            } else if (stop - start) / step > 1_000 {
                fields.fail(fields.value("step_ops_s"), field: fields.qualified("step_ops_s"), "gives more than 1000 steps")
            } else {
                sweep.ratesOperationsPerSecond = stride(from: start, through: stop + step * 1e-9, by: step).map { $0 }
            }
        }
        if listed.isEmpty, ranged.isEmpty {
            fields.fail(nil, field: fields.qualified("rates_ops_s"), "give the rates: rates_ops_s: [..] or start_ops_s, stop_ops_s, step_ops_s")
        }
        sweep.ratesOperationsPerSecond.sort()
        sweep.p99BoundMicroseconds = UInt64(fields.int("p99_bound_us", default: Int(sweep.p99BoundMicroseconds), range: 1...3_600_000_000, unit: "µs"))
        sweep.stepSeconds = fields.int("step_s", default: sweep.stepSeconds, range: 1...3_600, unit: "seconds")
        sweep.steadyWindowSeconds = fields.int("steady_window_s", default: sweep.steadyWindowSeconds, range: 2...600, unit: "seconds")
        sweep.steadyTolerancePercent = fields.double("steady_tolerance_percent", default: sweep.steadyTolerancePercent, range: 0.1...100, unit: "percent")
        sweep.steadyWaitMaxSeconds = fields.int("steady_wait_max_s", default: sweep.steadyWaitMaxSeconds, range: 0...3_600, unit: "seconds")
        fields.rejectUnknown(expected: Self.fields)
        return sweep
    }

    /// The step's workload: open loop at `rate`, uniform arrivals kept as the file says, no
    /// warm-up (steadiness decides what is discarded), and seconds kept for the analysis.
    public func stepWorkload(_ base: WorkloadSpec, rate: Double) -> WorkloadSpec {
        var spec = base
        spec.clients.loop = .open
        spec.clients.rateOperationsPerSecond = rate
        spec.warmupSeconds = 0
        spec.durationSeconds = Double(stepRunSeconds)
        spec.operations = nil
        spec.drainSeconds = min(spec.drainSeconds, 1)
        spec.keepsSecondHistograms = true
        return spec
    }
}

/// When a step's per-second throughput has settled. Pure: a function of the samples.
public enum Steadiness {
    /// The first second s ≤ `waitMaxSeconds` such that `achieved[s..<s + windowSeconds]` varies
    /// by less than `tolerancePercent` of its mean ((max − min) / mean · 100 < tolerance); nil when
    /// no window up to the wait bound qualifies (or the samples end first). A window of zeros is
    /// not steady: a system that completes nothing has not settled, it has stalled.
    public static func settledAfter(achieved: [Double], windowSeconds: Int, tolerancePercent: Double, waitMaxSeconds: Int) -> Int? {
        precondition(windowSeconds >= 1, "a steadiness window needs at least one second, got \(windowSeconds)")
        guard achieved.count >= windowSeconds else { return nil }
        for start in 0...min(waitMaxSeconds, achieved.count - windowSeconds) {
            let window = achieved[start..<(start + windowSeconds)]
            let mean = window.reduce(0, +) / Double(windowSeconds)
            guard mean > 0 else { continue }
            if (window.max()! - window.min()!) / mean * 100 < tolerancePercent { return start }
        }
        return nil
    }
}

/// One measured step of a sweep (a row of `sweep.csv`).
public struct SweepStep: Hashable, Sendable {
    /// The rate asked for, and what was offered and achieved over the steady seconds.
    public var targetOperationsPerSecond: Double
    public var offeredOperationsPerSecond: Double
    public var achievedOperationsPerSecond: Double
    public var p50: UInt64, p99: UInt64, p999: UInt64
    /// Seconds discarded before the step was steady (the wait bound when it never settled).
    public var steadyAfterSeconds: Int
    public var settled: Bool
    /// Seconds measured after the steady point.
    public var measuredSeconds: Int
    /// Whether the step meets the knee's criteria (set by `Knee.mark`).
    public var withinKnee = false

    public init(targetOperationsPerSecond: Double, offeredOperationsPerSecond: Double, achievedOperationsPerSecond: Double, p50: UInt64,
                p99: UInt64, p999: UInt64, steadyAfterSeconds: Int, settled: Bool, measuredSeconds: Int) {
        self.targetOperationsPerSecond = targetOperationsPerSecond
        self.offeredOperationsPerSecond = offeredOperationsPerSecond
        self.achievedOperationsPerSecond = achievedOperationsPerSecond
        self.p50 = p50
        self.p99 = p99
        self.p999 = p999
        self.steadyAfterSeconds = steadyAfterSeconds
        self.settled = settled
        self.measuredSeconds = measuredSeconds
    }

    /// A step from its per-second samples: `offered[s]` requests meant to be sent in second s,
    /// `achieved[s]` replies in second s, and `latency[s]` the latencies of those replies (nil: none).
    /// Pure; the seconds from the steady point on, `sweep.stepSeconds` of them at most, are measured.
    public static func analyze(target: Double, offered: [UInt64], achieved: [UInt64], latency: [Histogram<UInt64>?], sweep: SweepSpec) -> SweepStep {
        let seconds = min(offered.count, achieved.count)
        let found = Steadiness.settledAfter(achieved: achieved.prefix(seconds).map(Double.init), windowSeconds: sweep.steadyWindowSeconds,
                                            tolerancePercent: sweep.steadyTolerancePercent, waitMaxSeconds: sweep.steadyWaitMaxSeconds)
        let start = min(found ?? sweep.steadyWaitMaxSeconds, max(0, seconds - 1))
        let end = min(seconds, start + max(sweep.stepSeconds, sweep.steadyWindowSeconds))
        let span = max(0, end - start)
        var merged = LatencyRecorder.makeHistogram(digits: .two)
        for second in start..<max(start, end) { if second < latency.count, let histogram = latency[second] { merged.add(histogram) } }
        let empty = merged.totalCount == 0
        let divisor = Double(max(span, 1))
        return SweepStep(targetOperationsPerSecond: target,
                         offeredOperationsPerSecond: Double(offered[start..<max(start, end)].reduce(0, +)) / divisor,
                         achievedOperationsPerSecond: Double(achieved[start..<max(start, end)].reduce(0, +)) / divisor,
                         p50: empty ? 0 : merged.valueAtPercentile(50), p99: empty ? 0 : merged.valueAtPercentile(99),
                         p999: empty ? 0 : merged.valueAtPercentile(99.9),
                         steadyAfterSeconds: found ?? sweep.steadyWaitMaxSeconds, settled: found != nil, measuredSeconds: span)
    }

    /// A step from a finished run's recorder (which must have kept its seconds' histograms).
    public static func analyze(target: Double, recorder: LatencyRecorder, sweep: SweepSpec) -> SweepStep {
        let seconds = sweep.stepRunSeconds
        let perSecond = recorder.perSecond
        let offered = (0..<seconds).map { recorder.intendedPerSecond[$0]?.values.reduce(0, +) ?? 0 }
        let achieved = (0..<seconds).map { perSecond[$0]?.all.count ?? 0 }
        let latency = (0..<seconds).map { recorder.histogram(ofSecond: $0) }
        return analyze(target: target, offered: offered, achieved: achieved, latency: latency, sweep: sweep)
    }

    public static let header = "target_ops_s,offered_ops_s,achieved_ops_s,p50_us,p99_us,p999_us,steady_after_s,settled,measured_s,within_knee,knee,p99_bound_us"

    public func csv(isKnee: Bool, p99BoundMicroseconds: UInt64) -> String {
        [SummaryRow.fixed(targetOperationsPerSecond), SummaryRow.fixed(offeredOperationsPerSecond), SummaryRow.fixed(achievedOperationsPerSecond),
         "\(p50)", "\(p99)", "\(p999)", "\(steadyAfterSeconds)", settled ? "yes" : "no", "\(measuredSeconds)", withinKnee ? "yes" : "no",
         isKnee ? "yes" : "no", "\(p99BoundMicroseconds)"].joined(separator: ",")
    }

    /// The steps and the knee back from a `sweep.csv` without prefix columns (one written by
    /// another process: csmr-etcd's sweep); nil if the text is not such a file.
    public static func parse(csv: String) -> (steps: [SweepStep], knee: Int?)? {
        let lines = csv.split(separator: "\n")
        guard lines.first.map(String.init) == header else { return nil }
        var steps: [SweepStep] = []
        var knee: Int?
        for line in lines.dropFirst() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard fields.count == 12, let target = Double(fields[0]), let offered = Double(fields[1]), let achieved = Double(fields[2]),
                  let p50 = UInt64(fields[3]), let p99 = UInt64(fields[4]), let p999 = UInt64(fields[5]), let steadyAfter = Int(fields[6]),
                  let measured = Int(fields[8]) else { return nil }
            var step = SweepStep(targetOperationsPerSecond: target, offeredOperationsPerSecond: offered, achievedOperationsPerSecond: achieved,
                                 p50: p50, p99: p99, p999: p999, steadyAfterSeconds: steadyAfter, settled: fields[7] == "yes", measuredSeconds: measured)
            step.withinKnee = fields[9] == "yes"
            if fields[10] == "yes" { knee = steps.count }
            steps.append(step)
        }
        return (steps, knee)
    }

    /// `sweep.csv`: a row per step, in increasing target rate; `prefix` columns (a comparison's
    /// variant) come first.
    public static func csv(_ steps: [SweepStep], knee: Int?, p99BoundMicroseconds: UInt64, prefixHeader: String = "", prefix: String = "") -> String {
        var lines = [prefixHeader + header]
        for (index, step) in steps.enumerated() { lines.append(prefix + step.csv(isKnee: index == knee, p99BoundMicroseconds: p99BoundMicroseconds)) }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// The knee of a sweep. Pure.
public enum Knee {
    /// Marks each step within the criteria (achieved ≥ `achievedShareMin` of offered, p99 under
    /// `p99BoundMicroseconds`) and returns the index of the knee: the step of highest offered rate
    /// within them (nil if none is). Offered, not target: the rate actually offered is what the
    /// system kept up with.
    public static func mark(_ steps: inout [SweepStep], p99BoundMicroseconds: UInt64, achievedShareMin: Double) -> Int? {
        var knee: Int?
        for index in steps.indices {
            let step = steps[index]
            steps[index].withinKnee = step.offeredOperationsPerSecond > 0
                && step.achievedOperationsPerSecond >= achievedShareMin * step.offeredOperationsPerSecond
                && step.p99 < p99BoundMicroseconds
            if steps[index].withinKnee, knee.map({ steps[$0].offeredOperationsPerSecond < step.offeredOperationsPerSecond }) ?? true {
                knee = index
            }
        }
        return knee
    }
}
