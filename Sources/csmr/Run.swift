import ArgumentParser
import Foundation
import Harness
import Linearizability
import Workload

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a workload file on an in-process cluster and write latency and throughput results.",
        discussion: """
        Writes summary.csv, timeseries.csv, one .hgrm per operation, run.yaml (the resolved workload, \
        the commit and the machine) and, with --history, history.jsonl into the output folder. \
        Workload fields are documented in workloads/README.md.
        """
    )

    @Argument(help: "The workload file (YAML).")
    var workload: String

    @Option(help: "Output folder (default: results/<name>-<time>).")
    var out: String?

    @Flag(help: "Also record every operation in history.jsonl (for csmr check).")
    var history = false

    @Flag(help: "No progress lines on stderr.")
    var quiet = false

    func run() throws {
        var spec = try WorkloadSpec.loadOrExit(path: workload, command: "csmr run")
        let folder = URL(fileURLWithPath: out ?? "results/\(spec.name)-\(RunMetadata.timestamp())")
        let shape = spec.composition.map { "composition \(URL(fileURLWithPath: $0).lastPathComponent)" }
            ?? "\(spec.group.replication.rawValue), \(spec.group.replicas) replica(s)"
        FileHandle.standardError.write(Data("csmr run: \(spec.name): \(shape), \(spec.clients.count) \(spec.clients.loop.rawValue)-loop client(s), \(spec.warmupSeconds) s warm-up + \(spec.operations.map { "\($0) operations" } ?? "\(spec.durationSeconds) s") -> \(folder.path)\n".utf8))
        let progress: (@Sendable (String) -> Void)? = quiet ? nil : { @Sendable (line: String) in
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
        if spec.target == .etcd {
            let rows = try EtcdDelegate.run(spec, binary: try EtcdDelegate.binary(), folder: folder, history: history, quiet: quiet)
            try RunMetadata.yaml(for: spec, command: CommandLine.arguments.joined(separator: " "))
                .write(to: folder.appendingPathComponent("run.yaml"), atomically: true, encoding: .utf8)
            print(RunSummary.table(rows))
            print("results in \(folder.path)")
            return
        }
        if spec.group.durability != .none, spec.group.dataDirectory == nil {
            // Recorded in run.yaml as resolved, so the run names where its files are.
            spec.group.dataDirectory = folder.appendingPathComponent("data").path
        }
        let outcome: RunOutcome
        do {
            outcome = try WorkloadRunner.run(spec, recordHistory: history, folder: folder.path, progress: progress)
        } catch let error as SpecErrors {
            FileHandle.standardError.write(Data("csmr run: the workload cannot run as written; nothing ran.\n\(error)\n".utf8))
            throw ExitCode(2)
        }
        try outcome.summary.write(to: folder)
        try RunMetadata.yaml(for: spec, command: CommandLine.arguments.joined(separator: " "))
            .write(to: folder.appendingPathComponent("run.yaml"), atomically: true, encoding: .utf8)
        if history {
            try HistoryFile.encode(outcome.history).write(to: folder.appendingPathComponent("history.jsonl"), atomically: true, encoding: .utf8)
        }
        print(outcome.summary.table)
        if let storage = outcome.summary.storage {
            print(String(format: "storage: durability %@, %.0f syncs/s, %.1f commands per sync, sync mean %.0f µs (p50 ≤ %.0f µs, p99 ≤ %.0f µs)",
                         storage.mode.rawValue, storage.syncsPerSecond,
                         storage.commandsPerSync(completedPerSecond: outcome.summary.rows.last?.achievedOperationsPerSecond ?? 0),
                         storage.syncMicrosecondsMean, storage.syncMicrosecondsP50, storage.syncMicrosecondsP99))
        }
        if let steps = outcome.extensionSteps {
            print("extension: \(steps.produced) put(s) extended into the log, \(steps.applied) applied")
        }
        if outcome.summary.unfinished > 0 {
            print("\(outcome.summary.unfinished) request(s) meant for the window had no reply after the \(spec.drainSeconds) s drain (column unfinished): the system did not keep up with the offered load.")
        }
        print("results in \(folder.path)")
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a recorded history (history.jsonl) for linearizability, per key, lock and log."
    )

    @Argument(help: "A history.jsonl written by csmr run --history.")
    var history: String

    func run() throws {
        let text: String
        do {
            text = try String(contentsOfFile: history, encoding: .utf8)
        } catch {
            FileHandle.standardError.write(Data("csmr check: cannot read \(history): \(error.localizedDescription)\n".utf8))
            throw ExitCode(2)
        }
        let operations: [HistoryOperation]
        do {
            operations = try HistoryFile.decode(text, file: history)
        } catch {
            FileHandle.standardError.write(Data("csmr check: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let results = LinearizabilityChecker().checkAll(operations)
        var failed = false
        for object in results.keys.sorted() {
            switch results[object]! {
            case .linearizable: break
            case let .violation(_, explanation):
                failed = true
                print("NOT linearizable: \(object): \(explanation)")
            case let .undecided(_, reason):
                failed = true
                print("undecided: \(object): \(reason)")
            }
        }
        print("\(operations.count) operations on \(results.count) object(s): \(failed ? "FAILED" : "linearizable")")
        if failed { throw ExitCode.failure }
    }
}

extension WorkloadSpec {
    /// The workload at `path`, or every problem in it on stderr and exit status 2 (nothing runs).
    static func loadOrExit(path: String, command: String) throws -> WorkloadSpec {
        do {
            return try WorkloadSpec.load(path: path)
        } catch {
            FileHandle.standardError.write(Data("\(command): the workload file has errors; nothing ran.\n\(error)\n".utf8))
            throw ExitCode(2)
        }
    }
}
