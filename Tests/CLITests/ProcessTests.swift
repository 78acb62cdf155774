import Foundation
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
