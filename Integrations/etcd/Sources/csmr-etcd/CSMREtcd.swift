import ArgumentParser
import EtcdTarget
import Foundation
import Harness
import Workload

/// The etcd target's runner. `csmr run` and `csmr compare` build it and hand it `target: etcd`
/// workloads (docs/architecture.md, "The etcd target"); it can also be run by hand.
@main
struct CSMREtcd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "csmr-etcd",
        abstract: "Run a target: etcd workload against etcd v3 over gRPC, with csmr's load generator.",
        subcommands: [RunEtcd.self, SweepEtcd.self]
    )
}

struct RunEtcd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a target: etcd workload file; writes the same result files as csmr run.",
        discussion: "A local cluster's data directories (etcd-data/) and member logs (etcd-mN.log) go to the output folder."
    )

    @OptionGroup var options: WorkloadOptions

    @Flag(help: "Also record every operation in history.jsonl (for csmr check).")
    var history = false

    func run() throws {
        let spec = try options.load()
        let folder = options.folder
        let outcome = try reportingFailures { try EtcdRunner.run(spec, folder: folder, recordHistory: history, progress: options.progress) }
        try outcome.summary.write(to: folder)
        // csmr run / compare replace this with their full run.yaml (commit, machine).
        try ("# Written by csmr-etcd. `workload:` is the resolved workload file.\nworkload:\n"
            + spec.yaml.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n") + "\n")
            .write(to: folder.appendingPathComponent("run.yaml"), atomically: true, encoding: .utf8)
        if history {
            try HistoryFile.encode(outcome.history).write(to: folder.appendingPathComponent("history.jsonl"), atomically: true, encoding: .utf8)
        }
        print(outcome.summary.table)
        if outcome.summary.unfinished > 0 {
            print("\(outcome.summary.unfinished) request(s) meant for the window had no reply after the \(spec.drainSeconds) s drain (column unfinished).")
        }
    }
}

/// `csmr sweep` and sweeping comparisons hand a `target: etcd` workload with a `sweep:` block
/// here: each step is a run of its own against a fresh local cluster (or the named endpoints),
/// analysed as every sweep step is (`SweepRunner`).
struct SweepEtcd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "Sweep a target: etcd workload's sweep: block; writes sweep.csv and step-N/timeseries.csv as csmr sweep does."
    )

    @OptionGroup var options: WorkloadOptions

    func run() throws {
        let spec = try options.load()
        guard let sweep = spec.sweep else {
            FileHandle.standardError.write(Data("csmr-etcd: \(options.workload) has no sweep: block; nothing ran.\n".utf8))
            throw ExitCode(2)
        }
        let folder = options.folder
        let outcome = try reportingFailures { try EtcdRunner.sweep(spec, sweep: sweep, folder: folder, progress: options.progress) }
        try outcome.csv.write(to: folder.appendingPathComponent("sweep.csv"), atomically: true, encoding: .utf8)
    }
}

/// What both subcommands take: the workload file, where results go, and whether to be quiet.
struct WorkloadOptions: ParsableArguments {
    @Argument(help: "The workload file (YAML), with target: etcd (and, for sweep, a sweep: block).")
    var workload: String

    @Option(help: "Output folder.")
    var out: String

    @Flag(help: "No progress lines on stderr.")
    var quiet = false

    var folder: URL { URL(fileURLWithPath: out) }

    var progress: (@Sendable (String) -> Void)? {
        quiet ? nil : { @Sendable (line: String) in FileHandle.standardError.write(Data((line + "\n").utf8)) }
    }

    /// The workload, or exit 2 with its errors.
    func load() throws -> WorkloadSpec {
        do {
            return try WorkloadSpec.load(path: workload)
        } catch {
            FileHandle.standardError.write(Data("csmr-etcd: the workload file has errors; nothing ran.\n\(error)\n".utf8))
            throw ExitCode(2)
        }
    }
}

/// Runs `body`; a workload it cannot run exits 2, any other failure 1, each with its reason.
func reportingFailures<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as SpecErrors {
        FileHandle.standardError.write(Data("csmr-etcd: the workload cannot run as written; nothing ran.\n\(error)\n".utf8))
        throw ExitCode(2)
    } catch {
        FileHandle.standardError.write(Data("csmr-etcd: \(error)\n".utf8))
        throw ExitCode.failure
    }
}
