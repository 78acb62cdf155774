import Foundation
import Testing

/// Runs the built `csmr` executable, as a user would.
enum CSMRBinary {
    /// The test bundle sits in the build products folder, beside the executable.
    static var url: URL {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var folder = bundle.deletingLastPathComponent()
        while folder.path != "/" {
            let candidate = folder.appendingPathComponent("csmr")
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate.path, isDirectory: &isDirectory), !isDirectory.boolValue {
                return candidate
            }
            folder.deleteLastPathComponent()
        }
        return URL(fileURLWithPath: ".build/debug/csmr")
    }

    static func run(_ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
        let process = Process()
        process.executableURL = url
        process.arguments = arguments
        let output = Pipe(), error = Pipe()
        process.standardOutput = output
        process.standardError = error
        try process.run()
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = error.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: outputData, as: UTF8.self), String(decoding: errorData, as: UTF8.self))
    }
}

@Suite struct CLITests {
    @Test func versionNamesJemallocAndItsVersion() throws {
        let result = try CSMRBinary.run(["version"])
        #expect(result.status == 0)
        #expect(result.output.contains("csmr 0."))
        #expect(result.output.contains("swift 6."))
        // jemalloc reports its own version, e.g. "allocator jemalloc 5.3.0-0-g54eaed1d...".
        #expect(result.output.range(of: #"allocator jemalloc \d+\.\d+\.\d+"#, options: .regularExpression) != nil,
                "csmr version printed: \(result.output)")
    }

    @Test func demoRunsAndTheReplicasAgree() throws {
        let result = try CSMRBinary.run(["demo"])
        #expect(result.status == 0, "stderr: \(result.error)")
        #expect(result.output.contains("replicas agree"))
    }

    @Test func helpListsOnlyWorkingSubcommands() throws {
        let result = try CSMRBinary.run(["--help"])
        #expect(result.status == 0)
        for subcommand in ["run", "compare", "sim", "check", "demo", "version"] { #expect(result.output.contains(subcommand)) }
    }

    @Test func aBadFlagIsAClearErrorWithANonZeroExit() throws {
        let result = try CSMRBinary.run(["demo", "--replicas", "0"])
        #expect(result.status != 0)
        #expect(result.error.contains("--replicas must be at least 1"))
    }
}

@Suite struct HarnessCLITests {
    static func temporaryFile(_ name: String, _ text: String) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("csmr-cli-\(UUID().uuidString)-\(name)")
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    @Test func runRefusesABadWorkloadNamingTheLineAndFieldAndRunsNothing() throws {
        let path = try Self.temporaryFile("bad.yaml", "name: bad\nclients:\n  count: lots\n")
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("csmr-cli-out-\(UUID().uuidString)").path
        let result = try CSMRBinary.run(["run", path, "--out", out])
        #expect(result.status == 2)
        #expect(result.error.contains("\(path):3:10: clients.count: expected an integer in 1...100000, got \"lots\""))
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test func runWritesTheResultsAndCheckAcceptsTheRecordedHistory() throws {
        let path = try Self.temporaryFile("tiny.yaml", """
            name: tiny
            duration_s: 0.5
            warmup_s: 0.2
            clients: {count: 3}
            keys: {count: 5}
            mix: {kv.get: 0.4, kv.put: 0.3, log.append: 0.3}
            """)
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("csmr-cli-out-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        let run = try CSMRBinary.run(["run", path, "--out", out, "--history", "--quiet"])
        #expect(run.status == 0, "stderr: \(run.error)")
        for file in ["summary.csv", "timeseries.csv", "all.hgrm", "kv.put.hgrm", "run.yaml", "history.jsonl"] {
            #expect(FileManager.default.fileExists(atPath: "\(out)/\(file)"), "\(file) missing")
        }
        let runYAML = try String(contentsOfFile: "\(out)/run.yaml", encoding: .utf8)
        #expect(runYAML.contains("git_commit:") && runYAML.contains("cores:") && runYAML.contains("workload:"))
        let check = try CSMRBinary.run(["check", "\(out)/history.jsonl"])
        #expect(check.status == 0, "\(check.output)")
        #expect(check.output.contains("linearizable"))
    }

    /// A comparison with closed-loop variants and a durable sweep: the sweep's steps each start a
    /// fresh cluster, so each gets data of its own (one shared folder made the second step refuse
    /// to start); compare.csv and sweep.csv both come out.
    @Test func aComparisonMixesRunsAndADurableSweep() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("csmr-cli-compare-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try """
            name: durable
            duration_s: 0.5
            warmup_s: 0.2
            group: {durability: write, checkpoint_interval_slots: 0}
            clients: {count: 4}
            keys: {count: 10}
            mix: {kv.get: 0.5, kv.put: 0.5}
            """.write(to: folder.appendingPathComponent("durable.yaml"), atomically: true, encoding: .utf8)
        try """
            name: mixed
            workload: durable.yaml
            vary:
              clients.count: [2, 4]
            variants:
              - {clients.count: 8, sweep: {rates_ops_s: [200, 400], step_s: 1, steady_window_s: 2, steady_wait_max_s: 0}}
            """.write(to: folder.appendingPathComponent("mixed.yaml"), atomically: true, encoding: .utf8)
        let out = folder.appendingPathComponent("out").path
        let result = try CSMRBinary.run(["compare", folder.appendingPathComponent("mixed.yaml").path, "--out", out, "--quiet"])
        #expect(result.status == 0, "stderr: \(result.error)")
        let compare = try String(contentsOfFile: "\(out)/compare.csv", encoding: .utf8)
        #expect(compare.split(separator: "\n").count > 2)
        let sweep = try String(contentsOfFile: "\(out)/sweep.csv", encoding: .utf8)
        #expect(sweep.split(separator: "\n").count == 3, "\(sweep)")
        for step in 1...2 {
            #expect(FileManager.default.fileExists(atPath: "\(out)/variant-3/step-\(step)/data"), "step \(step) has no data of its own")
        }
    }

    @Test func checkRejectsAHistoryWithAStaleRead() throws {
        let path = try Self.temporaryFile("history.jsonl", """
            {"client":1,"op":"kv.put","key":"a","value":"1","invoke_ns":0,"complete_ns":10,"result":{"stored":true}}
            {"client":1,"op":"kv.put","key":"a","value":"2","invoke_ns":20,"complete_ns":30,"result":{"stored":true}}
            {"client":2,"op":"kv.get","key":"a","invoke_ns":40,"complete_ns":50,"result":{"value":"1"}}
            """)
        let check = try CSMRBinary.run(["check", path])
        #expect(check.status == 1)
        #expect(check.output.contains("NOT linearizable: kv:a"))
    }

    @Test func simReplaysASeedAndReportsItsChecks() throws {
        let result = try CSMRBinary.run(["sim", "--seed", "3", "--protocol", "single"])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("seed 3: ok"))
        let bad = try CSMRBinary.run(["sim", "--replicas", "4"])
        #expect(bad.status != 0)
        #expect(bad.error.contains("--replicas must be odd"))
    }
}
