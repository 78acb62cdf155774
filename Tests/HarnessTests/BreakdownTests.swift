import Harness
import Services
import Testing
import Workload

/// The latency breakdown on the in-process cluster: sampled requests come back with the replica's
/// stage durations, and the stages account for the end-to-end latency.
@Suite(.serialized) struct BreakdownTests {
    private func workload(protocol name: String, loop: String) throws -> WorkloadSpec {
        try WorkloadSpec.parse("""
            name: breakdown
            duration_s: 2
            warmup_s: 0.5
            drain_s: 2
            group: {replicas: 3, protocol: \(name)}
            clients: {count: 8, \(loop)}
            keys: {count: 100}
            mix: {kv.get: 0.5, kv.put: 0.5}
            breakdown: {sample_rate: 0.2}
            """, file: "breakdown.yaml")
    }

    @Test(arguments: [("multi-leader", "loop: closed"), ("single-leader", "loop: closed"), ("multi-leader", "loop: open, rate_ops_s: 1000")])
    func theStagesOfSampledRequestsAddUpToTheirEndToEndLatency(protocol name: String, loop: String) throws {
        let outcome = try WorkloadRunner.run(try workload(protocol: name, loop: loop))
        let breakdown = outcome.summary.breakdown
        let sampled = breakdown.count()
        let measured = outcome.summary.rows.last!.count
        // About a fifth of the measured requests are sampled.
        #expect(sampled > 20, "only \(sampled) sampled of \(measured)")
        #expect(Double(sampled) < Double(measured) * 0.35, "\(sampled) sampled of \(measured)")
        let stages = BreakdownRecorder.Stage.allCases.map { breakdown.meanMicroseconds($0) }
        let sum = stages.reduce(0, +)
        let endToEnd = breakdown.meanMicroseconds(nil)
        #expect(endToEnd > 0)
        // Network is the remainder of the round trip: it is clamped at zero only if the replica
        // reported more time than the round trip it sat inside, which would break the sum.
        #expect(abs(sum - endToEnd) <= endToEnd * 0.03, "stages \(stages) sum to \(sum) µs, end to end \(endToEnd) µs")
        // Every request was ordered: ordering took time on some replica clock.
        #expect(breakdown.meanMicroseconds(.ordering) > 0, "stages \(stages)")
        // Each kind has its rows, and the whole.
        let rows = breakdown.csv.split(separator: "\n")
        #expect(rows[0] == Substring(BreakdownRecorder.header))
        #expect(rows.contains { $0.hasPrefix("kv.put,ordering,") })
        #expect(rows.contains { $0.hasPrefix("all,end_to_end,") })
    }

    @Test func withoutSamplingNothingIsRecorded() throws {
        var spec = try workload(protocol: "multi-leader", loop: "loop: closed")
        spec.breakdownSampleRate = 0
        spec.durationSeconds = 0.5
        let outcome = try WorkloadRunner.run(spec)
        #expect(outcome.summary.breakdown.isEmpty)
    }

    @Test func theNetworkStageIsTheRoundTripMinusTheReplicasShare() {
        let replica = ReplicaStages(queueNanoseconds: 100, orderingNanoseconds: 2_000, executionNanoseconds: 300, holdNanoseconds: 50)
        let stages = BreakdownRecorder.stages(intendedNanoseconds: 1_000, firstSentNanoseconds: 1_500, answeredSendNanoseconds: 9_500,
                                              repliedNanoseconds: 13_000, replica: replica)
        #expect(stages[.clientWait] == 500)
        #expect(stages[.retryWait] == 8_000)
        #expect(stages[.network] == 3_500 - 2_450)
        #expect(stages.values.reduce(0, +) == 13_000 - 1_000)
        // A replica claiming more than the round trip: network is zero, never negative.
        let greedy = BreakdownRecorder.stages(intendedNanoseconds: 0, firstSentNanoseconds: 0, answeredSendNanoseconds: 0, repliedNanoseconds: 1_000,
                                              replica: replica)
        #expect(greedy[.network] == 0)
    }
}
