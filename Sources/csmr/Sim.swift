import ArgumentParser
import Foundation
import Composition
import Execution
import Paxos
import Primitives
import Simulation
import Workload

struct Sim: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the replica group in the deterministic simulator with faults, and check it.",
        discussion: """
        With --seed, replays one run and prints its faults and checks. Otherwise runs --seeds runs \
        from --first-seed, prints one line per failing seed with the command that replays it, and \
        exits non-zero on any violation.
        """
    )

    @Option(help: "Replay exactly this seed.")
    var seed: UInt64?

    @Option(help: "How many seeds to run (without --seed).")
    var seeds = 100

    @Option(help: "The first seed of a multi-seed run.")
    var firstSeed: UInt64 = 1

    @Option(name: .customLong("protocol"),
            help: "multi-leader (Mencius-style) or single-leader (Multi-Paxos), the names workloads and compositions use; multi and single for short.")
    var leadership = "multi"

    @Option(help: "Replicas in the group (odd: 3, 5, 7).")
    var replicas = 3

    @Option(help: "Simulated clients.")
    var clients = 4

    @Option(help: "Operations per client.")
    var operations = 25

    @Option(help: "Requests per batch.")
    var batch = 8

    @Option(help: "Batches in flight per leader.")
    var pipeline = 4

    @Option(help: "How replicas execute decided commands: sequential, early or graph.")
    var scheduler = "sequential"

    @Option(help: "Execution workers per replica (with --scheduler early or graph).")
    var workers = 2

    @Option(help: "A composition spec (YAML): several groups, routed by a proxy (see docs/composition.md).")
    var composition: String?

    @Flag(help: "Run without crashes, partitions, loss or duplication.")
    var noFaults = false

    /// The leadership mode `--protocol` names: the workload and composition names, or their short forms.
    var mode: LeadershipMode? { LeadershipMode(rawValue: leadership) ?? LeadershipMode(rawValue: leadership + "-leader") }

    func validate() throws {
        guard mode != nil else {
            throw ValidationError("--protocol must be \(LeadershipMode.allCases.map(\.rawValue).joined(separator: " or ")) (or multi, single), got \(leadership)")
        }
        guard replicas >= 1, replicas % 2 == 1, replicas <= 15 else { throw ValidationError("--replicas must be odd, 1 ... 15, got \(replicas)") }
        guard seeds >= 1 else { throw ValidationError("--seeds must be at least 1, got \(seeds)") }
        guard (1...64).contains(clients) else { throw ValidationError("--clients must be 1 ... 64, got \(clients)") }
        guard (0...10_000).contains(operations) else { throw ValidationError("--operations must be 0 ... 10000, got \(operations)") }
        guard (1...1_024).contains(batch) else { throw ValidationError("--batch must be 1 ... 1024, got \(batch)") }
        guard (1...256).contains(pipeline) else { throw ValidationError("--pipeline must be 1 ... 256, got \(pipeline)") }
        guard SchedulerKind(rawValue: scheduler) != nil else {
            throw ValidationError("--scheduler must be one of \(SchedulerKind.allCases.map(\.rawValue).joined(separator: ", ")), got \(scheduler)")
        }
        guard (1...16).contains(workers) else { throw ValidationError("--workers must be 1 ... 16, got \(workers)") }
    }

    func options(seed: UInt64, spec: CompositionSpec?) -> SimulationOptions {
        var options = SimulationOptions(seed: seed, mode: mode!, replicaCount: replicas,
                                        clientCount: clients, operationsPerClient: operations, faults: !noFaults,
                                        batchCommandsMax: batch, pipelineDepthMax: pipeline,
                                        execution: ExecutionConfig(scheduler: SchedulerKind(rawValue: scheduler)!, workers: workers))
        options.composition = spec
        options.compositionPath = composition
        return options
    }

    func run() throws {
        var spec: CompositionSpec?
        if let composition {
            do {
                spec = try CompositionSpec.parse(SpecFile.read(composition), file: composition)
            } catch {
                FileHandle.standardError.write(Data("csmr sim: the composition has errors; nothing ran.\n\(error)\n".utf8))
                throw ExitCode(2)
            }
        }
        let options = { (seed: UInt64) in self.options(seed: seed, spec: spec) }
        if let seed {
            let options = options(seed)
            print("seed \(seed): \(options.replayCommand)")
            var simulator = Simulator(options: options)
            let report = simulator.run()
            for line in report.faultLog { print("  \(line)") }
            print("  \(report.operationsCompleted) operations completed, \(report.slotsDecided) slots decided, \(report.messagesSent) messages, \(report.skipsAhead) skips ahead, \(report.syncs) disk syncs, \(report.simulatedMilliseconds) ms simulated")
            if report.extensionSteps > 0 { print("  \(report.extensionSteps) extension steps, each in the log once, in put order") }
            for violation in report.violations { print("  VIOLATION \(violation)") }
            print(report.passed ? "seed \(seed): ok" : "seed \(seed): FAILED")
            if !report.passed { throw ExitCode.failure }
            return
        }
        let start = Date()
        var failures = 0
        var operations = 0
        var seedsSkippingAhead = 0
        for offset in 0..<UInt64(seeds) {
            let options = options(firstSeed + offset)
            var simulator = Simulator(options: options)
            let report = simulator.run()
            operations += report.operationsCompleted
            if report.skipsAhead > 0 { seedsSkippingAhead += 1 }
            if !report.passed {
                failures += 1
                print("FAIL seed \(options.seed): \(report.violations.first!) | replay: \(options.replayCommand)")
            }
        }
        let seconds = Date().timeIntervalSince(start)
        let shape = spec.map { "composition \($0.name) (\($0.strategy), \($0.groups.count) groups)" } ?? "\(mode!.rawValue), \(replicas) replicas"
        print("\(seeds) seeds from \(firstSeed), \(shape): \(seeds - failures) passed, \(failures) failed; \(operations) client operations checked; skips ahead in \(seedsSkippingAhead) seeds; \(String(format: "%.1f", seconds)) s")
        if failures > 0 { throw ExitCode.failure }
    }
}
