import ArgumentParser
import Foundation
import Logging
import Roundup

/// `roundup-bench`: runs the real service in-process on loopback with a temporary database and
/// the fake WeChat and IM servers, drives it with a lean HTTP/1.1 load generator, and prints one
/// table (or JSON). It exits 1 only when correctness fails — an acknowledged message lost or
/// stored twice, a callback not answered as IM requires, a digest not sent exactly once.
@main
struct RoundupBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "roundup-bench",
        abstract: "Measure Roundup: ingest, presence, flush and startup.",
        discussion: """
            Build it optimised: swift run -c release roundup-bench [scenario…]
            All traffic stays on 127.0.0.1; every run is bounded in count and time. Progress goes \
            to stderr, the table (or --json) to stdout.
            """)

    enum Scenario: String, ExpressibleByArgument, CaseIterable, Sendable {
        case ingest, noop, presence, flush, startup, wake
    }

    @Argument(help: "Scenarios to run, in this order (default: all of them).")
    var scenarios: [Scenario] = []

    @Flag(help: "Print the results as one JSON object instead of a table.")
    var json = false

    @Flag(help: "Scale everything down (10–50x) for a smoke run.")
    var quick = false

    @Option(help: "Keep-alive connections of the load generator (default 32; --quick 8).")
    var connections: Int?

    @Option(help: "Seconds of each measured load phase (default 10; --quick 2).")
    var duration: Double?

    @Option(help: "Offline users the ingest callbacks are addressed to (default 10000; --quick 1000).")
    var users: Int?

    @Option(help: "Offered callbacks/s of the fixed-rate ingest phase (default 2000).")
    var rate: Double?

    @Option(help: "Users in the presence map (default 1000000; --quick 100000).")
    var presenceUsers: Int?

    @Option(help: "Distinct users of the State.StateChange callbacks (default 100000; --quick 10000).")
    var presenceHttpUsers: Int?

    @Option(help: "Users due at once in the flush scenario (default 10000; --quick 1000).")
    var flushUsers: Int?

    @Option(help: "digest.send_concurrency for the flush scenario (default 16, as the config's default).")
    var sendConcurrency: Int?

    @Option(help: "Pending messages in the startup database (default 1000000; --quick 20000).")
    var startupMessages: Int?

    @Option(help: "Users holding them, one open digest each (default 100000; --quick 2000).")
    var startupUsers: Int?

    @Option(help: "Run on PostgreSQL: a server URL (e.g. postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable); each scenario gets its own new database, dropped afterwards. The startup scenario is SQLite only.")
    var postgres: String?

    /// Every knob with the default (or --quick) filled in.
    struct Settings: Sendable {
        var connections: Int
        var duration: Double
        var users: Int
        var rate: Double
        var presenceUsers: Int
        var presenceHTTPUsers: Int
        var flushUsers: Int
        var sendConcurrency: Int
        var startupMessages: Int
        var startupUsers: Int
        /// Timed notifications between two instances, each way (`wake`).
        var wakeSamples: Int

        var json: [(String, JSONValue)] {
            [
                ("connections", .int(connections)), ("duration_seconds", .double(duration)), ("users", .int(users)),
                ("rate", .double(rate)), ("presence_users", .int(presenceUsers)), ("presence_http_users", .int(presenceHTTPUsers)),
                ("flush_users", .int(flushUsers)), ("send_concurrency", .int(sendConcurrency)),
                ("startup_messages", .int(startupMessages)), ("startup_users", .int(startupUsers)), ("wake_samples", .int(wakeSamples)),
            ]
        }
    }

    var settings: Settings {
        Settings(
            connections: connections ?? (quick ? 8 : 32), duration: duration ?? (quick ? 2 : 10), users: users ?? (quick ? 1000 : 10_000),
            rate: rate ?? 2000, presenceUsers: presenceUsers ?? (quick ? 100_000 : 1_000_000),
            presenceHTTPUsers: presenceHttpUsers ?? (quick ? 10_000 : 100_000), flushUsers: flushUsers ?? (quick ? 1000 : 10_000),
            sendConcurrency: sendConcurrency ?? 16, startupMessages: startupMessages ?? (quick ? 20_000 : 1_000_000),
            startupUsers: startupUsers ?? (quick ? 2000 : 100_000), wakeSamples: quick ? 20 : 100)
    }

    func validate() throws {
        let s = settings
        for (name, value) in [("--connections", s.connections), ("--users", s.users), ("--presence-users", s.presenceUsers),
                              ("--presence-http-users", s.presenceHTTPUsers), ("--flush-users", s.flushUsers),
                              ("--startup-messages", s.startupMessages), ("--startup-users", s.startupUsers)] where value < 1 {
            throw ValidationError("\(name) must be at least 1")
        }
        guard (1...1000).contains(s.connections) else { throw ValidationError("--connections must be 1…1000") }
        guard s.duration > 0, s.duration <= 600 else { throw ValidationError("--duration must be more than 0 and at most 600 seconds") }
        guard s.rate > 0, s.rate <= 100_000 else { throw ValidationError("--rate must be more than 0 and at most 100000") }
        guard (1...1000).contains(s.sendConcurrency) else { throw ValidationError("--send-concurrency must be 1…1000, as in the config") }
        guard s.startupUsers <= s.startupMessages else { throw ValidationError("--startup-users must not exceed --startup-messages") }
        guard s.users <= 10_000_000, s.presenceUsers <= 50_000_000, s.flushUsers <= 1_000_000, s.startupMessages <= 50_000_000 else {
            throw ValidationError("that many users or messages would not fit this machine")
        }
    }

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .warning
            return handler
        }
        var logger = Logger(label: "roundup-bench")
        logger.logLevel = .warning
        let s = settings
        if let postgres {
            do {
                let url = try PostgresURL(parsing: postgres)
                benchPostgresServer.withLock { $0 = url }
            } catch {
                throw ValidationError("--postgres: \(error)")
            }
        }
        var report = BenchReport()
        for scenario in scenarios.isEmpty ? Scenario.allCases : scenarios {
            do {
                switch scenario {
                case .ingest:
                    try await IngestScenario(users: s.users, connections: s.connections, duration: s.duration, rate: s.rate, logger: logger)
                        .run(into: &report)
                case .noop:
                    let ceiling = try await IngestScenario.noopCeiling(users: s.users, connections: s.connections, duration: s.duration, logger: logger)
                    IngestScenario.report(ceiling, into: &report, connections: s.connections, ingest: nil)
                case .presence:
                    try await PresenceScenario(users: s.presenceUsers, httpUsers: s.presenceHTTPUsers, connections: s.connections,
                                               duration: s.duration, logger: logger)
                        .run(into: &report)
                case .flush:
                    try await FlushScenario(users: s.flushUsers, sendConcurrency: s.sendConcurrency, logger: logger).run(into: &report)
                case .startup where postgres != nil:
                    logger.warning("startup skipped: the scenario builds an SQLite file; run it without --postgres")
                case .startup:
                    try await StartupScenario(messages: s.startupMessages, users: s.startupUsers, logger: logger).run(into: &report)
                case .wake where postgres == nil:
                    logger.info("wake skipped: it times two instances on PostgreSQL; run it with --postgres")
                case .wake:
                    try await WakeScenario(samples: s.wakeSamples, logger: logger).run(into: &report)
                }
            } catch {
                report.fail(scenario.rawValue, "could not run: \(error)")
            }
        }
        #if DEBUG
        let build = "debug"
        #else
        let build = "release"
        #endif
        if json {
            print(report.json(build: build, quick: quick, settings: s.json))
        } else {
            print("roundup-bench (\(build) build\(quick ? ", --quick" : ""), \(ProcessInfo.processInfo.activeProcessorCount) cores)\n")
            print(report.table())
        }
        if !report.failures.isEmpty { throw ExitCode(1) }
    }
}
