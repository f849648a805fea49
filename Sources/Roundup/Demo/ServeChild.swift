import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A `roundup serve` child process of the cluster demo: its own program, so that the demo can
/// kill it as a machine failure would, with its output in a log file. Also runs the CLI's
/// commands as an operator would.
final class ServeChild: @unchecked Sendable {
    /// The demo's name for it: "A", "B".
    let name: String
    let process: Process
    let log: URL

    private init(name: String, process: Process, log: URL) {
        self.name = name
        self.process = process
        self.log = log
    }

    /// Starts `executable serve --config config` in `dir`. The child sees this process's
    /// environment without its `ROUNDUP_*` variables, plus `environment`.
    static func start(name: String, executable: URL, config: URL, dir: URL, environment: [String: String]) throws -> ServeChild {
        try start(name: name, executable: executable, arguments: ["serve", "--config", config.path, "--log-level", "info"], dir: dir,
                  environment: environment)
    }

    /// Runs another `roundup` command to its end (bounded) and returns its exit status and output.
    static func run(_ arguments: [String], executable: URL, dir: URL, environment: [String: String], timeout: Double = 60) async throws
        -> (status: Int32, output: String)
    {
        let child = try start(name: arguments.first ?? "roundup", executable: executable, arguments: arguments, dir: dir, environment: environment)
        guard await child.waitUntilExited(timeout: timeout) else {
            child.signal(SIGKILL)
            return (-1, child.output + "\n(killed after \(Int(timeout)) s)")
        }
        return (child.process.terminationStatus, child.output)
    }

    private static func start(name: String, executable: URL, arguments: [String], dir: URL, environment: [String: String]) throws -> ServeChild {
        let log = dir.appendingPathComponent("\(name)-\(UUID().uuidString.prefix(8)).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil, attributes: [.posixPermissions: 0o600])
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.currentDirectoryURL = dir
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("ROUNDUP_") }
        env.merge(environment) { _, new in new }
        process.environment = env
        let handle = try FileHandle(forWritingTo: log)
        defer { try? handle.close() }
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        ServeChild.stopChildrenOnInterrupt()
        try process.run()
        let child = ServeChild(name: name, process: process, log: log)
        _ = ServeChild.running.withLock { $0.insert(child.pid) }
        return child
    }

    /// The pids of the children started and not yet seen to exit.
    private static let running = Mutex<Set<Int32>>([])
    private static let interruptHandlers = Mutex<[any DispatchSourceSignal]>([])

    /// On SIGINT or SIGTERM (Ctrl-C during the demo), SIGKILLs every child still running before
    /// this process exits, so that no `serve` outlives the demo. Installed once.
    private static func stopChildrenOnInterrupt() {
        interruptHandlers.withLock { handlers in
            guard handlers.isEmpty else { return }
            for sig in [SIGINT, SIGTERM] {
                Glibc.signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                source.setEventHandler {
                    for pid in running.withLock({ $0 }) { kill(pid, SIGKILL) }
                    exit(128 + sig)
                }
                source.resume()
                handlers.append(source)
            }
        }
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }
    var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    /// Waits (bounded) for the line saying it listens, and returns the port it names.
    func waitUntilListening(timeout: Double) async throws -> Int {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let port = Self.listeningPort(in: output) { return port }
            if !process.isRunning { break }
            try await Task.sleep(for: .milliseconds(25))
        }
        throw ClusterDemoError.serveDidNotStart(name: name, output: String(output.suffix(1_500)))
    }

    /// The port of `roundup serve`'s "listening" log line in its output, once it is there.
    static func listeningPort(in output: String) -> Int? {
        guard let range = output.range(of: #"address=127\.0\.0\.1:(\d+)"#, options: .regularExpression) else { return nil }
        return Int(output[range].split(separator: ":").last ?? "")
    }

    /// Sends `signal`; true when the process was still running to receive it.
    @discardableResult
    func signal(_ signal: Int32) -> Bool {
        guard process.isRunning else { return false }
        return kill(pid, signal) == 0
    }

    /// Waits (bounded, without blocking a thread) until the process has exited.
    func waitUntilExited(timeout: Double) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        if process.isRunning { return false }
        ServeChild.running.withLock { _ = $0.remove(pid) }
        return true
    }

    /// SIGTERM, the graceful stop; SIGKILL when it has not exited after `timeout` seconds.
    func stop(timeout: Double = 20) async {
        signal(SIGCONT)
        signal(SIGTERM)
        if await !waitUntilExited(timeout: timeout) {
            signal(SIGKILL)
            _ = await waitUntilExited(timeout: 5)
        }
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}
