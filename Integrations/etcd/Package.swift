// swift-tools-version: 6.1
// csmr's etcd target: the harness's load generator driving an etcd v3 cluster over gRPC.
//
// A package of its own so gRPC (and the TLS and certificate packages its transport brings) stays
// out of the core build: `csmr run`/`compare` build it on demand when a workload says
// `target: etcd` (see docs/architecture.md, "The etcd target").
import PackageDescription

let package = Package(
    name: "csmr-etcd",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "csmr-etcd", targets: ["csmr-etcd"]),
    ],
    dependencies: [
        .package(name: "csmr", path: "../.."),
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // Messages and the KV client generated from etcd's protos (trimmed; see Protos/README.md).
        .target(
            name: "EtcdAPI",
            dependencies: [
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .target(
            name: "EtcdTarget",
            dependencies: [
                "EtcdAPI",
                .product(name: "CSMRHarness", package: "csmr"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
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
        ]),
    ],
    swiftLanguageModes: [.v6]
)
