import Foundation
import Workload

/// What `run.yaml` records besides the workload: enough to know later what produced a result.
enum RunMetadata {
    static func timestamp() -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: Date())
    }

    /// The commit this binary was built from (recorded at build time by `GitCommitPlugin`).
    static func gitCommit() -> String { GitCommit.built }

    static func cpuModel() -> String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown" }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            return line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown"
        }
        return "unknown"
    }

    static func yaml(for spec: WorkloadSpec, command: String) -> String {
        let info = ProcessInfo.processInfo
        var lines = ["# Written by csmr run. `workload:` is the resolved workload file: every field, defaults filled in."]
        lines.append("command: \(quoted(command))")
        lines.append("started_utc: \(quoted(timestamp()))")
        lines.append("git_commit: \(quoted(gitCommit()))")
        lines.append("csmr_version: \(quoted(BuildInfo.packageVersion))")
        lines.append("swift: \(quoted(BuildInfo.swiftVersion))")
        lines.append("allocator: \(quoted(BuildInfo.allocatorDescription))")
        lines.append("machine:")
        lines.append("  cores: \(info.activeProcessorCount)")
        lines.append("  memory_bytes: \(info.physicalMemory)")
        lines.append("  cpu: \(quoted(cpuModel()))")
        lines.append("  os: \(quoted(info.operatingSystemVersionString))")
        lines.append("  host: \(quoted(info.hostName))")
        lines.append("workload:")
        for line in spec.yaml.split(separator: "\n", omittingEmptySubsequences: false) where !line.isEmpty {
            lines.append("  " + line)
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func quoted(_ text: String) -> String { SpecFile.quoted(text) }
}
