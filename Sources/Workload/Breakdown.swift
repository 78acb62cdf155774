import Histogram
import Services

/// Where sampled requests spent their time (`breakdown.csv`), per operation kind and stage.
///
/// A request's end-to-end latency (from its intended send) splits into stages, each a duration
/// on one clock: the client's (waiting for a free session, waiting for a retry, and the way to the
/// replica and back, which is the round trip minus the replica's share) and the answering
/// replica's (`ReplicaStages`: queue, ordering, execution, hold). So the stages add up to the
/// end-to-end latency by construction, unless the replica reports more than the round trip it sat
/// inside (then the network stage is clamped at zero and the sum exceeds the whole: the check in
/// the tests looks for exactly that).
public struct BreakdownRecorder: Sendable {
    public enum Stage: String, CaseIterable, Sendable {
        /// Open loop: intended send until a client session was free to send it.
        case clientWait = "client_wait"
        /// First send until the send that was answered (retries after a timeout).
        case retryWait = "retry_wait"
        /// The round trip of the answered send, minus the replica's share: the way there and back.
        case network
        case queue, ordering, execution, hold
    }

    /// The end-to-end row's stage name in `breakdown.csv`.
    public static let endToEnd = "end_to_end"

    private struct Accumulator: Sendable {
        var histograms: [Histogram<UInt64>] = Stage.allCases.map { _ in BreakdownRecorder.makeHistogram() } + [BreakdownRecorder.makeHistogram()]
        var sums: [Double] = Array(repeating: 0, count: Stage.allCases.count + 1)
        var count: UInt64 = 0

        mutating func record(_ stages: [Stage: UInt64], endToEndNanoseconds: UInt64) {
            for (index, stage) in Stage.allCases.enumerated() {
                let value = stages[stage] ?? 0
                _ = histograms[index].record(max(1, value))
                sums[index] += Double(value)
            }
            _ = histograms[Stage.allCases.count].record(max(1, endToEndNanoseconds))
            sums[Stage.allCases.count] += Double(endToEndNanoseconds)
            count += 1
        }
    }

    private var accumulators: [OperationKind: Accumulator] = [:]

    public init() {}

    static func makeHistogram() -> Histogram<UInt64> {
        // Nanoseconds, up to an hour.
        Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000_000, numberOfSignificantValueDigits: .two)
    }

    /// A sampled request's stages, from its client-side instants (one clock) and the replica's
    /// durations. Pure.
    public static func stages(intendedNanoseconds: UInt64, firstSentNanoseconds: UInt64, answeredSendNanoseconds: UInt64,
                              repliedNanoseconds: UInt64, replica: ReplicaStages) -> [Stage: UInt64] {
        let roundTrip = repliedNanoseconds &- min(answeredSendNanoseconds, repliedNanoseconds)
        return [.clientWait: firstSentNanoseconds &- min(intendedNanoseconds, firstSentNanoseconds),
                .retryWait: answeredSendNanoseconds &- min(firstSentNanoseconds, answeredSendNanoseconds),
                .network: roundTrip &- min(replica.totalNanoseconds, roundTrip),
                .queue: replica.queueNanoseconds, .ordering: replica.orderingNanoseconds, .execution: replica.executionNanoseconds,
                .hold: replica.holdNanoseconds]
    }

    public mutating func record(_ kind: OperationKind, stages: [Stage: UInt64], endToEndNanoseconds: UInt64) {
        // In place: a copy taken out of the table and written back would copy every histogram's
        // counts on each record (about 30 µs on the load generator's loop per sampled request).
        accumulators[kind, default: Accumulator()].record(stages, endToEndNanoseconds: endToEndNanoseconds)
    }

    public var isEmpty: Bool { accumulators.isEmpty }

    /// Sampled requests of `kind` (nil: all kinds).
    public func count(_ kind: OperationKind? = nil) -> UInt64 {
        kind.map { accumulators[$0]?.count ?? 0 } ?? accumulators.values.reduce(0) { $0 + $1.count }
    }

    /// Mean of a stage in microseconds, over `kind` (nil: all kinds); `stage` nil: end to end.
    public func meanMicroseconds(_ stage: Stage?, kind: OperationKind? = nil) -> Double {
        let index = stage.map { Stage.allCases.firstIndex(of: $0)! } ?? Stage.allCases.count
        let chosen = kind.map { accumulators[$0].map { [$0] } ?? [] } ?? Array(accumulators.values)
        let count = chosen.reduce(0) { $0 + $1.count }
        guard count > 0 else { return 0 }
        return chosen.reduce(0) { $0 + $1.sums[index] } / Double(count) / 1_000
    }

    public static let header = "op,stage,mean_us,p50_us,p99_us,count"

    /// A row per operation kind and stage, then the end-to-end row; then `all` kinds together.
    public var csv: String {
        var lines = [Self.header]
        let names = Stage.allCases.map(\.rawValue) + [Self.endToEnd]
        func rows(_ name: String, _ accumulator: Accumulator) {
            for (index, stage) in names.enumerated() {
                let histogram = accumulator.histograms[index]
                let mean = accumulator.count == 0 ? 0 : accumulator.sums[index] / Double(accumulator.count) / 1_000
                lines.append("\(name),\(stage),\(SummaryRow.fixed(mean)),\(SummaryRow.fixed(Double(histogram.valueAtPercentile(50)) / 1_000)),"
                             + "\(SummaryRow.fixed(Double(histogram.valueAtPercentile(99)) / 1_000)),\(accumulator.count)")
            }
        }
        var all = Accumulator()
        for kind in accumulators.keys.sorted() {
            let accumulator = accumulators[kind]!
            rows(kind.rawValue, accumulator)
            for index in all.histograms.indices {
                all.histograms[index].add(accumulator.histograms[index])
                all.sums[index] += accumulator.sums[index]
            }
            all.count += accumulator.count
        }
        if !accumulators.isEmpty { rows("all", all) }
        return lines.joined(separator: "\n") + "\n"
    }
}
