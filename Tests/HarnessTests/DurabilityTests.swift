import Foundation
import Harness
import Linearizability
import Testing
import Workload

/// Runs with replicas that write files, on the real clock.
@Suite(.serialized) struct DurabilityTests {
    private func workload(_ text: String) throws -> WorkloadSpec { try WorkloadSpec.parse(text, file: "durable.yaml") }

    private func temporaryFolder() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("csmr-durability-\(UUID().uuidString)").path
    }

    @Test func aSyncedRunCountsItsSyncsAndKeepsItsHistoryLinearizable() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let spec = try workload("""
            name: synced
            duration_s: 1.5
            warmup_s: 0.3
            group: {replicas: 3, durability: fsync, checkpoint_interval_slots: 50}
            clients: {count: 8}
            keys: {count: 50}
            mix: {kv.get: 0.4, kv.put: 0.4, log.append: 0.2}
            """)
        let outcome = try WorkloadRunner.run(spec, recordHistory: true, dataDirectory: folder)
        let storage = try #require(outcome.summary.storage)
        #expect(storage.syncs > 0)
        #expect(storage.recordsSynced >= storage.syncs)
        #expect(outcome.summary.rows.last!.errors == 0)
        #expect(outcome.summary.rows.last!.count > 50)
        #expect(LinearizabilityChecker().check(outcome.history) == .linearizable)
        // Every replica checkpointed, and compaction left few log segments behind.
        for replica in 0..<3 {
            let files = try FileManager.default.contentsOfDirectory(atPath: "\(folder)/group/r\(replica)")
            #expect(files.contains { $0.hasPrefix("checkpoint-") }, "r\(replica) has \(files)")
            #expect(files.filter { $0.hasPrefix("wal-") }.count <= 2, "r\(replica) has \(files)")
        }
        // Written values are unique: a lost or stale write would show.
        let puts = outcome.history.compactMap { operation -> String? in
            if case let .kvPut(_, value) = operation.command { return value } else { return nil }
        }
        #expect(Set(puts).count == puts.count)
    }

    @Test func aRestartedReplicaBehindItsPeersCompactionRejoinsByStateTransfer() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let spec = try workload("""
            name: rejoin
            duration_s: 5
            warmup_s: 0.3
            group: {replicas: 3, durability: write, checkpoint_interval_slots: 8}
            clients: {count: 8, retry_timeout_ms: 200}
            keys: {count: 100}
            mix: {kv.get: 0.3, kv.put: 0.5, log.append: 0.2}
            events:
              - {at_s: 0.6, crash: 2}
              - {at_s: 3, restart: 2}
            """)
        let outcome = try WorkloadRunner.run(spec, recordHistory: true, dataDirectory: folder)
        let events = outcome.summary.recorder.events.values.flatMap { $0 }
        #expect(events.contains { $0.hasPrefix("r2 installed") && $0.contains("bytes") }, "events: \(events)")
        #expect(outcome.summary.rows.last!.errors == 0)
        #expect(LinearizabilityChecker().check(outcome.history) == .linearizable)
    }

    @Test func aDataFolderThatHoldsFilesIsRefused() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: "\(folder)/leftover", contents: Data())
        let spec = try workload("name: x\ngroup: {durability: write}\n")
        #expect { try WorkloadRunner.run(spec, dataDirectory: folder) } throws: { error in
            "\(error)".contains("group.data_dir") && "\(error)".contains("already holds files")
        }
    }
}
