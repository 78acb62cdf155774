import Foundation
import Harness
import Testing
import Workload

/// Offered, achieved and unfinished, checked against a target whose capacity is known, on
/// virtual time (`WorkloadRunner.runSynthetic`): the numbers do not depend on the machine's load.
@Suite struct AccountingTests {
    private func openLoop(rate: Double, drain: Double, arrivals: String = "uniform") throws -> WorkloadSpec {
        try WorkloadSpec.parse("""
            name: capacity
            duration_s: 3
            warmup_s: 0.5
            drain_s: \(drain)
            clients: {count: 64, loop: open, rate_ops_s: \(rate), arrivals: \(arrivals), retry_timeout_ms: 60000}
            keys: {count: 100}
            mix: {kv.get: 0.5, kv.put: 0.5}
            """, file: "capacity.yaml")
    }

    private func within(_ value: Double, _ expected: Double, percent: Double) -> Bool {
        abs(value - expected) <= expected * percent / 100
    }

    @Test func atTwiceTheCapacityAchievedIsTheCapacityAndTheBacklogIsUnfinished() throws {
        let capacity = 2_000.0
        let outcome = try WorkloadRunner.runSynthetic(try openLoop(rate: 2 * capacity, drain: 0.2), capacityOperationsPerSecond: capacity)
        let all = try #require(outcome.summary.rows.last)
        #expect(within(all.achievedOperationsPerSecond, capacity, percent: 2), "achieved \(all.achievedOperationsPerSecond)")
        #expect(within(all.offeredOperationsPerSecond, 2 * capacity, percent: 2), "offered \(all.offeredOperationsPerSecond)")
        // About half of the window's 12,000 requests are still queued when the window ends; a
        // 0.2 s drain serves about 400 of them.
        #expect(all.unfinished > 1_000, "unfinished \(all.unfinished)")
        #expect(all.errors == 0)
        // The per-kind rows add up to the whole.
        let kinds = outcome.summary.rows.dropLast()
        #expect(kinds.map(\.unfinished).reduce(0, +) == all.unfinished)
        #expect(abs(kinds.map(\.achievedOperationsPerSecond).reduce(0, +) - all.achievedOperationsPerSecond) < 1)
        // Latency counts from the intended send: queueing behind the overload is not hidden.
        #expect(all.p50 > 500_000)
    }

    @Test func atHalfTheCapacityAchievedEqualsOffered() throws {
        let capacity = 2_000.0
        let outcome = try WorkloadRunner.runSynthetic(try openLoop(rate: capacity / 2, drain: 1), capacityOperationsPerSecond: capacity)
        let all = try #require(outcome.summary.rows.last)
        #expect(within(all.offeredOperationsPerSecond, capacity / 2, percent: 0.5), "offered \(all.offeredOperationsPerSecond)")
        #expect(within(all.achievedOperationsPerSecond, all.offeredOperationsPerSecond, percent: 0.5),
                "achieved \(all.achievedOperationsPerSecond), offered \(all.offeredOperationsPerSecond)")
        #expect(all.unfinished == 0)
        // Nothing queues: a request waits at most for the target's next pacing tick (1 ms).
        #expect(all.p99 <= 1_100, "p99 \(all.p99) µs")
    }

    /// Virtual time makes a run a function of its workload file: Poisson arrivals from the seed,
    /// the target's pacing from the clock, so the same run twice gives the same rows.
    @Test func aSyntheticRunReplaysExactly() throws {
        let spec = try openLoop(rate: 3_000, drain: 0.5, arrivals: "poisson")
        let first = try WorkloadRunner.runSynthetic(spec, capacityOperationsPerSecond: 2_500)
        let second = try WorkloadRunner.runSynthetic(spec, capacityOperationsPerSecond: 2_500)
        #expect(first.summary.rows == second.summary.rows)
        #expect(first.summary.timeseriesCSV == second.summary.timeseriesCSV)
        #expect(try #require(first.summary.rows.last).count > 5_000)
    }

    @Test func achievedCountsCompletionsInsideTheWindowAndLatencyCountsIntendedOnes() {
        var recorder = LatencyRecorder()
        // Intended in the window, completed after it: latency counts, throughput does not.
        recorder.recordIntended(.kvPut, second: 1, measured: true)
        recorder.record(.kvPut, latencyMicroseconds: 3_000_000, second: 4, measured: true, completedInWindow: false)
        // Intended in the warm-up, completed inside the window: throughput counts, latency does not.
        recorder.recordIntended(.kvGet, second: 0, measured: false)
        recorder.record(.kvGet, latencyMicroseconds: 900_000, second: 1, measured: false, completedInWindow: true)
        // Intended in the window, never answered.
        recorder.recordIntended(.kvGet, second: 2, measured: true)
        recorder.recordUnfinished(.kvGet)
        let summary = RunSummary(spec: WorkloadSpec(), recorder: recorder, measuredSeconds: 2)
        let rows = Dictionary(uniqueKeysWithValues: summary.rows.map { ($0.operation, $0) })
        #expect(rows["kv.put"]?.count == 1)
        #expect(rows["kv.put"]?.achievedOperationsPerSecond == 0)
        #expect(rows["kv.put"]?.offeredOperationsPerSecond == 0.5)
        #expect(rows["kv.get"]?.count == 0)
        #expect(rows["kv.get"]?.achievedOperationsPerSecond == 0.5)
        #expect(rows["kv.get"]?.unfinished == 1)
        #expect(rows["all"]?.offeredOperationsPerSecond == 1)
        #expect(rows["all"]?.achievedOperationsPerSecond == 0.5)
        #expect(rows["all"]?.unfinished == 1)
        #expect(rows["all"]?.errors == 0)
        let timeseries = summary.timeseriesCSV.split(separator: "\n")
        #expect(timeseries[0] == "second,op,count,offered,p50_us,p99_us,max_us,events")
        #expect(timeseries.contains("0,kv.get,0,1,0,0,0,"))
    }
}
