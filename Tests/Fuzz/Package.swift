// swift-tools-version:6.2
import PackageDescription

// A coverage-guided fuzzer (libFuzzer) for Roundup's decoders, for long local runs. It is not a
// target of the root package; README.md here says how to build and run it. Build it in debug
// (dependencies are then built with testing enabled, which `@testable import Roundup` needs):
//   swift build -c debug -Xswiftc -sanitize=fuzzer,address
let package = Package(
    name: "roundup-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "roundup", path: "../..")],
    targets: [
        // Declares libFuzzer's `LLVMFuzzerRunDriver` for Swift, and the LeakSanitizer suppressions.
        .target(name: "CFuzzerSupport"),
        .executableTarget(
            name: "RoundupFuzz",
            dependencies: ["CFuzzerSupport", .product(name: "Roundup", package: "roundup")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
