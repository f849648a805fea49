// swift-tools-version:6.2
import PackageDescription

// A coverage-guided fuzzer (libFuzzer) for Roundup's decoders, for long local runs. It is not a
// target of the root package and not part of CI; README.md here says how to build and run it.
let package = Package(
    name: "roundup-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "roundup", path: "../..")],
    targets: [
        .executableTarget(
            name: "RoundupFuzz",
            dependencies: [.product(name: "Roundup", package: "roundup")]
        )
    ],
    swiftLanguageModes: [.v6]
)
