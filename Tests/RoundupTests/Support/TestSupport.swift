import Foundation
import Testing

@testable import Roundup

/// Paths and helpers shared by the suites.
enum TestSupport {
    /// The package's top-level folder, found from this file's path.
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// A file under `Fixtures/`.
    static func fixture(_ relative: String) -> URL { packageRoot.appendingPathComponent("Fixtures/\(relative)") }

    /// The text of a file under `Fixtures/`.
    static func fixtureText(_ relative: String) throws -> String {
        try String(contentsOf: fixture(relative), encoding: .utf8)
    }

    /// A fresh temporary directory for one test, removed by the caller's `defer`.
    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("roundup-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// The built `roundup` binary, next to the test bundle in the build products folder.
    static var roundupBinary: URL {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        // On macOS the runner sits inside PackageTests.xctest/Contents/MacOS.
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("roundup").path), dir.path != "/" {
            dir.deleteLastPathComponent()
        }
        return dir.appendingPathComponent("roundup")
    }

    /// A loader that sees only the given environment.
    static func loader(_ env: [String: String] = [:]) -> ConfigLoader { ConfigLoader(environment: env) }
}

/// What a finished subprocess printed and returned.
struct ProcessResult {
    let status: Int32
    let stdout: String
    let stderr: String
}

/// Runs the `roundup` binary with arguments, in a working directory, with a clean environment.
func runRoundup(
    _ arguments: [String], in directory: URL, environment: [String: String] = [:], stdin: String? = nil
) throws -> ProcessResult {
    let process = Process()
    process.executableURL = TestSupport.roundupBinary
    process.arguments = arguments
    process.currentDirectoryURL = directory
    var env = ["PATH": "/usr/bin:/bin", "HOME": directory.path, "NO_COLOR": "1"]
    env.merge(environment) { _, new in new }
    process.environment = env
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    if let stdin {
        let input = Pipe()
        process.standardInput = input
        input.fileHandleForWriting.write(Data(stdin.utf8))
        try input.fileHandleForWriting.close()
    } else {
        process.standardInput = FileHandle.nullDevice
    }
    try process.run()
    // Read both pipes before waiting, so a large output cannot block the child.
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return ProcessResult(
        status: process.terminationStatus,
        stdout: String(decoding: outData, as: UTF8.self),
        stderr: String(decoding: errData, as: UTF8.self))
}

/// Parses a JSON document printed by a command.
func parseJSON(_ text: String) throws -> [String: Any] {
    let object = try JSONSerialization.jsonObject(with: Data(text.utf8))
    return try #require(object as? [String: Any])
}
