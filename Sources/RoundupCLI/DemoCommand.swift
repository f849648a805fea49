import ArgumentParser
import Foundation
import Logging
import Roundup

/// `roundup demo [--json] [--trace FILE]`: the whole product on this machine, with fake
/// WeChat and IM servers, replaying a school afternoon through real signed HTTP callbacks.
/// `roundup demo --postgres URL`: the move to two instances on PostgreSQL, and one killed.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo", abstract: "Run the whole product on this machine with fake WeChat and IM servers.")

    @Flag(help: "Print one JSON line per subscribe message sent, then a summary object; progress goes to stderr.")
    var json = false
    @Option(help: "Replay this trace (JSON Lines) instead of the built-in one.")
    var trace: String?
    @Option(help: .hidden)
    var speed: Double = 1
    @Option(help: ArgumentHelp(
        "Instead: move an SQLite database into this empty PostgreSQL database, run two instances on it and kill one mid-flush.",
        valueName: "postgres-url"))
    var postgres: String?

    func validate() throws {
        guard speed > 0, speed.isFinite else { throw ValidationError("--speed must be a positive number.") }
        if postgres != nil, trace != nil { throw ValidationError("--trace replays on SQLite; it does not go with --postgres.") }
    }

    func run() async throws {
        if let postgres {
            try await runCluster(url: postgres)
            return
        }
        let replay: DemoTrace
        do {
            replay = try trace.map(DemoTrace.load(path:)) ?? DemoTrace.builtIn()
        } catch let error as DemoTraceError {
            throw OperatorFailure("Cannot replay \(trace ?? "the built-in trace"): \(error).")
        }
        Self.logWarningsToStandardError()
        let json = self.json
        let progress = json ? FileHandle.standardError : FileHandle.standardOutput
        let out = FileHandle.standardOutput
        // Whole seconds, like the MsgTime and RequestTime IM sends.
        let clock = ManualWallClock(Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down)))
        let runner = DemoRunner(trace: replay, clock: clock, speed: speed, logger: Logger(label: "roundup.demo")) { note in
            switch note {
            case .progress(let line):
                progress.write(Data((line + "\n").utf8))
            case .sent(let body):
                if json {
                    out.write(Data((body + "\n").utf8))
                } else {
                    let indented = DemoFormat.pretty(body).split(separator: "\n").map { "          " + $0 }.joined(separator: "\n")
                    out.write(Data((indented + "\n").utf8))
                }
            }
        }
        let summary: DemoSummary
        do {
            summary = try await runner.run()
        } catch let error as DemoError {
            throw OperatorFailure("The demo stopped: \(error).")
        }
        if json {
            out.write(Data((summary.json.serialized + "\n").utf8))
        } else {
            out.write(Data(("\n" + summary.text).utf8))
        }
    }

    /// `--postgres`: the cluster demo, with the `roundup` program running now as each instance.
    private func runCluster(url: String) async throws {
        Self.logWarningsToStandardError()
        let progress = json ? FileHandle.standardError : FileHandle.standardOutput
        let executable = Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments[0])
        let demo: ClusterDemo
        do {
            demo = try ClusterDemo(url: url, executable: executable, logger: Logger(label: "roundup.demo")) { line in
                progress.write(Data((line + "\n").utf8))
            }
        } catch let error as ConfigValueError {
            throw ValidationError("--postgres: \(error)")
        }
        let summary: ClusterDemoSummary
        do {
            summary = try await demo.run()
        } catch let error as ClusterDemoError {
            throw OperatorFailure("The demo stopped: \(error).")
        }
        if json {
            FileHandle.standardOutput.write(Data((summary.json.serialized + "\n").utf8))
        } else {
            FileHandle.standardOutput.write(Data(("\n" + summary.text).utf8))
        }
        guard summary.ok else { throw OperatorFailure("A check of the demo failed (marked ✗ above).") }
    }

    /// Both demos log warnings and errors only, to stderr: stdout is the demo's own output.
    private static func logWarningsToStandardError() {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .warning
            return handler
        }
    }
}
