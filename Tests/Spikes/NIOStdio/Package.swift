// swift-tools-version:6.0
// The swift-nio spike of issue 23: the worker's stdio transport on NIOPipeBootstrap, kept out of
// the main package so that the product does not depend on swift-nio. It measures what a port
// would cost and gain (docs/design.md, The worker); build it with
// `swift build -c release --static-swift-stdlib --package-path Tests/Spikes/NIOStdio --scratch-path .build-nio`.
import PackageDescription

let package = Package(
    name: "squares-worker-nio",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "squares-worker", path: "../../.."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .executableTarget(
            name: "squares-worker-nio",
            dependencies: [
                .product(name: "SquaresServer", package: "squares-worker"),
                .product(name: "SquaresProtocol", package: "squares-worker"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
