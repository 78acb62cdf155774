import Harness
import Testing
import Workload

/// The sweep against a target whose capacity is planted: the knee must land within one step of it.
extension AccountingTests {
    @Test func theKneeOfATargetOfKnownCapacityIsFoundWithinOneStep() throws {
        let capacity = 2_000.0
        let base = try WorkloadSpec.parse("""
            name: planted-knee
            drain_s: 0.5
            clients: {count: 64, loop: open, rate_ops_s: 1000, arrivals: uniform, retry_timeout_ms: 60000}
            keys: {count: 100}
            mix: {kv.get: 0.5, kv.put: 0.5}
            sweep:
              rates_ops_s: [1000, 1500, 1900, 2300, 2700]
              p99_bound_us: 1000000
              step_s: 3
              steady_window_s: 2
              steady_tolerance_percent: 10
              steady_wait_max_s: 4
            """, file: "planted.yaml")
        let sweep = try #require(base.sweep)
        // The target warms up over its first second (a quarter of its capacity at first), so
        // every step above a quarter of it has a start to discard; the steadiness tolerance (10 %)
        // is far below that ramp.
        let outcome = try SweepRunner.runSynthetic(base, sweep: sweep, capacityOperationsPerSecond: capacity, rampSeconds: 1)
        let summary = outcome.steps.map { "\(Int($0.targetOperationsPerSecond)): achieved \(Int($0.achievedOperationsPerSecond)) p99 \($0.p99) steady \($0.steadyAfterSeconds)" }
        let knee = try #require(outcome.knee, "no knee: \(summary)")
        // The planted knee is 1900 (the highest rate below the capacity); one step either side is
        // within the finder's resolution.
        #expect([1, 2, 3].contains(knee), "knee at step \(knee): \(summary)")
        #expect(outcome.steps[knee].offeredOperationsPerSecond <= capacity * 1.03, "\(summary)")
        // Past the capacity the achieved rate is the capacity, so those steps are outside.
        for step in outcome.steps where step.targetOperationsPerSecond > capacity * 1.1 {
            #expect(!step.withinKnee, "\(summary)")
            #expect(abs(step.achievedOperationsPerSecond - capacity) < capacity * 0.05, "\(summary)")
        }
        // The warm-up was discarded: second 0 of a loaded step is slower than what follows.
        for step in outcome.steps where step.targetOperationsPerSecond >= 1_500 {
            #expect(step.settled, "\(summary)")
            #expect(step.steadyAfterSeconds >= 1, "\(summary)")
        }
        #expect(outcome.csv.split(separator: "\n").count == 6)
    }
}
