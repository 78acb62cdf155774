import Histogram
import Testing
import Workload

/// The steadiness rule and the knee finder, on per-second samples made up for the purpose.
@Suite struct SweepTests {
    @Test func aRampIsDiscardedUntilTheRollingWindowVariesLessThanTheTolerance() {
        let achieved: [Double] = [200, 600, 900, 1_000, 1_010, 995, 1_002, 1_004]
        // Seconds 3, 4, 5: (1010 − 995) / 1001.7 = 1.5 % < 5 %.
        #expect(Steadiness.settledAfter(achieved: achieved, windowSeconds: 3, tolerancePercent: 5, waitMaxSeconds: 10) == 3)
        // Seconds 2, 3, 4 vary by 11 %: steady there only with a looser tolerance.
        #expect(Steadiness.settledAfter(achieved: achieved, windowSeconds: 3, tolerancePercent: 12, waitMaxSeconds: 10) == 2)
    }

    @Test func theWaitIsBoundedAndAStalledSystemIsNotSteady() {
        let ramp: [Double] = [100, 200, 300, 400, 500, 600, 700, 800]
        #expect(Steadiness.settledAfter(achieved: ramp, windowSeconds: 3, tolerancePercent: 5, waitMaxSeconds: 4) == nil)
        #expect(Steadiness.settledAfter(achieved: [0, 0, 0, 0], windowSeconds: 2, tolerancePercent: 5, waitMaxSeconds: 10) == nil)
        // Too few samples for one window.
        #expect(Steadiness.settledAfter(achieved: [1_000], windowSeconds: 2, tolerancePercent: 5, waitMaxSeconds: 10) == nil)
        // A settled start needs no discarding.
        #expect(Steadiness.settledAfter(achieved: [500, 502, 499], windowSeconds: 3, tolerancePercent: 5, waitMaxSeconds: 0) == 0)
    }

    private func histogram(_ values: [UInt64]) -> Histogram<UInt64> {
        var histogram = LatencyRecorder.makeHistogram(digits: .two)
        for value in values { _ = histogram.record(value) }
        return histogram
    }

    @Test func aStepIsMeasuredFromItsSteadyPointOnly() {
        var sweep = SweepSpec()
        sweep.steadyWindowSeconds = 2
        sweep.steadyTolerancePercent = 5
        sweep.stepSeconds = 3
        sweep.steadyWaitMaxSeconds = 5
        // Two slow seconds of start-up (latency 50 ms), then steady at 1000/s with 1 ms.
        let achieved: [UInt64] = [300, 700, 1_000, 1_000, 1_000, 1_000, 1_000]
        let offered: [UInt64] = Array(repeating: 1_000, count: 7)
        let slow = histogram(Array(repeating: 50_000, count: 100))
        let fast = histogram(Array(repeating: 1_000, count: 100))
        let latency: [Histogram<UInt64>?] = [slow, slow, fast, fast, fast, fast, fast]
        let step = SweepStep.analyze(target: 1_000, offered: offered, achieved: achieved, latency: latency, sweep: sweep)
        #expect(step.steadyAfterSeconds == 2)
        #expect(step.settled)
        #expect(step.measuredSeconds == 3)
        #expect(step.achievedOperationsPerSecond == 1_000)
        #expect(step.p99 < 1_100, "the slow start is discarded: p99 \(step.p99)")
    }

    @Test func aStepThatNeverSettlesIsMeasuredFromTheWaitBoundAndSaysSo() {
        var sweep = SweepSpec()
        sweep.steadyWindowSeconds = 2
        sweep.stepSeconds = 2
        sweep.steadyWaitMaxSeconds = 2
        let achieved: [UInt64] = [100, 300, 600, 900, 1_200]
        let step = SweepStep.analyze(target: 2_000, offered: Array(repeating: 2_000, count: 5), achieved: achieved,
                                     latency: Array(repeating: nil, count: 5), sweep: sweep)
        #expect(!step.settled)
        #expect(step.steadyAfterSeconds == 2)
        #expect(step.achievedOperationsPerSecond == 750)
    }

    private func step(_ offered: Double, _ achieved: Double, p99: UInt64) -> SweepStep {
        SweepStep(targetOperationsPerSecond: offered, offeredOperationsPerSecond: offered, achievedOperationsPerSecond: achieved, p50: p99 / 2,
                  p99: p99, p999: p99 * 2, steadyAfterSeconds: 1, settled: true, measuredSeconds: 5)
    }

    @Test func theKneeIsTheHighestOfferedRateThatIsKeptUpWithUnderTheBound() {
        var steps = [step(1_000, 1_000, p99: 2_000), step(2_000, 1_990, p99: 3_000), step(3_000, 2_950, p99: 9_000),
                     step(4_000, 3_000, p99: 400_000), step(5_000, 3_000, p99: 900_000)]
        let knee = Knee.mark(&steps, p99BoundMicroseconds: 10_000, achievedShareMin: 0.97)
        #expect(knee == 2)
        #expect(steps.map(\.withinKnee) == [true, true, true, false, false])
        // A p99 over the bound excludes a step that keeps up.
        let tight = Knee.mark(&steps, p99BoundMicroseconds: 5_000, achievedShareMin: 0.97)
        #expect(tight == 1)
        // Nothing qualifies: no knee.
        #expect(Knee.mark(&steps, p99BoundMicroseconds: 1_000, achievedShareMin: 0.97) == nil)
        let csv = SweepStep.csv(steps, knee: nil, p99BoundMicroseconds: 1_000).split(separator: "\n")
        #expect(csv[0] == Substring(SweepStep.header))
        #expect(csv.count == 6)
    }

    @Test func theSweepBlockGivesRatesAsAListOrARangeAndNamesItsMistakes() throws {
        let listed = try WorkloadSpec.parse("sweep: {rates_ops_s: [3000, 1000, 2000], p99_bound_us: 5000}", file: "w.yaml")
        #expect(listed.sweep?.ratesOperationsPerSecond == [1_000, 2_000, 3_000])
        #expect(listed.sweep?.p99BoundMicroseconds == 5_000)
        let ranged = try WorkloadSpec.parse("sweep: {start_ops_s: 1000, stop_ops_s: 3000, step_ops_s: 500}", file: "w.yaml")
        #expect(ranged.sweep?.ratesOperationsPerSecond == [1_000, 1_500, 2_000, 2_500, 3_000])
        let both = #expect(throws: SpecErrors.self) {
            try WorkloadSpec.parse("sweep:\n  rates_ops_s: [1000]\n  start_ops_s: 1000\n  stop_ops_s: 2000\n  step_ops_s: 100\n", file: "w.yaml")
        }
        #expect(both?.description.contains("w.yaml:2:") == true)
        let none = #expect(throws: SpecErrors.self) { try WorkloadSpec.parse("sweep: {step_s: 3}", file: "w.yaml") }
        #expect(none?.description.contains("sweep.rates_ops_s") == true)
        let typo = #expect(throws: SpecErrors.self) { try WorkloadSpec.parse("sweep: {rates_ops_s: [1], p99_bound: 3}", file: "w.yaml") }
        #expect(typo?.description.contains("sweep.p99_bound: unknown field") == true)
    }

    /// A sweep run in another process (csmr-etcd) hands back its workload as a file and its steps
    /// as sweep.csv: both survive the trip; anything else is not taken for a sweep.csv.
    @Test func theSweepBlockAndSweepCSVSurviveTheTripToAnotherProcess() throws {
        let spec = try WorkloadSpec.parse("""
            name: trip
            mix: {kv.put: 1.0}
            breakdown: {sample_rate: 0.25}
            sweep: {rates_ops_s: [1000, 2500.5, 4000], p99_bound_us: 12000, step_s: 3, steady_window_s: 2, steady_tolerance_percent: 7.5, steady_wait_max_s: 4}
            """, file: "trip.yaml")
        let again = try WorkloadSpec.parse(spec.yaml, file: "again.yaml")
        #expect(again.sweep == spec.sweep)
        #expect(again.breakdownSampleRate == 0.25)
        var steps = [SweepStep(targetOperationsPerSecond: 1_000, offeredOperationsPerSecond: 1_001.5, achievedOperationsPerSecond: 1_000, p50: 900,
                               p99: 5_000, p999: 9_000, steadyAfterSeconds: 1, settled: true, measuredSeconds: 3),
                     SweepStep(targetOperationsPerSecond: 4_000, offeredOperationsPerSecond: 3_990, achievedOperationsPerSecond: 2_000, p50: 90_000,
                               p99: 500_000, p999: 900_000, steadyAfterSeconds: 4, settled: false, measuredSeconds: 3)]
        let knee = Knee.mark(&steps, p99BoundMicroseconds: 12_000, achievedShareMin: 0.97)
        let parsed = try #require(SweepStep.parse(csv: SweepStep.csv(steps, knee: knee, p99BoundMicroseconds: 12_000)))
        #expect(parsed.steps == steps && parsed.knee == knee && knee == 0)
        #expect(SweepStep.parse(csv: "op,count\nall,3\n") == nil)
        #expect(SweepStep.parse(csv: SweepStep.header + "\n1000,x,1,1,1,1,0,yes,3,yes,yes,1\n") == nil)
    }
}
