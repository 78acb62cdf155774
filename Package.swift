// swift-tools-version: 6.1
// csmr: composed, parallel state machine replication, and a harness to measure it.
//
// Dependencies point toward pure code (see docs/architecture.md): `Primitives`, `Services`, `Paxos`,
// `Linearizability` and `Composition`'s router and proxy core touch no clock, disk, socket or random
// source. `Storage` touches files; `Transport`, `Runtime`'s drivers, `Harness`, `Workload` (its
// output files) and the `csmr` executable touch clocks, sockets and disk.
import PackageDescription

let package = Package(
    name: "csmr",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "csmr", targets: ["csmr"]),
        .library(name: "CSMRCore", targets: ["Primitives", "Services", "Wire"]),
        .library(name: "CSMRConsensus", targets: ["Primitives", "Services", "Paxos"]),
        .library(name: "CSMRClient", targets: ["CSMRClient"]),
        // For out-of-tree targets (Integrations/etcd): the load generator, the workload files and
        // the linearizability checker, driving a `LoadTarget` of their own.
        .library(name: "CSMRHarness", targets: ["Harness", "Workload", "Linearizability", "Composition", "Services", "Primitives"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        .target(name: "Primitives"),
        .target(name: "Services", dependencies: ["Primitives"]),
        .target(name: "Wire", dependencies: ["Primitives", "Services", "Paxos"]),
        .target(name: "Linearizability", dependencies: ["Primitives", "Services"]),
        .target(name: "Paxos", dependencies: ["Primitives", "Services"]),
        .target(
            name: "Execution",
            dependencies: ["Primitives", "Services", .product(name: "DequeModule", package: "swift-collections")]
        ),
        // The only module that touches files: the write-ahead log, checkpoints and recovery.
        .target(name: "Storage", dependencies: ["Primitives", "Services", "Paxos", "Wire"]),
        .target(name: "Runtime", dependencies: ["Primitives", "Services", "Paxos", "Execution", "Wire"]),
        // Reading YAML specs with located errors, shared by workloads, compositions and cluster
        // files; apart from Workload so the composition (and the client library and proxy that
        // use it) do not pull in the harness's histograms.
        .target(name: "SpecFiles", dependencies: [.product(name: "Yams", package: "Yams")]),
        .target(name: "Composition", dependencies: ["Primitives", "Services", "Paxos", "SpecFiles", "Linearizability",
                                                    .product(name: "Yams", package: "Yams")]),
        .target(
            name: "Workload",
            dependencies: [
                "Primitives", "Services", "Linearizability", "SpecFiles",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        .target(
            name: "Harness",
            dependencies: [
                "Primitives", "Services", "Paxos", "Runtime", "Workload", "Linearizability", "Execution", "Composition", "Storage",
                "Transport", "Wire", "CProcessShims",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        // The only module that opens sockets: frames between processes over TCP on SwiftNIO.
        .target(
            name: "Transport",
            dependencies: [
                "Primitives", "Wire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // The Swift client library: sessions, retries and routing by ProxyCore over FrameClient.
        .target(
            name: "CSMRClient",
            dependencies: [
                "Primitives", "Services", "Wire", "Transport", "Composition",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .target(
            name: "Simulation",
            dependencies: [
                "Primitives", "Services", "Paxos", "Runtime", "Storage", "Linearizability", "Execution", "Composition",
                .product(name: "HeapModule", package: "swift-collections"),
            ]
        ),
        // jemalloc's control interface (`mallctl`). Only the executable links it, so the
        // allocator it reports is the one that really serves the process.
        .systemLibrary(name: "CJemalloc"),
        // A process started by a harness exits with it (Linux's parent-death signal); background
        // threads at the lowest priority.
        .target(name: "CProcessShims"),
        .executableTarget(
            name: "csmr",
            dependencies: [
                "Primitives", "Services", "Wire", "Paxos", "Runtime", "Simulation", "Workload", "Harness", "Linearizability", "Execution",
                "Composition", "CJemalloc", "CProcessShims",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            linkerSettings: [.linkedLibrary("jemalloc", .when(platforms: [.linux]))],
            plugins: ["GitCommitPlugin"]
        ),
        .plugin(name: "GitCommitPlugin", capability: .buildTool()),
        .testTarget(name: "PrimitivesTests", dependencies: ["Primitives"]),
        .testTarget(name: "ServicesTests", dependencies: ["Services"]),
        .testTarget(name: "WireTests", dependencies: ["Wire", "Services", "Paxos"]),
        .testTarget(name: "StorageTests", dependencies: ["Storage", "Wire", "Paxos", "Services", "Primitives"]),
        .testTarget(name: "LinearizabilityTests", dependencies: ["Linearizability", "Services"]),
        .testTarget(name: "CLITests", dependencies: ["csmr", "CSMRClient", "Harness", "Linearizability", "Workload", "Services", "Primitives"]),
        .testTarget(name: "PaxosScenarioTests", dependencies: ["Paxos", "Runtime", "Services", "Primitives", "Simulation"], exclude: ["testdata"]),
        .testTarget(name: "PaxosTests", dependencies: ["Paxos", "Primitives", "Services"]),
        .testTarget(name: "SimulationTests", dependencies: ["Simulation", "Paxos", "Primitives", "Execution", "Composition", "Workload"]),
        .testTarget(name: "CompositionTests", dependencies: ["Composition", "Workload", "Services", "Primitives"]),
        .testTarget(name: "ExecutionTests", dependencies: ["Execution", "Services", "Primitives", "Runtime", "Paxos"]),
        .testTarget(name: "WorkloadTests", dependencies: ["Workload", "Primitives", "Services", "Linearizability"]),
        .testTarget(
            name: "TransportTests",
            dependencies: [
                "Transport", "Wire", "Primitives",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "CSMRClientTests",
            dependencies: [
                "CSMRClient", "Transport", "Wire", "Services", "Primitives", "Composition",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "HarnessTests", dependencies: ["Harness", "Composition", "Workload", "Linearizability", "Services", "Runtime", "Paxos", "Storage", "Primitives", "Transport", "Wire",
                                                         .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                                                         .product(name: "NIOConcurrencyHelpers", package: "swift-nio")]),

    ],
    swiftLanguageModes: [.v6]
)
