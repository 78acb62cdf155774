import ArgumentParser
import Foundation
import Harness
import Workload

/// `target: etcd` workloads run in `csmr-etcd` (Integrations/etcd), a package of its own so HTTP/2
/// and protobuf stay out of csmr's build. This finds or builds that binary and hands it one workload; its
/// results come back as files in the run's folder, like every other run's.
enum EtcdDelegate {
    /// The csmr-etcd binary: `$CSMR_ETCD` if set, else built (release) from Integrations/etcd,
    /// which `swift build` leaves as is when nothing changed.
    static func binary() throws -> String {
        if let given = ProcessInfo.processInfo.environment["CSMR_ETCD"], !given.isEmpty {
            guard FileManager.default.isExecutableFile(atPath: given) else {
                FileHandle.standardError.write(Data("csmr: CSMR_ETCD=\(given) is not an executable\n".utf8))
                throw ExitCode(2)
            }
            return given
        }
        guard let package = packageFolder() else {
            FileHandle.standardError.write(Data("""
                csmr: target: etcd needs the csmr-etcd package (Integrations/etcd in csmr's source tree), and it was not found \
                above this binary or the current folder; run from the source tree, or set CSMR_ETCD to a built csmr-etcd.\n
                """.utf8))
            throw ExitCode(2)
        }
        let configuration = ProcessInfo.processInfo.environment["CSMR_ETCD_CONFIGURATION"] ?? "release"
        FileHandle.standardError.write(Data("""
            csmr: building csmr-etcd (\(package), \(configuration)); the first build takes minutes, \
            later ones seconds. Its output follows.\n
            """.utf8))
        let build = Process()
        build.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        build.arguments = ["swift", "build", "-c", configuration, "--package-path", package, "--product", "csmr-etcd"]
        build.standardOutput = FileHandle.standardError
        try build.run()
        build.waitUntilExit()
        guard build.terminationStatus == 0 else {
            FileHandle.standardError.write(Data("csmr: building csmr-etcd failed (status \(build.terminationStatus)); nothing ran.\n".utf8))
            throw ExitCode.failure
        }
        return "\(package)/.build/\(configuration)/csmr-etcd"
    }

    /// Integrations/etcd above this binary (`.build/<config>/csmr` in the source tree) or the
    /// current folder.
    static func packageFolder() -> String? {
        var starts = [FileManager.default.currentDirectoryPath]
        if let binary = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            starts.insert(URL(fileURLWithPath: binary).deletingLastPathComponent().path, at: 0)
        }
        for start in starts {
            var folder = URL(fileURLWithPath: start).standardizedFileURL
            while folder.path != "/" {
                let candidate = folder.appendingPathComponent("Integrations/etcd")
                if FileManager.default.fileExists(atPath: candidate.appendingPathComponent("Package.swift").path) { return candidate.path }
                folder.deleteLastPathComponent()
            }
        }
        return nil
    }

    /// Writes the resolved workload to `folder/workload.yaml` (so a comparison's variant runs
    /// exactly as resolved here) and runs `binary subcommand` on it; fails unless it succeeds.
    private static func runChild(_ spec: WorkloadSpec, binary: String, folder: URL, subcommand: String, flags: [String]) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let workload = folder.appendingPathComponent("workload.yaml")
        try spec.yaml.write(to: workload, atomically: true, encoding: .utf8)
        let child = Process()
        child.executableURL = URL(fileURLWithPath: binary)
        child.arguments = [subcommand, workload.path, "--out", folder.path] + flags
        // Its table goes to stderr: csmr prints its own from what it hands back.
        child.standardOutput = FileHandle.standardError
        try child.run()
        child.waitUntilExit()
        guard child.terminationStatus == 0 else {
            FileHandle.standardError.write(Data("csmr: csmr-etcd failed (status \(child.terminationStatus)); see above.\n".utf8))
            throw ExitCode(child.terminationStatus == 2 ? 2 : 1)
        }
    }

    /// Sweeps `spec` (which has its `sweep:`) in `binary`, each step's time series in
    /// `folder/step-N`; returns the steps and the knee it wrote to `folder/sweep.csv`.
    static func sweep(_ spec: WorkloadSpec, binary: String, folder: URL, quiet: Bool) throws -> SweepRunner.Outcome {
        try runChild(spec, binary: binary, folder: folder, subcommand: "sweep", flags: quiet ? ["--quiet"] : [])
        let written = try String(contentsOf: folder.appendingPathComponent("sweep.csv"), encoding: .utf8)
        guard let (steps, knee) = SweepStep.parse(csv: written), !steps.isEmpty else {
            FileHandle.standardError.write(Data("csmr: csmr-etcd wrote no sweep steps to \(folder.path)/sweep.csv\n".utf8))
            throw ExitCode.failure
        }
        let timeseries = steps.indices.map { index in
            (try? String(contentsOf: folder.appendingPathComponent("step-\(index + 1)/timeseries.csv"), encoding: .utf8)) ?? ""
        }
        return SweepRunner.Outcome(steps: steps, knee: knee, timeseries: timeseries, p99BoundMicroseconds: spec.sweep?.p99BoundMicroseconds ?? 0)
    }

    /// Runs `spec` in `binary`, writing its results to `folder`; returns the rows of the
    /// summary it wrote. The resolved workload goes to `folder/workload.yaml` first, so a
    /// comparison's variant runs exactly as resolved here.
    static func run(_ spec: WorkloadSpec, binary: String, folder: URL, history: Bool, quiet: Bool) throws -> [SummaryRow] {
        try runChild(spec, binary: binary, folder: folder, subcommand: "run", flags: (history ? ["--history"] : []) + (quiet ? ["--quiet"] : []))
        let summary = try String(contentsOf: folder.appendingPathComponent("summary.csv"), encoding: .utf8)
        let rows = summary.split(separator: "\n").dropFirst().compactMap(SummaryRow.init(csv:))
        guard !rows.isEmpty else {
            FileHandle.standardError.write(Data("csmr: csmr-etcd wrote no summary rows to \(folder.path)/summary.csv\n".utf8))
            throw ExitCode.failure
        }
        return rows
    }
}
