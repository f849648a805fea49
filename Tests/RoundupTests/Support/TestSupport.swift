import Foundation
import Synchronization
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

    /// Waits (up to 30 s) until this process has fewer than 1,000 open descriptors, before a
    /// child process is started. Foundation's `Process.run()` on Linux (Swift 6.3.1) reads each
    /// /proc/self/fd entry's whole 256-byte name; once about 1,300 entries fill glibc's 32 KB
    /// directory buffer, the last read can run past its end into an unmapped page and crash the
    /// test process (swift-corelibs-foundation #5472). The suite briefly holds that many (sockets
    /// and SQLite files of tests running at once) in its first seconds.
    static func waitForFewDescriptors() async {
        for _ in 0..<600 {
            let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
            if open < 1_000 { return }
            try? await Task.sleep(for: .milliseconds(50))
        }
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

/// Runs the `roundup` binary with arguments, in a working directory, with a clean environment;
/// see `runTool`.
func runRoundup(
    _ arguments: [String], in directory: URL, environment: [String: String] = [:], stdin: String? = nil, timeout: Double = 120
) async throws -> ProcessResult {
    var env = ["PATH": "/usr/bin:/bin", "HOME": directory.path, "NO_COLOR": "1"]
    env.merge(environment) { _, new in new }
    return try await runTool(TestSupport.roundupBinary, arguments, in: directory, environment: env, stdin: stdin, timeout: timeout)
}

/// Runs a program and waits for it without holding a thread of the cooperative pool (a blocking
/// wait there stalls every other test's servers and clients: a termination handler resumes the
/// caller), and kills it after `timeout` seconds, so a `serve` that starts when it should have
/// refused fails the test instead of hanging it. `environment` nil keeps this process's.
func runTool(
    _ executable: URL, _ arguments: [String], in directory: URL, environment: [String: String]? = nil, stdin: String? = nil,
    timeout: Double = 60
) async throws -> ProcessResult {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    process.currentDirectoryURL = directory
    if let environment { process.environment = environment }
    // Output goes to files outside `directory`: pipes would need a reader thread each, and
    // tests look at what a command leaves in its directory.
    let outputs = try TestSupport.temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: outputs) }
    let outURL = outputs.appendingPathComponent("stdout"), errURL = outputs.appendingPathComponent("stderr")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    var handles = [try FileHandle(forWritingTo: outURL), try FileHandle(forWritingTo: errURL)]
    process.standardOutput = handles[0]
    process.standardError = handles[1]
    if let stdin {
        let inURL = outputs.appendingPathComponent("stdin")
        try Data(stdin.utf8).write(to: inURL)
        handles.append(try FileHandle(forReadingFrom: inURL))
        process.standardInput = handles[2]
    } else {
        process.standardInput = FileHandle.nullDevice
    }
    // The child gets its own copies when it starts; ours are closed when it is done. Left open
    // (Process keeps them), they leaked two or three descriptors a run, 1,750 by the end of the
    // suite, past what `waitForFewDescriptors` guards against.
    defer { for h in handles { try? h.close() } }
    await TestSupport.waitForFewDescriptors()
    let finished = Mutex(false)
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
        process.terminationHandler = { _ in
            finished.withLock { $0 = true }
            continuation.resume()
        }
        do {
            try process.run()
        } catch {
            process.terminationHandler = nil
            continuation.resume(throwing: error)
            return
        }
        let pid = process.processIdentifier
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout) {
            // Checked under the lock, so an exited process's pid is never signalled.
            finished.withLock { done in if !done { kill(pid, SIGKILL) } }
        }
    }
    return ProcessResult(
        status: process.terminationStatus,
        stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
        stderr: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "")
}

/// Parses a JSON document printed by a command.
func parseJSON(_ text: String) throws -> [String: Any] {
    let object = try JSONSerialization.jsonObject(with: Data(text.utf8))
    return try #require(object as? [String: Any])
}
