import Foundation
import Testing
@testable import Workload

/// The messages parsing `text` as a workload gives (none when it is valid).
func errors(_ text: String) -> [String] {
    do {
        _ = try WorkloadSpec.parse(text, file: "w.yaml")
        return []
    } catch {
        return error.errors.map(\.description)
    }
}

@Suite struct WorkloadSpecTests {
    @Test func everyShippedWorkloadFileLoads() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../workloads").standardized
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".yaml") }
        #expect(files.count >= 10)
        for file in files {
            let path = folder.appendingPathComponent(file).path
            if file.hasPrefix("compare-") {
                let spec = try CompareSpec.load(path: path)
                #expect(!spec.variants.isEmpty, "\(file)")
            } else {
                _ = try WorkloadSpec.load(path: path)
            }
        }
    }

    @Test func defaultsFillAnEmptyFile() throws {
        let spec = try WorkloadSpec.parse("name: x\n", file: "w.yaml")
        #expect(spec.group.replicas == 3 && spec.clients.count == 16 && spec.mix == [.kvGet: 0.5, .kvPut: 0.5])
    }

    @Test func theResolvedWorkloadReadsBackAsTheSameWorkload() throws {
        let text = """
            name: round
            seed: 9
            duration_s: 2.5
            group: {replicas: 5, protocol: single-leader, batch_commands_max: 7, scheduler: graph, workers: 2, cost_us: 12.5}
            clients: {count: 3, loop: open, rate_ops_s: 1500, arrivals: uniform}
            keys: {count: 50, distribution: hotspot, hotspot_fraction: 0.25, conflict_rate: 0.1}
            values: {size_bytes_min: 3, size_bytes_max: 9}
            mix: {kv.get: 0.25, lock.acquire: 0.25, log.append: 0.5}
            events:
              - {at_s: 1, partition: [[0, 1], [2, 3, 4]]}
              - {at_s: 2, heal: true}
              - {at_s: 2.5, pause: 1, for_ms: 30}
            """
        /// The workload without where it was written (file, event lines), which differs by design.
        func content(_ spec: WorkloadSpec) -> WorkloadSpec {
            var copy = spec
            copy.file = ""
            for index in copy.events.indices { copy.events[index].line = 0; copy.events[index].column = 0 }
            return copy
        }
        let spec = try WorkloadSpec.parse(text, file: "w.yaml")
        #expect(content(try WorkloadSpec.parse(spec.yaml, file: "resolved.yaml")) == content(spec))
    }

    /// Each malformed input, and the exact message it must give: file, line, column, field, and
    /// what was expected.
    @Test(arguments: [
        ("duration_s: -1", "w.yaml:1:13: duration_s: expected 0.1...86400.0 seconds, got -1.0"),
        ("duration_s: soon", "w.yaml:1:13: duration_s: expected a number (seconds) in 0.1...86400.0, got \"soon\""),
        ("seed: [1]", "w.yaml:1:7: seed: expected an integer in 0...9223372036854775807, got a list"),
        ("operations: 0", "w.yaml:1:13: operations: expected 1...1000000000, got 0"),
        ("colour: red", "w.yaml:1:1: colour: unknown field (expected one of: name, seed, duration_s, warmup_s, drain_s, operations, target, cluster, proxy, etcd, composition, group, clients, keys, values, mix, lock, log, events, sweep, breakdown)"),
        ("group: 3", "w.yaml:1:8: group: expected a mapping of fields, got \"3\""),
        ("group: {replicas: 4}", "w.yaml:1:19: group.replicas: expected an odd number (n = 2f + 1), got 4"),
        ("group: {replicas: 17}", "w.yaml:1:19: group.replicas: expected 1...15, got 17"),
        ("group: {protocol: raft}", "w.yaml:1:19: group.protocol: expected one of multi-leader, single-leader, unreplicated, got \"raft\""),
        ("group: {batch_commands_max: 0}", "w.yaml:1:29: group.batch_commands_max: expected 1...65536 requests, got 0"),
        ("group: {pipeline_depth_max: 9999}", "w.yaml:1:29: group.pipeline_depth_max: expected 1...4096 batches, got 9999"),
        ("group: {workers: 0}", "w.yaml:1:18: group.workers: expected 1...64 workers, got 0"),
        ("group: {scheduler: eager}", "w.yaml:1:20: group.scheduler: expected one of sequential, early, graph, got \"eager\""),
        ("group: {cost_us: -5}", "w.yaml:1:18: group.cost_us: expected 0.0...1000000.0 µs, got -5.0"),
        ("keys: {conflict_rate: 2}", "w.yaml:1:23: keys.conflict_rate: expected 0.0...1.0 share of kv and lock commands, got 2.0"),
        ("group: {replica: 3}", "w.yaml:1:9: group.replica: unknown field (expected one of: replicas, protocol, batch_commands_max, batch_bytes_max, batch_delay_us, pipeline_depth_max, batch_hold_inflight_min, batch_hold_us, skip_ahead_percent, scheduler, workers, cost_us, durability, checkpoint_interval_commands, checkpoint_interval_slots, data_dir, network, threads, cpu_cores_per_replica)"),
        ("group: {cpu_cores_per_replica: 0.5}", "w.yaml:1:32: group.cpu_cores_per_replica: caps the replica processes a run starts: it needs target: processes and no cluster: file"),
        ("target: processes\ngroup: {cpu_cores_per_replica: 0.01}", "w.yaml:2:32: group.cpu_cores_per_replica: expected 0 (uncapped) or at least 0.05 cores, got 0.01"),
        ("clients: {count: 0}", "w.yaml:1:18: clients.count: expected 1...100000, got 0"),
        ("clients: {loop: half}", "w.yaml:1:17: clients.loop: expected one of closed, open, got \"half\""),
        ("clients: {rate_ops_s: 10}", "w.yaml:1:23: clients.rate_ops_s: only applies to loop: open"),
        ("clients: {loop: open, think_time_us: 5}", "w.yaml:1:38: clients.think_time_us: only applies to loop: closed"),
        ("clients: {loop: open, arrivals: bursty}", "w.yaml:1:33: clients.arrivals: expected one of poisson, uniform, got \"bursty\""),
        ("keys: {distribution: pareto}", "w.yaml:1:22: keys.distribution: expected one of uniform, zipfian, hotspot, sequential, got \"pareto\""),
        ("keys: {zipf_theta: 0}", "w.yaml:1:20: keys.zipf_theta: expected 0.01...5.0, got 0.0"),
        ("values: {size_bytes_min: 9, size_bytes_max: 3}", "w.yaml:1:45: values.size_bytes_max: must be at least size_bytes_min (9), got 3"),
        ("mix: {kv.get: 0.5, kv.put: 0.6}", "w.yaml:1:6: mix: proportions must sum to 1, got 1.1"),
        ("mix: {kv.get: 1.0, kv.delete: 0}", "w.yaml:1:20: mix.kv.delete: unknown field (expected one of: kv.get, kv.put, lock.acquire, log.append, log.retrieve, log.truncate)"),
        ("mix: {kv.get: 2}", "w.yaml:1:15: mix.kv.get: expected 0.0...1.0 proportion, got 2.0"),
        ("log: {retrieve_length: 0}", "w.yaml:1:24: log.retrieve_length: expected 1...1024 entries, got 0"),
        ("lock: {hold_ms: 1}", "w.yaml:1:8: lock.hold_ms: unknown field (expected one of: hold_us)"),
        ("events: {at_s: 1}", "w.yaml:1:9: events: expected a list, got a mapping"),
        ("events: [{at_s: 1}]", "w.yaml:1:10: events[0]: expected exactly one of crash, restart, partition, heal, pause; got none"),
        ("events: [{crash: 1}]", "w.yaml:1:10: events[0].at_s: is required"),
        ("events: [{at_s: 1, crash: 3}]", "w.yaml:1:27: events[0].crash: expected 0...2 replica index, got 3"),
        ("events: [{at_s: 1, crash: 1, heal: true}]", "w.yaml:1:10: events[0]: expected exactly one of crash, restart, partition, heal, pause; got crash, heal"),
        ("events: [{at_s: 1, partition: [[0, 1]]}]", "w.yaml:1:10: events[0].partition: expected at least two sides, e.g. [[0], [1, 2]]"),
        ("events: [{at_s: 1, partition: [[0], [5]]}]", "w.yaml:1:37: events[0].partition[1]: expected a list of replica indices in 0...2"),
        ("events: [{at_s: 1, pause: 0}]", "w.yaml:1:10: events[0].for_ms: is required with pause"),
        ("group: {protocol: unreplicated}\nevents: [{at_s: 1, crash: 0}]", "w.yaml:2:9: events: crash, restart, partition and pause need a replicated group"),
        ("name: a\nname: b", "w.yaml:1:1: name: appears twice in the mapping that starts here"),
        ("name: [unclosed", "w.yaml:2:1: not valid YAML: did not find expected ',' or ']'"),
        ("- just\n- a list", "w.yaml:1:1: expected a mapping of fields at the top level"),
    ])
    func aMalformedFileGetsALocatedMessage(text: String, message: String) {
        let found = errors(text)
        #expect(found.contains(message), "got: \(found)")
    }

    @Test func everyProblemIsReportedAtOnce() {
        let found = errors("duration_s: 0\ngroup: {replicas: 2}\nclients: {count: -1}\n")
        #expect(found.count == 3)
    }
}

@Suite struct CompareSpecTests {
    func write(_ files: [String: String]) throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("csmr-compare-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for (name, text) in files { try text.write(to: folder.appendingPathComponent(name), atomically: true, encoding: .utf8) }
        return folder
    }

    @Test func theMatrixIsTheProductOfTheVariedFieldsPlusExtraVariants() throws {
        let folder = try write([
            "base.yaml": "name: base\nduration_s: 5\ngroup: {replicas: 3}\n",
            "spec.yaml": """
                workload: base.yaml
                set: {duration_s: 1}
                vary:
                  group.protocol: [multi-leader, single-leader]
                  group.batch_commands_max: [1, 64, 512]
                variants:
                  - {group.protocol: unreplicated, group.replicas: 1}
                """,
        ])
        let spec = try CompareSpec.load(path: folder.appendingPathComponent("spec.yaml").path)
        #expect(spec.fields == ["group.protocol", "group.batch_commands_max", "group.replicas"])
        #expect(spec.variants.count == 7)
        #expect(spec.variants.allSatisfy { $0.workload.durationSeconds == 1 })
        #expect(spec.variants[0].values == ["multi-leader", "1", ""])
        #expect(spec.variants[5].workload.group.replication == .singleLeader && spec.variants[5].workload.group.batchCommandsMax == 512)
        #expect(spec.variants[6].workload.group.replication == .unreplicated)
    }

    @Test func aBadVariantValueNamesTheSpecAndTheVariant() throws {
        let folder = try write([
            "base.yaml": "name: base\n",
            "spec.yaml": "workload: base.yaml\nvary:\n  group.replicas: [3, 4]\n",
        ])
        let path = folder.appendingPathComponent("spec.yaml").path
        #expect { try CompareSpec.load(path: path) } throws: { error in
            "\(error)".contains("(variant 2: group.replicas=4)") && "\(error)".contains("group.replicas: expected an odd number")
        }
    }

    @Test func compareCSVHasTheVariantFieldsThenTheSummaryColumns() throws {
        let folder = try write(["base.yaml": "name: base\n", "spec.yaml": "workload: base.yaml\nvary:\n  group.batch_commands_max: [1, 8]\n"])
        let spec = try CompareSpec.load(path: folder.appendingPathComponent("spec.yaml").path)
        let summary = RunSummary(spec: spec.variants[0].workload, recorder: LatencyRecorder(), measuredSeconds: 1)
        let csv = CompareSpec.csv(fields: spec.fields, rows: spec.variants.map { ($0, summary) })
        let lines = csv.split(separator: "\n")
        #expect(lines[0] == "variant,group.batch_commands_max," + SummaryRow.header + "," + StorageSummary.header + ",client_location,repetition")
        #expect(lines[1].hasPrefix("1,1,all,0,0,") && lines[1].hasSuffix(",1"))
        #expect(lines[2].hasPrefix("2,8,all,"))
    }

    @Test func repeatIsReadAndBounded() throws {
        let folder = try write([
            "base.yaml": "name: base\n",
            "spec.yaml": "workload: base.yaml\nvary:\n  group.batch_commands_max: [1, 8]\nrepeat: 5\nmedian_by: p50_us\n",
            "column.yaml": "workload: base.yaml\nvary:\n  group.batch_commands_max: [1, 8]\nmedian_by: p42_us\n",
            "plain.yaml": "workload: base.yaml\nvary:\n  group.batch_commands_max: [1, 8]\n",
            "zero.yaml": "workload: base.yaml\nvary:\n  group.batch_commands_max: [1, 8]\nrepeat: 0\n",
            "swept.yaml": """
                workload: base.yaml
                variants:
                  - {group.batch_commands_max: 8}
                  - {sweep: {rates_ops_s: [1000, 2000]}}
                repeat: 3
                """,
        ])
        let spec = try CompareSpec.load(path: folder.appendingPathComponent("spec.yaml").path)
        #expect(spec.repetitions == 5 && spec.medianBy == .p50)
        let plain = try CompareSpec.load(path: folder.appendingPathComponent("plain.yaml").path)
        #expect(plain.repetitions == 1 && plain.medianBy == .achievedOperationsPerSecond)
        #expect { try CompareSpec.load(path: folder.appendingPathComponent("column.yaml").path) } throws: { error in
            "\(error)".contains("column.yaml:4:12: median_by: expected one of achieved_ops_s, mean_us, p50_us") && "\(error)".contains("got \"p42_us\"")
        }
        #expect { try CompareSpec.load(path: folder.appendingPathComponent("zero.yaml").path) } throws: { error in
            "\(error)".contains("zero.yaml:4") && "\(error)".contains("repeat: expected 1...25 runs of each variant, got 0")
        }
        #expect { try CompareSpec.load(path: folder.appendingPathComponent("swept.yaml").path) } throws: { error in
            "\(error)".contains("swept.yaml:5") && "\(error)".contains("variant 2 is a sweep")
        }
    }

    /// A run that completes `opsPerSecond`, with a p50 of `p50` µs.
    func run(variant: Int, repetition: Int, opsPerSecond: Int, p50: Int = 1) -> CompareSpec.VariantRun {
        let row = SummaryRow(csv: "all,\(opsPerSecond),0,0,\(opsPerSecond).0,\(opsPerSecond).0,1.0,\(p50),2000,3000,4000,5000,6000")!
        return CompareSpec.VariantRun(variant: variant, repetition: repetition, values: ["v\(variant)"], rows: [row])
    }

    @Test func eachVariantIsReportedByItsMedianRun() throws {
        let runs = [
            run(variant: 1, repetition: 1, opsPerSecond: 300), run(variant: 2, repetition: 1, opsPerSecond: 50),
            run(variant: 1, repetition: 2, opsPerSecond: 100), run(variant: 2, repetition: 2, opsPerSecond: 70),
            run(variant: 1, repetition: 3, opsPerSecond: 200), run(variant: 2, repetition: 3, opsPerSecond: 60),
            run(variant: 2, repetition: 4, opsPerSecond: 80),
        ]
        let medians = CompareSpec.medianRuns(runs)
        #expect(medians.map(\.variant) == [1, 2])
        #expect(medians[0].repetition == 3 && medians[0].achievedOperationsPerSecond == 200)
        // Four runs (50, 70, 60, 80): the worse of the middle two, for throughput the lower.
        #expect(medians[1].repetition == 3 && medians[1].achievedOperationsPerSecond == 60)
        let lines = CompareSpec.csv(fields: ["f"], runs: medians).split(separator: "\n")
        #expect(lines.count == 3)
        #expect(lines[1].hasPrefix("1,v1,all,200,") && lines[1].hasSuffix(",3"))
        #expect(lines[2].hasPrefix("2,v2,all,60,") && lines[2].hasSuffix(",3"))
        // A single run is its own median.
        #expect(CompareSpec.medianRuns([run(variant: 4, repetition: 1, opsPerSecond: 9)]).map(\.repetition) == [1])
    }

    @Test func aLatencyColumnPicksTheMedianRunByLatency() throws {
        // At one offered rate every run achieves about the same; the p50 tells them apart.
        let runs = [
            run(variant: 1, repetition: 1, opsPerSecond: 25_001, p50: 140), run(variant: 1, repetition: 2, opsPerSecond: 25_003, p50: 90),
            run(variant: 1, repetition: 3, opsPerSecond: 24_999, p50: 101),
        ]
        #expect(CompareSpec.medianRuns(runs, by: .p50).map(\.repetition) == [3])
        #expect(CompareSpec.medianRuns(runs, by: .achievedOperationsPerSecond).map(\.repetition) == [1])
        // Of an even count, the worse middle run: for a latency, the higher.
        let four = runs + [run(variant: 1, repetition: 4, opsPerSecond: 25_000, p50: 120)]
        #expect(CompareSpec.medianRuns(four, by: .p50).map(\.repetition) == [4])
    }

    @Test func aMissingCompositionIsReportedAtTheWorkloadsOwnLine() throws {
        let folder = try write(["w.yaml": "name: w\ncomposition: compositions/nowhere.yaml\n"])
        let path = folder.appendingPathComponent("w.yaml").path
        #expect { try WorkloadSpec.load(path: path) } throws: { error in
            "\(error)".hasPrefix("\(path):2:") && "\(error)".contains("composition: cannot read") && "\(error)".contains("nowhere.yaml")
        }
    }

    @Test func anEtcdWorkloadReadsBackWithItsEndpoints() throws {
        let spec = try WorkloadSpec.parse("""
            target: etcd
            etcd: {endpoints: ["127.0.0.1:2379", "localhost:2380"], clients_per_connection: 8}
            """, file: "w.yaml")
        #expect(spec.target == .etcd && spec.etcd.endpoints == ["127.0.0.1:2379", "localhost:2380"] && spec.etcd.clientsPerConnection == 8)
        #expect(try WorkloadSpec.parse(spec.yaml, file: "resolved.yaml") == { var again = spec; again.file = "resolved.yaml"; return again }())
    }

    @Test func whatEtcdLacksIsRefusedWhenTheFileIsRead() {
        let found = errors("""
            name: x
            target: etcd
            mix:
              kv.put: 0.5
              log.append: 0.25
              lock.acquire: 0.25
            events:
              - {at_s: 1, crash: 0}
            """)
        #expect(found.contains { $0.hasPrefix("w.yaml:5:") && $0.contains("mix.log.append") && $0.contains("no log service") }, "\(found)")
        #expect(found.contains { $0.hasPrefix("w.yaml:6:") && $0.contains("mix.lock.acquire") }, "\(found)")
        #expect(found.contains { $0.contains("events") && $0.contains("etcd") }, "\(found)")
        #expect(errors("etcd: {endpoints: [\"127.0.0.1:2379\"]}\n").contains { $0.contains("only applies to target: etcd") })
        #expect(errors("target: etcd\netcd: {endpoints: [\"nowhere\"]}\n").contains { $0.contains("etcd.endpoints[0]") && $0.contains("host:port") })
    }

    @Test func aSummaryRowReadsBackFromItsCSV() throws {
        let line = "kv.put,120,1,2,60.0,59.5,812.3,700,900,1500,2000,2100,2200"
        let row = try #require(SummaryRow(csv: Substring(line)))
        #expect(row.csv == line)
        #expect(SummaryRow(csv: "kv.put,1,2") == nil)
        #expect(SummaryRow(csv: "kv.put,x,1,2,60.0,59.5,812.3,700,900,1500,2000,2100,2200") == nil)
    }
}
