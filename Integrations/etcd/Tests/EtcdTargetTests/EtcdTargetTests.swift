@testable import EtcdTarget
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Primitives
import Services
import Harness
import Linearizability
import Testing
import Workload

/// Against a real etcd: `bash scripts/setup --etcd` installs it, and scripts/test runs that
/// first, so under CI these always run; elsewhere without etcd they are skipped with the reason.
private let etcdReady = LocalEtcdCluster.isInstalled("etcd") || ProcessInfo.processInfo.environment["CI"] == "true"

@Suite(.serialized, .enabled(if: etcdReady, "etcd is not installed: bash scripts/setup --etcd"))
struct EtcdTargetTests {
    static func folder() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("csmr-etcd-test-\(UUID().uuidString)")
    }

    @Test func aLocalClusterServesAPutGetWorkloadWhoseHistoryIsLinearizable() throws {
        let folder = Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        // Both operations on few keys, so reads race writes on the same keys. A call that fails
        // is answered `outcomeUnknown` (counted as an error, kept pending in the history) and
        // never sent again, so no Put can apply twice; and none fails on a loopback cluster now
        // that the server's PINGs no longer close connections (UnaryGRPCConnection allows
        // them), hence `errors == 0`.
        let spec = try WorkloadSpec.parse("""
            name: etcd-smoke
            target: etcd
            etcd: {clients_per_connection: 2}
            duration_s: 3
            warmup_s: 0.5
            group: {replicas: 3}
            clients: {count: 6, loop: closed}
            keys: {count: 4}
            values: {size_bytes: 16}
            mix: {kv.get: 0.5, kv.put: 0.5}
            """, file: "etcd-smoke.yaml")
        let outcome = try EtcdRunner.run(spec, folder: folder, recordHistory: true)
        let all = try #require(outcome.summary.rows.last)
        #expect(all.count > 20, "a 3-member loopback etcd completes more than 20 operations in 2 s")
        #expect(all.errors == 0)
        #expect(outcome.summary.unfinished == 0)
        #expect(Set(outcome.summary.rows.map(\.operation)).isSuperset(of: ["kv.get", "kv.put"]))
        // The members kept their data inside the run's folder.
        for member in 0..<3 {
            #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent("etcd-data/m\(member)/member").path))
        }
        let results = LinearizabilityChecker().checkAll(outcome.history)
        #expect(!results.isEmpty)
        for (object, result) in results {
            #expect(result == .linearizable, "\(object): \(result)")
        }
        // Files land as csmr run's do, so csmr compare and scripts/plot read them alike.
        try outcome.summary.write(to: folder)
        for file in ["summary.csv", "timeseries.csv", "all.hgrm", "kv.get.hgrm", "kv.put.hgrm"] {
            #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent(file).path), "\(file)")
        }
    }

    /// etcd's server sends a PING after each burst of request bytes; swift-nio-http2 closes a
    /// connection that gets more than 200 in 30 s unless told to allow more. One connection, 600
    /// Puts in a row (a PING each): none fails, and more than 200 PINGs came.
    @Test func aConnectionOutlivesTheServersPings() async throws {
        let folder = Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let cluster = try LocalEtcdCluster(members: 1, binary: "etcd", folder: folder)
        try cluster.start()
        defer { cluster.stop() }
        let waiting = NIOLockedValueBox<CheckedContinuation<Reply, Never>?>(nil)
        let target = try EtcdTarget(endpoints: cluster.clientEndpoints, channelCount: 1,
                                    onReply: { _, reply in waiting.withLockedValue { $0.take() }?.resume(returning: reply.reply) },
                                    onEvent: { _ in })
        defer { target.close() }
        try await target.waitUntilServing(seconds: 30)
        let putsCount = 600
        var stored = 0
        for sequence in 1...UInt64(putsCount) {
            let reply = await withCheckedContinuation { continuation in
                waiting.withLockedValue { $0 = continuation }
                target.submit(Request(client: ClientID(1), sequence: sequence, command: .kvPut(key: "k", value: "v\(sequence)")), group: 0, replica: 0)
            }
            if reply == .stored { stored += 1 }
        }
        #expect(stored == putsCount)
        #expect(target.failedCalls == 0)
        let pings = try await target.serverPings()
        #expect(pings > 200, "\(pings) PINGs")
        try await target.stop().get()
    }

    /// An open-loop sweep against a real etcd: a rate it keeps up with is within the knee, one
    /// far beyond what a 3-member etcd on this machine does (about 5,000 ops/s) is not, and the
    /// steps' files land where `csmr sweep` reads them.
    @Test func aSweepFindsEtcdsKneeBetweenARateItServesAndOneItCannot() throws {
        let folder = Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let spec = try WorkloadSpec.parse("""
            name: etcd-sweep
            target: etcd
            group: {replicas: 3}
            clients: {count: 64, loop: open}
            keys: {count: 100}
            values: {size_bytes: 16}
            mix: {kv.get: 0.5, kv.put: 0.5}
            sweep: {rates_ops_s: [200, 200000], p99_bound_us: 200000, step_s: 2, steady_window_s: 2, steady_wait_max_s: 2}
            """, file: "etcd-sweep.yaml")
        let outcome = try EtcdRunner.sweep(spec, sweep: try #require(spec.sweep), folder: folder)
        #expect(outcome.steps.count == 2)
        #expect(outcome.knee == 0, "\(outcome.steps)")
        #expect(outcome.steps[1].achievedOperationsPerSecond < 0.5 * outcome.steps[1].offeredOperationsPerSecond)
        for step in 1...2 {
            #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent("step-\(step)/timeseries.csv").path))
        }
        let parsed = try #require(SweepStep.parse(csv: outcome.csv))
        #expect(parsed.knee == outcome.knee && parsed.steps.map(\.p99) == outcome.steps.map(\.p99)
            && parsed.steps.map(\.withinKnee) == outcome.steps.map(\.withinKnee))
    }

    /// Nothing listens at the endpoint: a call waits for a connection within its timeout and
    /// fails `deadlineExceeded`, and the target reports that etcd is not serving; no hang.
    @Test func anEndpointWithoutAServerFailsCallsByTheirTimeout() async throws {
        let target = try EtcdTarget(endpoints: ["127.0.0.1:1"], channelCount: 1, onReply: { _, _ in }, onEvent: { _ in })
        defer { target.close() }
        await #expect(throws: EtcdError.self) { try await target.waitUntilServing(seconds: 1.5) }
        try await target.stop().get()
        #expect(throws: EtcdError.self) { try EtcdTarget(endpoints: ["127.0.0.1"], channelCount: 1, onReply: { _, _ in }, onEvent: { _ in }) }
    }

    @Test func everyMemberIsStoppedByItsPID() throws {
        let folder = Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let cluster = try LocalEtcdCluster(members: 1, binary: "etcd", folder: folder)
        try cluster.start()
        let pids = cluster.pids
        #expect(pids.count == 1)
        #expect(pids.allSatisfy { kill($0, 0) == 0 })
        cluster.stop()
        // Reaped by stop, so the PID no longer names a process of ours.
        #expect(pids.allSatisfy { kill($0, 0) == -1 })
    }

    @Test func aMissingBinaryIsNamed() {
        #expect(throws: EtcdError.self) {
            try LocalEtcdCluster(members: 1, binary: "/nonexistent/etcd", folder: Self.folder())
        }
    }
}
