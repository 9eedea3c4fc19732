// swift-tools-version:6.0
// The libFuzzer target of the worker's input path, kept out of the main package so that its
// builds, flags and products are unaffected. Build and run it with `make fuzz` (docs/reliability.md), which
// passes the sanitizer flags on the command line so that every module it links, the root
// package's included, is instrumented for coverage and checked by AddressSanitizer.
import PackageDescription

let package = Package(
    name: "squares-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "squares-worker", path: "../.."),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .executableTarget(
            name: "squares-fuzz",
            dependencies: [
                .product(name: "SquaresProtocol", package: "squares-worker"),
                .product(name: "SquaresCore", package: "squares-worker"),
                .product(name: "SquaresServer", package: "squares-worker"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // libFuzzer supplies `main`: the sources are a library with one C entry point.
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),
    ],
    swiftLanguageModes: [.v6]
)
