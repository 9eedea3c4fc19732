// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "squares-worker",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "squares-worker", targets: ["squares-worker"]),
        .library(name: "SquaresCore", targets: ["SquaresCore"]),
        .library(name: "SquaresProtocol", targets: ["SquaresProtocol"]),
        .library(name: "SquaresServer", targets: ["SquaresServer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-extras/swift-extras-base64", from: "1.2.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
    ],
    targets: [
        // Pure compute: element maps from UInt32 to an exact UInt64 (squaring), and the parallel
        // map that runs one over a task group.
        .target(name: "SquaresCore"),
        // What is said on the wire: framing state machine, JSON reader/writer, the integer-array
        // fast codec, JSON-RPC messages and error codes. No I/O.
        .target(
            name: "SquaresProtocol",
            dependencies: ["SquaresCore", .product(name: "ExtrasBase64", package: "swift-extras-base64")]
        ),
        // The Linux calls the server needs that Swift's Glibc module does not export (the CPU
        // affinity count, a pipe's buffer size, a memfd's seals), and memfd_create for the tests'
        // shared-memory segments.
        .target(name: "CSquaresSystem"),
        // What is done: dispatch, concurrency, cancellation, lifecycle, and the stdio transport.
        .target(
            name: "SquaresServer",
            dependencies: [
                "SquaresCore", "SquaresProtocol", "CSquaresSystem",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .executableTarget(
            name: "squares-worker",
            dependencies: [
                "SquaresServer", "CSquaresSystem",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // Release benchmark of the core and codec against a Foundation Codable baseline.
        .executableTarget(name: "squares-bench", dependencies: ["SquaresCore", "SquaresProtocol"]),
        .testTarget(name: "SquaresCoreTests", dependencies: ["SquaresCore"]),
        .testTarget(name: "SquaresProtocolTests", dependencies: ["SquaresProtocol", "SquaresCore"]),
        .testTarget(
            name: "SquaresServerTests",
            dependencies: ["SquaresServer", "SquaresProtocol", "CSquaresSystem", .product(name: "SystemPackage", package: "swift-system")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
