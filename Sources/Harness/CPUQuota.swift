import Foundation

/// Caps a process's CPU time with a cgroup of its own (cfs bandwidth: `cores` × the period per
/// period), so replica processes on one host each get the CPU budget a machine of their own
/// would give them, instead of sharing every core.
///
/// Why: on one host a single-leader group's leader can borrow its followers' idle cores, which a
/// deployment with a machine per replica never allows; the leader bottleneck that multi-leader
/// Paxos removes is then invisible (BENCHMARKS.md, "Over TCP with a core budget per replica"). It
/// is an emulation, like the transport's link delays: same code, a resource limit the host lacks.
///
/// cgroup v1 (`/sys/fs/cgroup/cpu`, `cpu.cfs_quota_us`) or v2 (`/sys/fs/cgroup` with the cpu
/// controller, `cpu.max`); needs root. Every group made here is removed by `release` once its
/// process has exited.
public struct CPUQuota: Sendable {
    public enum Hierarchy: Sendable, Equatable {
        case v1(root: String)
        case v2(root: String)
    }

    public let hierarchy: Hierarchy
    public let cores: Double
    /// Bandwidth period: the group may run `quotaMicroseconds` per period and is frozen for the
    /// rest of it once that is used up. The kernel's default (100 ms) would freeze a replica capped
    /// at a third of a core for 67 ms at a time, which no machine a third as fast ever does, and
    /// which costs multi-leader more than single-leader: every leader's slots wait for every other
    /// leader, so one frozen replica stops the whole group, where a frozen single-leader follower
    /// stops nothing. 5 ms bounds such a pause to a few milliseconds; the period grows only for
    /// budgets under 0.2 core, so the quota never falls below the kernel's 1 ms minimum.
    public var periodMicroseconds: Int { max(5_000, Int((1_000 / cores).rounded(.up))) }

    public struct Unavailable: Error, CustomStringConvertible {
        public let reason: String
        public var description: String {
            "group.cpu_cores_per_replica needs a cgroup cpu controller this process can write (cgroup v1 at /sys/fs/cgroup/cpu, or v2 with cpu enabled, as root): \(reason)"
        }
    }

    /// Finds a writable cpu hierarchy, or says why there is none.
    public init(cores: Double, v1Root: String = "/sys/fs/cgroup/cpu", v2Root: String = "/sys/fs/cgroup") throws {
        precondition(cores > 0, "a CPU quota needs a positive number of cores, got \(cores)")
        self.cores = cores
        let files = FileManager.default
        if files.fileExists(atPath: "\(v1Root)/cpu.cfs_quota_us") {
            guard files.isWritableFile(atPath: v1Root) else { throw Unavailable(reason: "\(v1Root) is not writable") }
            hierarchy = .v1(root: v1Root)
        } else if let controllers = try? String(contentsOfFile: "\(v2Root)/cgroup.controllers", encoding: .utf8),
                  controllers.split(separator: " ").contains(where: { $0.trimmingCharacters(in: .whitespacesAndNewlines) == "cpu" }) {
            guard files.isWritableFile(atPath: "\(v2Root)/cgroup.subtree_control") else { throw Unavailable(reason: "\(v2Root) is not writable") }
            // Children get the cpu controller only when the parent hands it down.
            try? "+cpu".write(toFile: "\(v2Root)/cgroup.subtree_control", atomically: false, encoding: .utf8)
            hierarchy = .v2(root: v2Root)
        } else {
            throw Unavailable(reason: "neither \(v1Root)/cpu.cfs_quota_us nor a v2 cpu controller at \(v2Root) was found")
        }
    }

    /// The group's folder for `name` (unique per harness process and replica).
    public func folder(for name: String) -> String {
        let leaf = "csmr-\(getpid())-" + String(name.map { $0.isLetter || $0.isNumber ? $0 : "-" })
        switch hierarchy {
        case let .v1(root), let .v2(root): return "\(root)/\(leaf)"
        }
    }

    /// The quota in microseconds per period (at least the kernel's 1 ms: the period is chosen so).
    public var quotaMicroseconds: Int { Int((cores * Double(periodMicroseconds)).rounded()) }

    /// Moves `pid` (all its threads) into the group for `name`, made with the quota if new.
    public func apply(pid: Int32, name: String) throws {
        let folder = folder(for: name)
        do {
            if !FileManager.default.fileExists(atPath: folder) {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
            }
            switch hierarchy {
            case .v1:
                try write("\(periodMicroseconds)", to: "\(folder)/cpu.cfs_period_us")
                try write("\(quotaMicroseconds)", to: "\(folder)/cpu.cfs_quota_us")
            case .v2:
                try write("\(quotaMicroseconds) \(periodMicroseconds)", to: "\(folder)/cpu.max")
            }
            try write("\(pid)", to: "\(folder)/cgroup.procs")
        } catch let error as Unavailable {
            throw error
        } catch {
            throw Unavailable(reason: "\(folder): \(error)")
        }
    }

    /// Removes the group for `name`; it must hold no process (its replica has exited).
    public func release(name: String) {
        _ = rmdir(folder(for: name))
    }

    /// The CPU time the group's processes were denied so far, in microseconds (how much the cap
    /// bit); nil when the kernel does not say.
    public func throttledMicroseconds(name: String) -> UInt64? {
        let folder = folder(for: name)
        guard let text = try? String(contentsOfFile: "\(folder)/cpu.stat", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard parts.count == 2, let value = UInt64(parts[1]) else { continue }
            if parts[0] == "throttled_usec" { return value }
            if parts[0] == "throttled_time" { return value / 1_000 }  // v1: nanoseconds
        }
        return nil
    }

    private func write(_ text: String, to path: String) throws {
        guard let handle = FileHandle(forWritingAtPath: path) else { throw Unavailable(reason: "cannot open \(path) for writing") }
        defer { try? handle.close() }
        do {
            try handle.write(contentsOf: Data(text.utf8))
        } catch {
            throw Unavailable(reason: "writing \(text) to \(path): \(error)")
        }
    }
}
