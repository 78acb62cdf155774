import Foundation
import Testing
@testable import Workload

/// The `network` group setting (locations and link delays), client locations, and the
/// accounting per client location.
@Suite struct NetworkTests {
    @Test func aTriangleOfLinksGivesEachPairItsDelayInBothDirections() throws {
        let spec = try WorkloadSpec.parse("""
            target: processes
            group:
              network:
                locations: [a, b, c]
                links:
                  - {between: [a, b], delay_ms: 10}
                  - {between: [c, b], delay_ms: 20}
                  - {between: [a, c], delay_ms: 30.5}
            """, file: "w.yaml")
        let network = spec.group.network
        #expect(network.locations == ["a", "b", "c"])
        #expect(network.delayMicroseconds(from: "a", to: "b") == 10_000 && network.delayMicroseconds(from: "b", to: "a") == 10_000)
        #expect(network.delayMicroseconds(fromReplica: 1, toReplica: 2) == 20_000)
        #expect(network.delayMicroseconds(fromReplica: 2, toReplica: 0) == 30_500)
        #expect(network.delayMicroseconds(fromReplica: 1, toReplica: 1) == 0)
    }

    @Test func oneDelayCoversEveryPairNotListedAndReplicasAtOneLocationAreNotDelayed() throws {
        let spec = try WorkloadSpec.parse("""
            target: processes
            group:
              replicas: 5
              network: {locations: [x, x, y, z, z], delay_ms: 15, links: [{between: [y, z], delay_ms: 2}]}
            """, file: "w.yaml")
        let network = spec.group.network
        #expect(network.distinctLocations == ["x", "y", "z"])
        #expect(network.delayMicroseconds(fromReplica: 0, toReplica: 1) == 0)
        #expect(network.delayMicroseconds(fromReplica: 0, toReplica: 2) == 15_000)
        #expect(network.delayMicroseconds(fromReplica: 2, toReplica: 4) == 2_000)
    }

    @Test func withoutLocationsEveryReplicaIsItsOwnPlace() throws {
        let spec = try WorkloadSpec.parse("target: processes\ngroup: {network: {delay_ms: 7}}\n", file: "w.yaml")
        #expect(spec.group.network.locations == ["r0", "r1", "r2"])
        #expect(spec.group.network.delayMicroseconds(fromReplica: 0, toReplica: 2) == 7_000)
    }

    /// Each malformed network, and the exact message: file, line, column, field, expectation.
    @Test(arguments: [
        ("target: processes\ngroup: {network: {locations: [a, b], delay_ms: 5}}",
         "w.yaml:2:30: group.network.locations: expected one location per replica (3), got 2"),
        ("target: processes\ngroup: {network: {locations: [a, b, c], delay_ms: -5}}",
         "w.yaml:2:51: group.network.delay_ms: expected 0.0...10000.0 ms, got -5.0"),
        ("target: processes\ngroup: {network: {locations: [a, b, c], links: [{between: [a, d], delay_ms: 5}]}}",
         "w.yaml:2:63: group.network.links[0].between[1]: unknown location d (the replicas are at a, b, c)"),
        ("target: processes\ngroup: {network: {locations: [a, b, c], links: [{between: [a, b], delay_ms: 5}]}}",
         "w.yaml:2:48: group.network.links: no delay between a–c, b–c: add a link for each pair, or a default delay_ms"),
        ("target: processes\ngroup: {network: {locations: [a, b, c], delay_ms: 1, links: [{between: [a, a], delay_ms: 5}]}}",
         "w.yaml:2:72: group.network.links[0].between: a location is 0 ms from itself; name two different ones"),
        ("target: processes\ngroup: {network: {locations: [a, b, c], delay_ms: 1, links: [{between: [a, b], delay_ms: 5}, {between: [b, a], delay_ms: 6}]}}",
         "w.yaml:2:104: group.network.links[1].between: the link between b and a is given twice"),
        ("target: processes\ngroup: {network: {locations: [a, b, c], delay_ms: 1, links: [{between: [a, b]}]}}",
         "w.yaml:2:62: group.network.links[0].delay_ms: is required: the one-way delay in ms"),
        ("target: processes\ngroup: {network: {delay_ms: 1, jitter_ms: 2}}",
         "w.yaml:2:32: group.network.jitter_ms: unknown field (expected one of: locations, delay_ms, links)"),
        ("group: {network: {delay_ms: 1}}",
         "w.yaml:1:18: group.network: link delays are emulated by the TCP transports: they need target: processes"),
        ("target: processes\ngroup: {network: {locations: [a, b, c], delay_ms: 1}}\nclients: {locations: [a, d]}",
         "w.yaml:3:26: clients.locations[1]: unknown location d (the replicas are at a, b, c)"),
        ("target: processes\nclients: {locations: [a]}",
         "w.yaml:2:23: clients.locations[0]: client locations need group.network (where the replicas are)"),
    ])
    func aMalformedNetworkGetsALocatedMessage(text: String, message: String) {
        let found = errors(text)
        #expect(found.contains(message), "got: \(found)")
    }

    @Test func aClusterFileWritesBackEverySettingItRead() throws {
        // The harness hands replica processes their settings through the cluster file it writes:
        // a setting missing there silently runs with its default (batch holding did, once).
        let text = """
            cluster: settings
            groups:
              - name: main
                protocol: single-leader
                batch_commands_max: 17
                batch_bytes_max: 4096
                batch_delay_us: 30
                pipeline_depth_max: 5
                batch_hold_inflight_min: 3
                batch_hold_us: 250
                skip_ahead_percent: 40
                scheduler: graph
                workers: 2
                cost_us: 1.5
                checkpoint_interval_slots: 77
                replicas:
                  - {peer: 7101, client: 7201}
            """
        let cluster = try ClusterSpec.parse(text, file: "c.yaml")
        #expect(cluster.groups[0].settings.skipAheadPercent == 40)
        #expect(cluster.groups[0].settings.batchHoldMicroseconds == 250)
        #expect(try ClusterSpec.parse(cluster.yaml, file: "again.yaml").groups[0].settings == cluster.groups[0].settings)
    }

    @Test func aClusterFileCarriesTheNetworkAndWritesItBack() throws {
        let text = """
            cluster: wan
            groups:
              - name: main
                protocol: single-leader
                network: {locations: [east, west, west], delay_ms: 40}
                replicas:
                  - {peer: 7101, client: 7201}
                  - {peer: 7102, client: 7202}
                  - {peer: 7103, client: 7203}
            """
        let cluster = try ClusterSpec.parse(text, file: "c.yaml")
        let network = cluster.groups[0].settings.network
        #expect(network.delayMicroseconds(fromReplica: 0, toReplica: 2) == 40_000)
        #expect(network.delayMicroseconds(fromReplica: 1, toReplica: 2) == 0)
        #expect(try ClusterSpec.parse(cluster.yaml, file: "again.yaml").groups[0].settings.network == network)

        #expect { try ClusterSpec.parse(text.replacingOccurrences(of: "[east, west, west]", with: "[east, west]"), file: "c.yaml") } throws: { error in
            "\(error)".contains("c.yaml:5:26: groups[0].network.locations: expected one location per replica (3), got 2")
        }
    }

    @Test func theResolvedWorkloadKeepsTheNetworkAndTheClientLocations() throws {
        let spec = try WorkloadSpec.parse("""
            target: processes
            group: {network: {locations: [a, b, c], delay_ms: 20, links: [{between: [a, b], delay_ms: 10}]}}
            clients: {locations: [c, a]}
            """, file: "w.yaml")
        let again = try WorkloadSpec.parse(spec.yaml, file: "resolved.yaml")
        #expect(again.group.network == spec.group.network)
        #expect(again.clients.locations == ["c", "a"])
    }

    @Test func clientsAreDealtRoundRobinAndStartAtTheReplicaOfTheirLocation() throws {
        let network = NetworkSpec(locations: ["a", "b", "c"], delaysMicroseconds: [("a", "b", 10_000), ("b", "c", 20_000), ("a", "c", 30_000)])
        let placement = try #require(ClientPlacement.of(clients: [], networks: [network]))
        #expect(placement.locations == ["a", "b", "c"])
        #expect((0..<6).map(placement.location(ofClient:)) == [0, 1, 2, 0, 1, 2])
        #expect((0..<3).map { placement.homeReplica(location: $0, group: 0) } == [0, 1, 2])
        #expect(placement.delayMicroseconds(location: 2, group: 0, replica: 0) == 30_000)
        #expect(placement.delayMicroseconds(location: 1, group: 0, replica: 1) == 0)
        #expect(ClientPlacement.of(clients: [], networks: [NetworkSpec()]) == nil)

        // A location without a replica of the group goes to the nearest one.
        let twoSites = NetworkSpec(locations: ["a", "a", "c"], delaysMicroseconds: [("a", "c", 5_000)])
        #expect(twoSites.homeReplica(for: "c") == 2 && twoSites.homeReplica(for: "a") == 0)
    }

    @Test func eachLocationKeepsItsOwnHistogramsAndTheTotalsMergeThemAll() throws {
        var recorder = LatencyRecorder(locations: ["near", "far"])
        for _ in 0..<90 { recorder.record(.kvPut, latencyMicroseconds: 1_000, second: 0, measured: true, completedInWindow: true, location: 0) }
        for _ in 0..<10 { recorder.record(.kvPut, latencyMicroseconds: 60_000, second: 0, measured: true, completedInWindow: true, location: 1) }
        recorder.recordIntended(.kvPut, second: 0, measured: true, location: 1)
        recorder.recordError(.kvPut, location: 1)
        recorder.recordUnfinished(.kvPut, location: 0)
        let summary = RunSummary(spec: WorkloadSpec(), recorder: recorder, measuredSeconds: 1)

        let all = try #require(summary.rows.first { $0.operation == "kv.put" })
        #expect(all.count == 100 && all.errors == 1 && all.unfinished == 1)
        #expect(all.p50 < 1_100)
        let locations = summary.locationRows
        #expect(locations.map(\.location) == ["near", "far"])
        let near = try #require(locations[0].rows.first { $0.operation == "kv.put" })
        let far = try #require(locations[1].rows.first { $0.operation == "kv.put" })
        #expect(near.count == 90 && near.unfinished == 1 && near.errors == 0 && near.p50 < 1_100)
        #expect(far.count == 10 && far.errors == 1 && far.p50 >= 59_000 && far.offeredOperationsPerSecond == 1)

        let csv = try #require(summary.locationsCSV).split(separator: "\n")
        #expect(csv[0] == "location," + SummaryRow.header)
        #expect(csv.contains { $0.hasPrefix("far,kv.put,10,1,0,") })
        #expect(summary.table.contains("kv.put @far"))
        #expect(RunSummary(spec: WorkloadSpec(), recorder: LatencyRecorder(), measuredSeconds: 1).locationsCSV == nil)
    }

    @Test func compareCSVAddsTheRowsOfEachClientLocation() throws {
        var recorder = LatencyRecorder(locations: ["a", "b"])
        recorder.record(.kvPut, latencyMicroseconds: 500, second: 0, measured: true, completedInWindow: true, location: 1)
        let summary = RunSummary(spec: WorkloadSpec(), recorder: recorder, measuredSeconds: 1)
        let variant = CompareSpec.Variant(values: ["single-leader"], workload: WorkloadSpec(), label: "x")
        let lines = CompareSpec.csv(fields: ["group.protocol"], rows: [(variant, summary)]).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines[0].hasSuffix(",client_location,repetition"))
        let rows = lines.dropFirst().filter { !$0.isEmpty }
        #expect(rows.filter { $0.hasSuffix(",,1") }.count == 2, "all clients: kv.put and all, without a location")
        #expect(rows.filter { $0.hasSuffix(",b,1") && $0.hasPrefix("1,single-leader,kv.put,1,") }.count == 1)
        #expect(rows.filter { $0.hasSuffix(",a,1") }.count == 1, "location a: only its all row")
    }
}
