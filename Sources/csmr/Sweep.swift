import ArgumentParser
import Foundation
import Harness
import Workload

struct Sweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find where a workload saturates: open-loop steps of increasing offered rate, each measured once steady, and the knee.",
        discussion: """
        The rates and the knee's p99 bound come from the workload's sweep: block (workloads/README.md), or --rates and \
        --p99-bound-us. Each step discards its start until the per-second throughput settles (steady_after_s). \
        Writes sweep.csv (a row per step; knee = yes on the highest offered rate achieving >= 97 % of it with p99 under \
        the bound), step-N/timeseries.csv and run.yaml; scripts/plot draws sweep.png with the knee marked.
        """
    )

    @Argument(help: "The workload file (YAML).")
    var workload: String

    @Option(help: "Offered rates in operations per second, comma-separated (replaces the file's sweep rates).")
    var rates: String?

    @Option(name: .customLong("p99-bound-us"), help: "The knee's p99 bound in microseconds (replaces the file's).")
    var p99BoundMicroseconds: UInt64?

    @Option(help: "Output folder (default: results/<name>-sweep-<time>).")
    var out: String?

    @Flag(help: "No progress lines on stderr.")
    var quiet = false

    func run() throws {
        let spec = try WorkloadSpec.loadOrExit(path: workload, command: "csmr sweep")
        var sweep = spec.sweep ?? SweepSpec()
        if let rates {
            let parsed = rates.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard !parsed.isEmpty, parsed.allSatisfy({ $0 != nil && $0! >= 1 }) else {
                FileHandle.standardError.write(Data("csmr sweep: --rates: expected comma-separated rates of at least 1 operation per second, got \(rates)\n".utf8))
                throw ExitCode(2)
            }
            sweep.ratesOperationsPerSecond = parsed.map { $0! }.sorted()
        }
        if let p99BoundMicroseconds { sweep.p99BoundMicroseconds = p99BoundMicroseconds }
        guard !sweep.ratesOperationsPerSecond.isEmpty else {
            FileHandle.standardError.write(Data("csmr sweep: \(workload) has no sweep: block; give --rates\n".utf8))
            throw ExitCode(2)
        }
        let folder = URL(fileURLWithPath: out ?? "results/\(spec.name)-sweep-\(RunMetadata.timestamp())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let progress: (@Sendable (String) -> Void)? = quiet ? nil : { @Sendable (line: String) in
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
        let outcome = try Self.sweep(spec, sweep: sweep, folder: folder, progress: progress)
        try outcome.csv.write(to: folder.appendingPathComponent("sweep.csv"), atomically: true, encoding: .utf8)
        try RunMetadata.yaml(for: spec, command: CommandLine.arguments.joined(separator: " "))
            .write(to: folder.appendingPathComponent("run.yaml"), atomically: true, encoding: .utf8)
        print(Self.table(outcome, sweep: sweep))
        print("results in \(folder.path)/sweep.csv")
    }

    /// Runs every step of `sweep` on the workload's target, writing each step's time series. A
    /// `target: etcd` sweep runs in csmr-etcd (`etcdBinary`, found or built when not given).
    static func sweep(_ spec: WorkloadSpec, sweep: SweepSpec, folder: URL, progress: (@Sendable (String) -> Void)?,
                      etcdBinary: String? = nil) throws -> SweepRunner.Outcome {
        if spec.target == .etcd {
            var swept = spec
            swept.sweep = sweep
            return try EtcdDelegate.sweep(swept, binary: try etcdBinary ?? EtcdDelegate.binary(), folder: folder, quiet: progress == nil)
        }
        return try SweepRunner.run(spec, sweep: sweep, folder: folder, progress: progress) { step, stepFolder in
            var step = step
            if step.group.durability != .none, spec.group.dataDirectory == nil {
                step.group.dataDirectory = stepFolder.appendingPathComponent("data").path
            }
            return try WorkloadRunner.run(step, folder: stepFolder.path)
        }
    }

    static func table(_ outcome: SweepRunner.Outcome, sweep: SweepSpec) -> String {
        var lines = ["target/s    offered/s   achieved/s  p50 µs      p99 µs      p99.9 µs    steady after  knee"]
        for (index, step) in outcome.steps.enumerated() {
            let columns = [String(format: "%.0f", step.targetOperationsPerSecond), String(format: "%.0f", step.offeredOperationsPerSecond),
                           String(format: "%.0f", step.achievedOperationsPerSecond), "\(step.p50)", "\(step.p99)", "\(step.p999)",
                           "\(step.steadyAfterSeconds) s\(step.settled ? "" : "*")"]
            let mark = index == outcome.knee ? "<- knee" : (step.withinKnee ? "ok" : "")
            lines.append(columns.map { $0.padding(toLength: max(12, $0.count + 1), withPad: " ", startingAt: 0) }.joined() + "  " + mark)
        }
        if let knee = outcome.knee {
            lines.append(String(format: "knee: %.0f ops/s offered (achieved >= %.0f %%, p99 < %d µs)", outcome.steps[knee].offeredOperationsPerSecond,
                                sweep.achievedShareMin * 100, sweep.p99BoundMicroseconds))
        } else {
            lines.append("knee: none of the steps achieved >= \(Int(sweep.achievedShareMin * 100)) % of its offered rate with p99 < \(sweep.p99BoundMicroseconds) µs")
        }
        if outcome.steps.contains(where: { !$0.settled }) { lines.append("* never settled within steady_wait_max_s; measured from there") }
        return lines.joined(separator: "\n")
    }
}
