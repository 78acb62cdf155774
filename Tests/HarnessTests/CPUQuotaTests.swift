import Foundation
@testable import Harness
import Testing

/// The cgroup files a quota writes, on a made-up hierarchy in a temporary folder (the real one
/// needs root; a run with `group.cpu_cores_per_replica` exercises it).
@Suite struct CPUQuotaTests {
    func hierarchy(_ files: [String: String]) throws -> String {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("csmr-cgroup-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        for (name, text) in files { try text.write(toFile: "\(root)/\(name)", atomically: true, encoding: .utf8) }
        return root
    }

    /// A group folder as the kernel would make it: its control files exist once it exists.
    func makeGroupFiles(_ folder: String, _ names: [String]) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        for name in names { _ = FileManager.default.createFile(atPath: "\(folder)/\(name)", contents: nil) }
    }

    @Test func v1GetsPeriodQuotaAndTheProcessAndReportsThrottling() throws {
        let root = try hierarchy(["cpu.cfs_quota_us": "-1"])
        defer { try? FileManager.default.removeItem(atPath: root) }
        let quota = try CPUQuota(cores: 0.5, v1Root: root, v2Root: "/nonexistent")
        #expect(quota.hierarchy == .v1(root: root))
        let folder = quota.folder(for: "g/r1")
        #expect(folder.hasPrefix("\(root)/csmr-") && folder.hasSuffix("-g-r1"))
        try makeGroupFiles(folder, ["cpu.cfs_period_us", "cpu.cfs_quota_us", "cgroup.procs"])
        try quota.apply(pid: 4242, name: "g/r1")
        #expect(try String(contentsOfFile: "\(folder)/cpu.cfs_period_us", encoding: .utf8) == "5000")
        #expect(try String(contentsOfFile: "\(folder)/cpu.cfs_quota_us", encoding: .utf8) == "2500")
        #expect(try String(contentsOfFile: "\(folder)/cgroup.procs", encoding: .utf8) == "4242")
        try "nr_periods 10\nnr_throttled 4\nthrottled_time 2500000000\n".write(toFile: "\(folder)/cpu.stat", atomically: true, encoding: .utf8)
        #expect(quota.throttledMicroseconds(name: "g/r1") == 2_500_000)
    }

    @Test func v2WritesCPUMax() throws {
        let root = try hierarchy(["cgroup.controllers": "cpuset cpu io memory pids\n", "cgroup.subtree_control": ""])
        defer { try? FileManager.default.removeItem(atPath: root) }
        let quota = try CPUQuota(cores: 1.25, v1Root: "/nonexistent", v2Root: root)
        #expect(quota.hierarchy == .v2(root: root))
        #expect(try String(contentsOfFile: "\(root)/cgroup.subtree_control", encoding: .utf8) == "+cpu")
        let folder = quota.folder(for: "r0")
        try makeGroupFiles(folder, ["cpu.max", "cgroup.procs"])
        try quota.apply(pid: 7, name: "r0")
        #expect(try String(contentsOfFile: "\(folder)/cpu.max", encoding: .utf8) == "6250 5000")
        try "usage_usec 9\nthrottled_usec 1234\n".write(toFile: "\(folder)/cpu.stat", atomically: true, encoding: .utf8)
        #expect(quota.throttledMicroseconds(name: "r0") == 1_234)
    }

    @Test func withoutACPUControllerTheErrorSaysWhatIsNeeded() throws {
        let root = try hierarchy(["cgroup.controllers": "memory pids\n"])
        defer { try? FileManager.default.removeItem(atPath: root) }
        let error = try #require(throws: CPUQuota.Unavailable.self) { try CPUQuota(cores: 0.5, v1Root: "/nonexistent", v2Root: root) }
        #expect(error.description.contains("group.cpu_cores_per_replica"))
        #expect(error.description.contains("cgroup"))
    }

    /// The smallest budget a workload may ask for (0.05 core) still gets the kernel's minimum
    /// quota of 1 ms, with a longer period, rather than a quota rounded up to a larger budget.
    @Test func aSmallBudgetLengthensThePeriodInsteadOfRoundingTheQuotaUp() throws {
        let root = try hierarchy(["cpu.cfs_quota_us": "-1"])
        defer { try? FileManager.default.removeItem(atPath: root) }
        for (cores, period, quota) in [(0.05, 20_000, 1_000), (0.1, 10_000, 1_000), (0.33, 5_000, 1_650), (2.0, 5_000, 10_000)] {
            let budget = try CPUQuota(cores: cores, v1Root: root, v2Root: "/nonexistent")
            #expect(budget.periodMicroseconds == period && budget.quotaMicroseconds == quota, "\(cores) cores")
            #expect(Double(budget.quotaMicroseconds) / Double(budget.periodMicroseconds) == cores)
        }
    }
}

/// Local clusters take their ports from the kernel one at a time; a port offered twice (the kernel
/// may offer one again as soon as the probe closes) gave a replica the same port for peers and
/// clients, and the cluster did not start.
@Suite struct FreePortTests {
    @Test func portsHandedOutLatelyAreNeverHandedOutAgain() throws {
        // 600 draws from ~28,000 ephemeral ports repeat one with near certainty if nothing
        // prevents it.
        let ports = try (0..<600).map { _ in try ProcessCluster.freePort() }
        #expect(Set(ports).count == ports.count)
    }
}
