import Foundation
import Testing

/// Runs the built `csmr` executable, as a user would.
enum CSMRBinary {
    /// The test bundle sits in the build products folder, beside the executable.
    static var url: URL {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var folder = bundle.deletingLastPathComponent()
        while folder.path != "/" {
            let candidate = folder.appendingPathComponent("csmr")
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate.path, isDirectory: &isDirectory), !isDirectory.boolValue {
                return candidate
            }
            folder.deleteLastPathComponent()
        }
        return URL(fileURLWithPath: ".build/debug/csmr")
    }

    static func run(_ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
        let process = Process()
        process.executableURL = url
        process.arguments = arguments
        let output = Pipe(), error = Pipe()
        process.standardOutput = output
        process.standardError = error
        try process.run()
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = error.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: outputData, as: UTF8.self), String(decoding: errorData, as: UTF8.self))
    }
}

@Suite struct CLITests {
    @Test func versionNamesJemallocAndItsVersion() throws {
        let result = try CSMRBinary.run(["version"])
        #expect(result.status == 0)
        #expect(result.output.contains("csmr 0."))
        #expect(result.output.contains("swift 6."))
        // jemalloc reports its own version, e.g. "allocator jemalloc 5.3.0-0-g54eaed1d...".
        #expect(result.output.range(of: #"allocator jemalloc \d+\.\d+\.\d+"#, options: .regularExpression) != nil,
                "csmr version printed: \(result.output)")
    }

    @Test func demoRunsAndTheReplicasAgree() throws {
        let result = try CSMRBinary.run(["demo"])
        #expect(result.status == 0, "stderr: \(result.error)")
        #expect(result.output.contains("replicas agree"))
    }

    @Test func helpListsOnlyWorkingSubcommands() throws {
        let result = try CSMRBinary.run(["--help"])
        #expect(result.status == 0)
        for subcommand in ["version", "demo"] { #expect(result.output.contains(subcommand)) }
    }

    @Test func aBadFlagIsAClearErrorWithANonZeroExit() throws {
        let result = try CSMRBinary.run(["demo", "--replicas", "0"])
        #expect(result.status != 0)
        #expect(result.error.contains("--replicas must be at least 1"))
    }
}
