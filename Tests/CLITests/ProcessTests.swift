import Foundation
import Harness
import Testing

/// Replicas as `csmr replica` processes on loopback: started, killed and stopped by PID.
@Suite(.serialized) struct ProcessTests {
    private static func temporaryFolder() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("csmr-processes-\(UUID().uuidString)").path
    }

    /// PIDs of `csmr replica` processes whose cluster file lies in `folder` (none may outlive a run).
    private static func replicaPIDs(in folder: String) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> Int32? in
            guard let pid = Int32(entry),
                  let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return nil }
            let arguments = String(decoding: data, as: UTF8.self).split(separator: "\0")
            return (arguments.contains("replica") || arguments.contains("proxy")) && arguments.contains { $0.hasPrefix(folder) } ? pid : nil
        }
    }

    @Test func aMixedWorkloadSurvivesAKilledReplicaAndItsHistoryChecks() throws {
        let folder = Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let workload = "\(folder)/tcp.yaml"
        try """
            name: tcp
            duration_s: 3
            warmup_s: 0.5
            target: processes
            group: {replicas: 3, protocol: multi-leader, durability: fsync, checkpoint_interval_slots: 200}
            clients: {count: 8, retry_timeout_ms: 300}
            keys: {count: 40}
            mix: {kv.get: 0.35, kv.put: 0.35, lock.acquire: 0.1, log.append: 0.15, log.retrieve: 0.05}
            lock: {hold_us: 200}
            events:
              - {at_s: 1.5, crash: 2}
            """.write(toFile: workload, atomically: true, encoding: .utf8)
        let out = "\(folder)/out"
        let run = try CSMRBinary.run(["run", workload, "--out", out, "--history", "--quiet"])
        #expect(run.status == 0, "stderr: \(run.error)")
        #expect(run.output.contains("r2 killed") || FileManager.default.fileExists(atPath: "\(out)/timeseries.csv"))
        let timeseries = try String(contentsOfFile: "\(out)/timeseries.csv", encoding: .utf8)
        #expect(timeseries.contains("r2 killed (SIGKILL"))
        let summary = try String(contentsOfFile: "\(out)/summary.csv", encoding: .utf8)
        let all = try #require(summary.split(separator: "\n").last?.split(separator: ","))
        #expect(Int(all[1])! > 20, "summary: \(summary)")
        // The replicas ran as processes with their own logs and files, and none is left running.
        for replica in 0..<3 { #expect(FileManager.default.fileExists(atPath: "\(out)/replica-group-r\(replica).log")) }
        #expect(FileManager.default.fileExists(atPath: "\(out)/cluster.yaml"))
        #expect(Self.replicaPIDs(in: folder).isEmpty)
        let check = try CSMRBinary.run(["check", "\(out)/history.jsonl"])
        #expect(check.status == 0, "\(check.output)")
        #expect(check.output.contains("linearizable"))
    }

    /// Runs a composed workload through `csmr proxy` over processes with history, killing
    /// `crash` replica of `group` at 1.2 s, and checks what every such run must show: it ran, the
    /// kill happened, no process is left, and the history passes `csmr check`. `inspect` gets the
    /// results folder before it is removed.
    private static func runThroughProxy(composition: String, mix: String, crash replica: Int, group: String,
                                        inspect: (String) throws -> Void) throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let compositions = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../workloads/compositions").standardized.path
        let workload = "\(folder)/proxy.yaml"
        try """
            name: via-proxy
            duration_s: 2.5
            warmup_s: 0.5
            target: processes
            proxy: true
            composition: \(compositions)/\(composition)
            group: {durability: write}
            clients: {count: 8, retry_timeout_ms: 500}
            keys: {count: 40}
            mix: \(mix)
            log: {retrieve_length: 4}
            events:
              - {at_s: 1.2, crash: \(replica), group: \(group)}
            """.write(toFile: workload, atomically: true, encoding: .utf8)
        let out = "\(folder)/out"
        let run = try CSMRBinary.run(["run", workload, "--out", out, "--history", "--quiet"])
        #expect(run.status == 0, "stderr: \(run.error)")
        let timeseries = try String(contentsOfFile: "\(out)/timeseries.csv", encoding: .utf8)
        #expect(timeseries.contains("\(group)/r\(replica) killed (SIGKILL"))
        #expect(replicaPIDs(in: folder).isEmpty)
        let check = try CSMRBinary.run(["check", "\(out)/history.jsonl"])
        #expect(check.status == 0, "\(check.output)")
        #expect(check.output.contains("linearizable"))
        try inspect(out)
    }

    @Test func aComposedWorkloadRunsThroughTheProxyProcessAcrossAKilledReplica() throws {
        try Self.runThroughProxy(composition: "addition-2.yaml", mix: "{kv.get: 0.35, kv.put: 0.35, lock.acquire: 0.1, log.append: 0.2}",
                                 crash: 1, group: "store") { out in
            let proxyLog = try String(contentsOfFile: "\(out)/proxy.log", encoding: .utf8)
            #expect(proxyLog.contains("routing"), "proxy log: \(proxyLog)")
        }
    }

    @Test func anExtensionRunsThroughTheProxyProcessAcrossAKilledForwarderAndItsHistoryChecks() throws {
        // Store replica 0 forwards the steps; killing it makes a backup take over.
        try Self.runThroughProxy(composition: "extension-2.yaml", mix: "{kv.get: 0.3, kv.put: 0.4, log.retrieve: 0.2, log.append: 0.1}",
                                 crash: 0, group: "store") { out in
            // The steps reached the log through the replicas: the history holds them as appends,
            // one for every acknowledged put.
            let history = try String(contentsOfFile: "\(out)/history.jsonl", encoding: .utf8).split(separator: "\n")
            let steps = history.filter { $0.contains("\"log.append\"") && $0.contains("g0#") }
            let puts = history.filter { $0.contains("\"kv.put\"") && $0.contains("complete_ns") && !$0.contains("error") }
            #expect(steps.count > 20 && steps.count >= puts.count, "\(steps.count) extension steps in the history for \(puts.count) acknowledged puts")
            let backups = try (1...2).map { try String(contentsOfFile: "\(out)/replica-store-r\($0).log", encoding: .utf8) }
            #expect(backups.contains { $0.range(of: #"extension steps sent [1-9]"#, options: .regularExpression) != nil }, "\(backups)")
        }
    }

    @Test func aPartitionedReplicaDropsFramesTheMajorityKeepsServingTheReplicaCatchesUpAndTheHistoryChecks() throws {
        let folder = Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let workload = "\(folder)/partition.yaml"
        try """
            name: partition
            duration_s: 4
            warmup_s: 0.5
            target: processes
            group: {replicas: 3, protocol: multi-leader, durability: write}
            clients: {count: 8, retry_timeout_ms: 300}
            keys: {count: 40}
            mix: {kv.get: 0.35, kv.put: 0.45, log.append: 0.2}
            events:
              - {at_s: 1, partition: [[2], [0, 1]]}
              - {at_s: 2.5, heal: true}
            """.write(toFile: workload, atomically: true, encoding: .utf8)
        let out = "\(folder)/out"
        let run = try CSMRBinary.run(["run", workload, "--out", out, "--history", "--quiet"])
        #expect(run.status == 0, "stderr: \(run.error)")
        #expect(Self.replicaPIDs(in: folder).isEmpty)
        let logs = try (0..<3).map { try String(contentsOfFile: "\(out)/replica-group-r\($0).log", encoding: .utf8) }
        // Each replica was told its side, then healed, and dropped frames to the other side.
        // (Frames dropped on arrival are rare here, since both ends drop where frames leave; the
        // transport's tests cut one side only.)
        #expect(logs[2].contains("control: blocked peers r0 r1"), "\(logs[2])")
        #expect(logs[0].contains("control: blocked peers r2") && logs[1].contains("control: blocked peers r2"))
        for log in logs {
            #expect(log.contains("control: no peer blocked"))
            #expect(log.range(of: #"peer frames blocked sent [1-9]"#, options: .regularExpression) != nil, "\(log)")
        }
        // Writes went on through the majority while r2 was cut off (second 1, from 1.0 to 2.0 s).
        let timeseries = try String(contentsOfFile: "\(out)/timeseries.csv", encoding: .utf8)
        #expect(timeseries.contains("partition [r2] | [r0 r1]") && timeseries.contains("heal"), "\(timeseries)")
        let partitioned = timeseries.split(separator: "\n").first { $0.hasPrefix("1,kv.put,") }.flatMap { Int($0.split(separator: ",")[2]) }
        #expect((partitioned ?? 0) > 0, "\(timeseries)")
        // r2 caught up after the heal: without the commands decided while it was away it could
        // execute none after them. (At least half of r0's count: r0 may be a little ahead at exit.)
        func executed(_ log: String) -> Int {
            guard let range = log.range(of: #"commands executed [0-9]+"#, options: [.regularExpression, .backwards]) else { return 0 }
            return Int(log[range].split(separator: " ").last!) ?? 0
        }
        #expect(executed(logs[0]) > 0 && executed(logs[2]) * 2 >= executed(logs[0]), "r0 \(executed(logs[0])), r2 \(executed(logs[2]))")
        let check = try CSMRBinary.run(["check", "\(out)/history.jsonl"])
        #expect(check.status == 0, "\(check.output)")
        #expect(check.output.contains("linearizable"))
    }

    @Test func aReplicaIgnoresAMalformedControlFileAndKeepsRunning() throws {
        let folder = Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let ports = try (0..<6).map { _ in try ProcessCluster.freePort() }
        let clusterPath = "\(folder)/cluster.yaml"
        try """
            cluster: control
            groups:
              - name: main
                replicas:
                  - {peer: 127.0.0.1:\(ports[0]), client: 127.0.0.1:\(ports[1])}
                  - {peer: 127.0.0.1:\(ports[2]), client: 127.0.0.1:\(ports[3])}
                  - {peer: 127.0.0.1:\(ports[4]), client: 127.0.0.1:\(ports[5])}
            """.write(toFile: clusterPath, atomically: true, encoding: .utf8)
        let control = "\(folder)/r0.control"
        try "blocked: 2\n".write(toFile: control, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = CSMRBinary.url
        process.arguments = ["replica", "--cluster", clusterPath, "--id", "0", "--control", control]
        let output = Pipe()
        process.standardOutput = output
        let logPath = "\(folder)/r0.log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        try process.run()
        let pid = process.processIdentifier
        defer {
            if process.isRunning { kill(pid, SIGKILL) }
            process.waitUntilExit()
        }
        func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
        func waitFor(_ text: String) -> Bool {
            for _ in 0..<1_000 where process.isRunning {
                if log().contains(text) { return true }
                usleep(10_000)
            }
            return log().contains(text)
        }
        // Read at start.
        #expect(waitFor("control: blocked peers r2"), "\(log())")
        for bad in ["blocked: 0\n", "blocked: 1 x\n", "blocked: 7\n", "hello\n", "blocked: 1\nblocked: 2\n", String(repeating: "#", count: 5_000)] {
            try bad.write(toFile: control, atomically: true, encoding: .utf8)
            let ignored = log().components(separatedBy: "ignored the control file").count
            kill(pid, SIGUSR2)
            for _ in 0..<1_000 where log().components(separatedBy: "ignored the control file").count == ignored && process.isRunning { usleep(10_000) }
            #expect(log().components(separatedBy: "ignored the control file").count == ignored + 1, "\(bad.prefix(30)): \(log())")
            #expect(process.isRunning)
        }
        try "blocked:\n".write(toFile: control, atomically: true, encoding: .utf8)
        kill(pid, SIGUSR2)
        #expect(waitFor("control: no peer blocked"), "\(log())")
        kill(pid, SIGTERM)
        for _ in 0..<1_000 where process.isRunning { usleep(10_000) }
        #expect(!process.isRunning)
        #expect(log().contains("stopped"))
    }

    @Test func aReplicaRefusesABadClusterFileWithItsLocation() throws {
        let folder = Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let path = "\(folder)/cluster.yaml"
        try """
            cluster: demo
            groups:
              - name: main
                replicas:
                  - {peer: 127.0.0.1:7101, client: 127.0.0.1:nope}
                  - {peer: 127.0.0.1:7102, client: 127.0.0.1:7202}
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let result = try CSMRBinary.run(["replica", "--cluster", path, "--id", "0"])
        #expect(result.status == 2)
        #expect(result.error.contains("\(path):5:40: groups[0].replicas[0].client: expected host:port"), "\(result.error)")
        try """
            cluster: demo
            groups:
              - name: main
                replicas:
                  - {peer: 127.0.0.1:7101, client: 127.0.0.1:7201}
                  - {peer: 127.0.0.1:7102, client: 127.0.0.1:7202}
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let even = try CSMRBinary.run(["replica", "--cluster", path, "--id", "0"])
        #expect(even.status == 2)
        #expect(even.error.contains("\(path):5:7: groups[0].replicas: expected an odd number of replicas"), "\(even.error)")
    }
}
