import Foundation
import Workload

/// Runs a saturation sweep: one open-loop run per offered rate, in increasing order, each
/// analysed from its per-second samples (`SweepStep.analyze`), then the knee (`Knee.mark`).
///
/// Each step starts a fresh target, so a step overloaded into a long backlog does not leak its
/// queue into the next one; the steadiness detection discards the fresh target's start.
public enum SweepRunner {
    public struct Outcome: Sendable {
        public var steps: [SweepStep]
        /// Index into `steps` of the knee; nil when no step met the criteria.
        public var knee: Int?
        /// Each step's time series (`timeseries.csv` of its run).
        public var timeseries: [String]
        public var p99BoundMicroseconds: UInt64

        public var csv: String { SweepStep.csv(steps, knee: knee, p99BoundMicroseconds: p99BoundMicroseconds) }

        public init(steps: [SweepStep], knee: Int?, timeseries: [String], p99BoundMicroseconds: UInt64) {
            self.steps = steps
            self.knee = knee
            self.timeseries = timeseries
            self.p99BoundMicroseconds = p99BoundMicroseconds
        }
    }

    /// - Parameter runStep: runs one step's workload (the in-process cluster, processes, or a
    ///   synthetic target in tests).
    public static func run(_ base: WorkloadSpec, sweep: SweepSpec, progress: (@Sendable (String) -> Void)? = nil,
                           runStep: (WorkloadSpec) throws -> RunOutcome) throws -> Outcome {
        var steps: [SweepStep] = []
        var timeseries: [String] = []
        for (index, rate) in sweep.ratesOperationsPerSecond.enumerated() {
            progress?("sweep step \(index + 1)/\(sweep.ratesOperationsPerSecond.count): \(Int(rate)) ops/s for up to \(sweep.stepRunSeconds) s")
            let outcome = try runStep(sweep.stepWorkload(base, rate: rate))
            let step = SweepStep.analyze(target: rate, recorder: outcome.summary.recorder, sweep: sweep)
            progress?(String(format: "  offered %.0f, achieved %.0f ops/s, p99 %d µs, steady after %d s%@", step.offeredOperationsPerSecond,
                             step.achievedOperationsPerSecond, step.p99, step.steadyAfterSeconds, step.settled ? "" : " (never settled)"))
            steps.append(step)
            timeseries.append(outcome.summary.timeseriesCSV)
        }
        let knee = Knee.mark(&steps, p99BoundMicroseconds: sweep.p99BoundMicroseconds, achievedShareMin: sweep.achievedShareMin)
        return Outcome(steps: steps, knee: knee, timeseries: timeseries, p99BoundMicroseconds: sweep.p99BoundMicroseconds)
    }

    /// The same, each step in a folder of its own, `folder/step-N`, where its time series is
    /// written (`timeseries.csv`); `runStep` gets the step's workload and that folder.
    public static func run(_ base: WorkloadSpec, sweep: SweepSpec, folder: URL, progress: (@Sendable (String) -> Void)? = nil,
                           runStep: (WorkloadSpec, URL) throws -> RunOutcome) throws -> Outcome {
        var stepIndex = 0
        return try run(base, sweep: sweep, progress: progress) { step in
            stepIndex += 1
            let stepFolder = folder.appendingPathComponent("step-\(stepIndex)")
            let outcome = try runStep(step, stepFolder)
            try FileManager.default.createDirectory(at: stepFolder, withIntermediateDirectories: true)
            try outcome.summary.timeseriesCSV.write(to: stepFolder.appendingPathComponent("timeseries.csv"), atomically: true, encoding: .utf8)
            return outcome
        }
    }

    /// The sweep against a synthetic target of known capacity (see `SyntheticTarget`).
    public static func runSynthetic(_ base: WorkloadSpec, sweep: SweepSpec, capacityOperationsPerSecond: Double, rampSeconds: Double = 0,
                                    progress: (@Sendable (String) -> Void)? = nil) throws -> Outcome {
        try run(base, sweep: sweep, progress: progress) { spec in
            try WorkloadRunner.runSynthetic(spec, capacityOperationsPerSecond: capacityOperationsPerSecond, rampSeconds: rampSeconds)
        }
    }
}
