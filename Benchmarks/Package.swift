// swift-tools-version: 6.1
// Benchmarks of csmr with package-benchmark, kept in their own package so that neither the main
// build nor CI depends on package-benchmark. Run from this directory:
//     swift package --disable-sandbox benchmark
import PackageDescription

let package = Package(
    name: "csmr-benchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "csmr", path: ".."),
        // Its default traits need a package the local mirror lacks; MallocInterposer alone gives
        // the malloc counts on Swift 6.3.
        .package(url: "https://github.com/ordo-one/package-benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // The consensus core alone: three in-memory `PaxosReplica`s exchanging messages through
        // a FIFO queue, no clock, disk or socket.
        .executableTarget(
            name: "ConsensusCore",
            dependencies: [
                .product(name: "CSMRConsensus", package: "csmr"),
                .product(name: "Benchmark", package: "package-benchmark"),
            ],
            path: "Benchmarks/ConsensusCore",
            // The allocator csmr runs on, so allocation counts and times are the real ones.
            linkerSettings: [.linkedLibrary("jemalloc", .when(platforms: [.linux]))],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
