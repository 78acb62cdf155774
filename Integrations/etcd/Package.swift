// swift-tools-version: 6.1
// csmr's etcd target: the harness's load generator driving an etcd v3 cluster over gRPC.
//
// A package of its own so HTTP/2 and protobuf stay out of the core build: `csmr run`/`compare`
// build it on demand when a workload says `target: etcd` (see docs/architecture.md, "The etcd
// target"). gRPC is spoken by `UnaryGRPCConnection` on swift-nio-http2 directly: grpc-swift-2's
// client cost etcd about 45 % of its throughput on this 2-core machine (BENCHMARKS.md).
import PackageDescription

let package = Package(
    name: "csmr-etcd",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "csmr-etcd", targets: ["csmr-etcd"]),
    ],
    dependencies: [
        .package(name: "csmr", path: "../.."),
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // Messages generated once from etcd's protos (trimmed to the KV service, in Protos/).
        .target(
            name: "EtcdAPI",
            dependencies: [
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .target(
            name: "EtcdTarget",
            dependencies: [
                "EtcdAPI",
                .product(name: "CSMRHarness", package: "csmr"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "csmr-etcd",
            dependencies: [
                "EtcdTarget",
                .product(name: "CSMRHarness", package: "csmr"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "EtcdTargetTests", dependencies: [
            "EtcdTarget",
            .product(name: "CSMRHarness", package: "csmr"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOHTTP2", package: "swift-nio-http2"),
            .product(name: "NIOHPACK", package: "swift-nio-http2"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
