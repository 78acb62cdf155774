import ArgumentParser
import Execution
import Foundation
import Harness
import Primitives
import Services

/// Measures one replica's executor alone over a decided stream: no consensus, no network, so the
/// 2 cores go to execution, which is what the scheduler comparison is about.
struct ExecutorBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "executor-bench",
        abstract: "Measure the execution schedulers on a decided stream: throughput per scheduler, workers, conflict rate and cost."
    )

    @Option(help: "Requests per measurement.")
    var requests = 20_000

    @Option(help: "Requests per decided batch handed to the executor.")
    var batch = 256

    @Option(help: "Synthetic cost per command in µs, comma-separated.")
    var costs = "0,50"

    @Option(help: "Conflict rates (share of commands on one shared key), comma-separated.")
    var conflictRates = "0,0.01,0.1,0.5,1"

    @Option(help: "Worker counts for the parallel schedulers, comma-separated.")
    var workers = "1,2"

    @Option(help: "Repetitions per configuration (the best is kept, as noise only slows runs down).")
    var repeats = 3

    @Option(help: "Write the results as CSV to this file.")
    var csv: String?

    func run() throws {
        guard let costList = Self.doubles(costs), let rateList = Self.doubles(conflictRates),
              let workerList = Self.doubles(workers)?.map({ Int($0) }), workerList.allSatisfy({ (1...64).contains($0) }),
              rateList.allSatisfy({ (0...1).contains($0) }), requests >= 1, batch >= 1, repeats >= 1 else {
            throw ValidationError("--costs, --conflict-rates and --workers take comma-separated numbers (rates 0 ... 1, workers 1 ... 64)")
        }
        var lines = ["cost_us,conflict_rate,scheduler,workers,requests,seconds,ops_s,speedup_vs_sequential"]
        print("cost_us  conflict  scheduler   workers      ops/s   × sequential")
        for cost in costList {
            let spin = SpinCalibration.iterations(microseconds: cost)
            for rate in rateList {
                let stream = Self.stream(count: requests, conflictRate: rate)
                var sequentialRate = 0.0
                var configurations: [(SchedulerKind, Int)] = [(.sequential, 1)]
                for scheduler in [SchedulerKind.early, .graph] { for count in workerList { configurations.append((scheduler, count)) } }
                for (scheduler, count) in configurations {
                    var best = Double.infinity
                    for _ in 0..<repeats {
                        let executor = ParallelExecutor(config: ExecutionConfig(scheduler: scheduler, workers: count, spinIterationsPerCommand: spin))
                        _ = executor.execute(stream.sessions)
                        let start = DispatchTime.now().uptimeNanoseconds
                        var position = 0
                        while position < stream.commands.count {
                            let end = min(stream.commands.count, position + batch)
                            _ = executor.execute(Array(stream.commands[position..<end]))
                            position = end
                        }
                        best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
                    }
                    let throughput = Double(stream.commands.count) / best
                    if scheduler == .sequential { sequentialRate = throughput }
                    let ratio = throughput / sequentialRate
                    print(String(format: "%7.0f  %8.2f  ", cost, rate) + scheduler.rawValue.padded(to: 10)
                        + String(format: "  %7d  %9.0f   %.2f", count, throughput, ratio))
                    lines.append(String(format: "%.0f,%.2f,%@,%d,%d,%.4f,%.0f,%.3f", cost, rate, scheduler.rawValue, count, stream.commands.count, best, throughput, ratio))
                }
            }
        }
        if let csv { try (lines.joined(separator: "\n") + "\n").write(toFile: csv, atomically: true, encoding: .utf8) }
    }

    static func doubles(_ text: String) -> [Double]? {
        let values = text.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
        return values.contains(nil) || values.isEmpty ? nil : values.map { $0! }
    }

    /// 64 sessions, then kv puts and gets on 10,000 keys, with `conflictRate` of them on one
    /// shared key.
    static func stream(count: Int, conflictRate: Double) -> (sessions: [Request], commands: [Request]) {
        let clients = 64
        let sessions = (0..<clients).map { _ in Request(client: ClientID(0), sequence: 1, command: .openSession) }
        var random = SplitMix64(seed: 42)
        var sequences = [UInt64](repeating: 0, count: clients)
        var commands: [Request] = []
        commands.reserveCapacity(count)
        for index in 0..<count {
            let client = index % clients
            sequences[client] += 1
            let key = random.chance(conflictRate) ? "shared" : "k\(random.next() % 10_000)"
            let command: Command = random.chance(0.5) ? .kvPut(key: key, value: "value-\(index)") : .kvGet(key: key)
            commands.append(Request(client: ClientID(UInt64(client + 1)), sequence: sequences[client], command: command))
        }
        return (sessions, commands)
    }
}
