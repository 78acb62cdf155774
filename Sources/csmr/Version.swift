import ArgumentParser

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the csmr version, the Swift version and the allocator in use."
    )

    func run() throws {
        print("csmr \(BuildInfo.packageVersion) (commit \(GitCommit.built))")
        print("swift \(BuildInfo.swiftVersion)")
        var allocator = "allocator \(BuildInfo.allocatorDescription)"
        if let allocated = BuildInfo.jemallocAllocatedBytes { allocator += " (\(allocated) bytes allocated now)" }
        print(allocator)
    }
}
