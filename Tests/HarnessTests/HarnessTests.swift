import Foundation
import Harness
import Linearizability
import Testing
import Workload

private func workload(_ text: String) throws -> WorkloadSpec { try WorkloadSpec.parse(text, file: "test.yaml") }

@Suite(.serialized) struct HarnessTests {
    @Test func aShortRunWritesEveryOutputWithTheDocumentedColumns() throws {
        let spec = try workload("""
            name: tiny
            duration_s: 1
            warmup_s: 0.3
            group: {replicas: 3, protocol: multi-leader, batch_commands_max: 8}
            clients: {count: 4}
            keys: {count: 10}
            mix: {kv.get: 0.3, kv.put: 0.3, lock.acquire: 0.2, log.append: 0.1, log.retrieve: 0.05, log.truncate: 0.05}
            lock: {hold_us: 100}
            """)
        let outcome = try WorkloadRunner.run(spec, recordHistory: true)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("csmr-harness-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        try outcome.summary.write(to: folder)
        let summary = try String(contentsOf: folder.appendingPathComponent("summary.csv"), encoding: .utf8).split(separator: "\n")
        #expect(summary[0] == "op,count,errors,unfinished,offered_ops_s,achieved_ops_s,mean_us,p50_us,p90_us,p99_us,p999_us,p9999_us,max_us")
        #expect(summary.last!.hasPrefix("all,"))
        #expect(summary.dropFirst().allSatisfy { $0.split(separator: ",").count == 13 })
        let ops = Set(summary.dropFirst().map { String($0.split(separator: ",")[0]) })
        #expect(ops.isSuperset(of: ["kv.get", "kv.put", "lock.acquire", "log.append", "all"]))
        let timeseries = try String(contentsOf: folder.appendingPathComponent("timeseries.csv"), encoding: .utf8).split(separator: "\n")
        #expect(timeseries[0] == "second,op,count,offered,p50_us,p99_us,max_us,events")
        let hgrm = try String(contentsOf: folder.appendingPathComponent("all.hgrm"), encoding: .utf8)
        #expect(hgrm.contains("Percentile") && hgrm.contains("#[Mean"))
        #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent("kv.put.hgrm").path))
        #expect(outcome.summary.rows.last!.count > 100)
        #expect(outcome.summary.rows.last!.errors == 0)
        // The recorded history is linearizable, also after a round trip through history.jsonl.
        let text = HistoryFile.encode(outcome.history)
        let decoded = try HistoryFile.decode(text, file: "history.jsonl")
        #expect(decoded.count == outcome.history.count)
        #expect(LinearizabilityChecker().check(decoded) == .linearizable)
    }

    static let compositions = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../workloads/compositions").standardized.path

    @Test func anExtensionRunLogsEveryPutOnceAndItsHistoryIsLinearizable() throws {
        var spec = try workload("""
            name: ext
            duration_s: 1
            warmup_s: 0.2
            clients: {count: 6}
            keys: {count: 20}
            mix: {kv.get: 0.3, kv.put: 0.4, log.retrieve: 0.3}
            log: {retrieve_length: 3}
            """)
        spec.composition = "\(Self.compositions)/extension-2.yaml"
        let outcome = try WorkloadRunner.run(spec, recordHistory: true)
        let steps = try #require(outcome.extensionSteps)
        #expect(steps.produced > 50)
        #expect(steps.applied == steps.produced)
        #expect(LinearizabilityChecker().check(outcome.history) == .linearizable)
    }

    @Test func aPartitionedRunServesEveryOperation() throws {
        var spec = try workload("""
            name: part
            duration_s: 0.8
            warmup_s: 0.2
            clients: {count: 6}
            keys: {count: 50}
            mix: {kv.get: 0.4, kv.put: 0.3, lock.acquire: 0.1, log.append: 0.2}
            lock: {hold_us: 100}
            """)
        spec.composition = "\(Self.compositions)/partition-3.yaml"
        let outcome = try WorkloadRunner.run(spec, recordHistory: true)
        #expect(outcome.summary.rows.last!.count > 100 && outcome.summary.rows.last!.errors == 0)
        #expect(LinearizabilityChecker().check(outcome.history) == .linearizable)
    }

    @Test func anEventNamingAGroupTheCompositionLacksIsRefused() throws {
        var spec = try workload("name: x\nevents:\n  - {at_s: 1, crash: 0}\n")
        spec.composition = "\(Self.compositions)/extension-2.yaml"
        spec.events[0].group = "nowhere"
        #expect { try WorkloadRunner.topology(for: spec) } throws: { "\($0)".contains("events.group: no group named nowhere") }
    }

    @Test func aTamperedHistoryIsNotLinearizable() throws {
        let history = """
            {"client":1,"op":"kv.put","key":"a","value":"1","invoke_ns":0,"complete_ns":10,"result":{"stored":true}}
            {"client":2,"op":"kv.get","key":"a","invoke_ns":20,"complete_ns":30,"result":{"value":null}}
            """
        let operations = try HistoryFile.decode(history, file: "h.jsonl")
        guard case .violation = LinearizabilityChecker().check(operations) else {
            Issue.record("a read of nil after a completed put must be a violation")
            return
        }
    }

    @Test func aMalformedHistoryLineIsNamed() {
        #expect { try HistoryFile.decode("{\"client\":1,\"op\":\"kv.put\",\"invoke_ns\":0}\n", file: "h.jsonl") } throws: {
            "\($0)" == "h.jsonl:1: kv.put needs field \"key\""
        }
    }

    /// A replica that stops for 400 ms must show in the open-loop tail: requests that arrive
    /// during the stall are late by up to the whole stall, and their latency counts from their
    /// intended send time. A closed loop hides most of it (only the clients in flight wait).
    @Test func aStalledReplicaShowsInTheOpenLoopTail() throws {
        func run(_ loop: String) throws -> SummaryRow {
            let spec = try workload("""
                name: stall
                duration_s: 3
                warmup_s: 0.5
                group: {replicas: 3, protocol: single-leader, batch_commands_max: 16}
                clients: {count: \(loop == "open" ? "200, loop: open, rate_ops_s: 1000" : "4, loop: closed")}
                mix: {kv.put: 1.0}
                events:
                  - {at_s: 1.5, pause: 0, for_ms: 400}
                """)
            return try WorkloadRunner.run(spec).summary.rows.last!
        }
        let open = try run("open")
        let closed = try run("closed")
        // About 400 of the 3000 open-loop requests arrive during the stall: far more than 1%.
        #expect(open.p99 >= 150_000, "open-loop p99 \(open.p99) µs")
        #expect(open.max >= 300_000, "open-loop max \(open.max) µs")
        // The closed loop sees the stall only in its few in-flight requests.
        #expect(closed.max >= 300_000, "closed-loop max \(closed.max) µs")
        #expect(closed.p99 < open.p99 / 4, "closed p99 \(closed.p99) µs, open p99 \(open.p99) µs")
    }
}
