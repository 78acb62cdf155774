import ArgumentParser
import Foundation
import Harness
import Workload

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run every variant of a comparison spec, one after another, and write compare.csv.",
        discussion: """
            Each variant's own results (summary.csv, timeseries.csv, .hgrm, run.yaml) go to variant-N/ in the output folder. \
            With repeat: R in the spec, the variants run in R rounds, each run's results go to variant-N/run-K/, \
            compare.csv holds each variant's median run and repetitions.csv every run.
            """
    )

    @Argument(help: "The comparison spec (YAML): a base workload and the fields to vary.")
    var spec: String

    @Option(help: "Output folder (default: results/<name>-<time>).")
    var out: String?

    @Flag(help: "No progress lines on stderr.")
    var quiet = false

    func run() throws {
        let comparison: CompareSpec
        do {
            comparison = try CompareSpec.load(path: spec)
        } catch {
            FileHandle.standardError.write(Data("csmr compare: the spec has errors; nothing ran.\n\(error)\n".utf8))
            throw ExitCode(2)
        }
        let folder = URL(fileURLWithPath: out ?? "results/\(comparison.name)-\(RunMetadata.timestamp())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var runs: [CompareSpec.VariantRun] = []
        var sweepCSV = ""
        // Built before anything runs, so a failed build wastes no measurement.
        let etcd = comparison.variants.contains { $0.workload.target == .etcd } ? try EtcdDelegate.binary() : nil
        let rounds = comparison.repetitions
        for round in 1...rounds {
            for (index, variant) in comparison.variants.enumerated() {
                let which = rounds > 1 ? "variant \(index + 1) run \(round)/\(rounds)" : "variant \(index + 1)"
                FileHandle.standardError.write(Data("csmr compare: \(which) of \(comparison.variants.count): \(variant.label)\n".utf8))
                let progress: (@Sendable (String) -> Void)? = quiet ? nil : { @Sendable (line: String) in
                    FileHandle.standardError.write(Data(("  " + line + "\n").utf8))
                }
                var variantFolder = folder.appendingPathComponent("variant-\(index + 1)")
                if rounds > 1 { variantFolder.appendPathComponent("run-\(round)") }
                var workload = variant.workload
                if let sweep = workload.sweep {
                    // A sweep per variant (never repeated: the spec refuses it): sweep.csv gets the
                    // variant's fields as leading columns, so the plot draws a curve per variant.
                    // Each step keeps its data in step-N/data (Sweep.sweep): a step runs a fresh
                    // cluster, which refuses a data directory that already holds files.
                    let outcome = try Sweep.sweep(workload, sweep: sweep, folder: variantFolder, progress: progress, etcdBinary: etcd)
                    try outcome.csv.write(to: variantFolder.appendingPathComponent("sweep.csv"), atomically: true, encoding: .utf8)
                    let header = (["variant"] + comparison.fields).joined(separator: ",") + ","
                    let prefix = (["\(index + 1)"] + variant.values.map(CompareSpec.csvField)).joined(separator: ",") + ","
                    let lines = SweepStep.csv(outcome.steps, knee: outcome.knee, p99BoundMicroseconds: sweep.p99BoundMicroseconds, prefixHeader: header, prefix: prefix).split(separator: "\n")
                    sweepCSV += (sweepCSV.isEmpty ? lines : Array(lines.dropFirst())).joined(separator: "\n") + "\n"
                    try sweepCSV.write(to: folder.appendingPathComponent("sweep.csv"), atomically: true, encoding: .utf8)
                    print("variant \(index + 1) \(variant.label): knee " + (outcome.knee.map { String(format: "%.0f ops/s", outcome.steps[$0].offeredOperationsPerSecond) } ?? "none"))
                    continue
                }
                if workload.group.durability != .none, workload.group.dataDirectory == nil {
                    workload.group.dataDirectory = variantFolder.appendingPathComponent("data").path
                }
                var run = CompareSpec.VariantRun(variant: index + 1, repetition: round, values: variant.values, rows: [])
                if workload.target == .etcd, let etcd {
                    run.rows = try EtcdDelegate.run(workload, binary: etcd, folder: variantFolder, history: false, quiet: quiet)
                } else {
                    let outcome = try WorkloadRunner.run(workload, folder: variantFolder.path, progress: progress)
                    try outcome.summary.write(to: variantFolder)
                    run.rows = outcome.summary.rows
                    run.storage = outcome.summary.storage
                    run.locationRows = outcome.summary.locationRows
                }
                try RunMetadata.yaml(for: workload, command: CommandLine.arguments.joined(separator: " ") + "  # \(which): \(variant.label)")
                    .write(to: variantFolder.appendingPathComponent("run.yaml"), atomically: true, encoding: .utf8)
                runs.append(run)
                // Written after every run, so an interrupted comparison keeps what it measured.
                try CompareSpec.csv(fields: comparison.fields, runs: CompareSpec.medianRuns(runs, by: comparison.medianBy))
                    .write(to: folder.appendingPathComponent("compare.csv"), atomically: true, encoding: .utf8)
                if rounds > 1 {
                    try CompareSpec.csv(fields: comparison.fields, runs: runs)
                        .write(to: folder.appendingPathComponent("repetitions.csv"), atomically: true, encoding: .utf8)
                }
                let all = run.all
                print("\(which) \(variant.label): \(String(format: "%.0f", all.achievedOperationsPerSecond)) ops/s, p50 \(all.p50) µs, p99 \(all.p99) µs, errors \(all.errors)")
            }
        }
        if rounds > 1 {
            // Each variant's median run, with the spread of the column that chose it: what
            // compare.csv holds.
            let column = comparison.medianBy
            for median in CompareSpec.medianRuns(runs, by: column) {
                let values = runs.filter { $0.variant == median.variant }.map { column.value($0.all) }
                let all = median.all
                print("variant \(median.variant) \(comparison.variants[median.variant - 1].label): run \(median.repetition) is the median of "
                      + "\(values.count) by \(column.rawValue) (runs \(String(format: "%.0f", values.min()!))–\(String(format: "%.0f", values.max()!))): "
                      + "\(String(format: "%.0f", all.achievedOperationsPerSecond)) ops/s, p50 \(all.p50) µs, p99 \(all.p99) µs")
            }
        }
        print("results in \(folder.path)/" + (runs.isEmpty ? "sweep.csv" : "compare.csv"))
    }
}
