import Foundation
import Logging
import Roundup

/// `ingest`: signed `C2C.CallbackAfterSendMsg` callbacks for offline parents over N keep-alive
/// connections — a short warm-up, then a fixed offered rate (open loop), then full load (closed
/// loop) — and afterwards every acknowledged MsgKey counted in the store.
struct IngestScenario {
    var users: Int
    var connections: Int
    var duration: Double
    var rate: Double
    var logger: Logger

    static let name = "ingest"

    /// One load phase and the MsgKeys it used.
    struct Phase: Sendable {
        var label: String
        var writer: C2CMessageWriter
        var result: LoadResult
        /// CPU this process (service and load generator together) used during the phase.
        var cpuSeconds: Double = 0
        /// PostgreSQL statements (round trips) sent during the phase; nil on SQLite.
        var statements: Int?
    }

    func run(into report: inout BenchReport) async throws {
        let users = self.users, connections = self.connections, duration = self.duration, rate = self.rate
        let outcome = try await BenchWorld.with(logger: logger) { world in
            // Nothing becomes due while it runs: max_messages out of reach, a 10-minute window.
            let config = try world.config(digest: "  window: 10m\n  max_messages: 10000\n")
            let runtime = try RoundupRuntime(config: config, logger: logger)
            // The recipients are offline (an unknown user counts as offline too; this is explicit).
            for i in 0..<users { runtime.presence.apply(user: BenchIDs.parent(i), online: false, eventTime: 0) }
            let phases = try await world.runService(runtime, sending: true) { port in
                var phases: [Phase] = []
                let warm = C2CMessageWriter(prefix: "warm-", users: users)
                let warmFor = min(2, duration / 5)
                progress("ingest: warm-up, \(connections) connections, \(Self.short(warmFor)) s")
                phases.append(Phase(label: "warm-up", writer: warm, result: try await LoadGenerator.run(
                    port: port, plan: LoadPlan(connections: connections, mode: .closedLoop, duration: warmFor, maxRequests: 1_000_000),
                    writer: warm)))
                let fixed = C2CMessageWriter(prefix: "rate-", users: users)
                let offered = Int(rate * duration)
                progress("ingest: \(Int(rate))/s offered for \(Self.short(duration)) s (\(offered) callbacks, open loop)")
                phases.append(Phase(label: "rate", writer: fixed, result: try await LoadGenerator.run(
                    port: port, plan: LoadPlan(connections: connections, mode: .fixedRate(perSecond: rate), duration: duration, maxRequests: offered),
                    writer: fixed)))
                let full = C2CMessageWriter(prefix: "full-", users: users)
                progress("ingest: full load, \(connections) connections, \(Self.short(duration)) s (closed loop)")
                let cpuBefore = processCPUSeconds()
                let statementsBefore = runtime.store.postgres?.statementsSent
                phases.append(Phase(label: "full", writer: full, result: try await LoadGenerator.run(
                    port: port, plan: LoadPlan(connections: connections, mode: .closedLoop, duration: duration, maxRequests: 5_000_000),
                    writer: full), cpuSeconds: processCPUSeconds() - cpuBefore,
                    statements: statementsBefore.flatMap { before in runtime.store.postgres.map { $0.statementsSent - before } }))
                return phases
            }
            progress("ingest: counting stored messages per MsgKey")
            return try Self.verify(runtime: runtime, phases: phases)
        }
        let ceiling = try await Self.noopCeiling(users: users, connections: connections, duration: duration, logger: logger)
        outcome.report(into: &report, connections: connections, rate: rate, duration: duration)
        Self.report(ceiling, into: &report, connections: connections, ingest: outcome.phases.first { $0.label == "full" }?.result)
    }

    /// The same signed callbacks at full load against a service that stores nothing: with
    /// `im.ingest_from: before_send`, each `C2C.CallbackAfterSendMsg` is authenticated, decoded,
    /// counted and answered OK, and skipped before any database work. What ingest cannot exceed on
    /// this machine with this load generator.
    static func noopCeiling(users: Int, connections: Int, duration: Double, logger: Logger) async throws -> (result: LoadResult, cpuSeconds: Double) {
        try await BenchWorld.with(logger: logger) { world in
            var config = try world.config(digest: "  window: 10m\n  max_messages: 10000\n")
            config.im.ingestFrom = .beforeSend
            let runtime = try RoundupRuntime(config: config, logger: logger)
            return try await world.runService(runtime, sending: false) { port in
                let warm = C2CMessageWriter(prefix: "noop-warm-", users: users)
                _ = try await LoadGenerator.run(
                    port: port, plan: LoadPlan(connections: connections, mode: .closedLoop, duration: min(2, duration / 5), maxRequests: 1_000_000),
                    writer: warm)
                progress("noop: full load, \(connections) connections, \(short(duration)) s, nothing stored (the ceiling)")
                let cpuBefore = processCPUSeconds()
                let result = try await LoadGenerator.run(
                    port: port, plan: LoadPlan(connections: connections, mode: .closedLoop, duration: duration, maxRequests: 5_000_000),
                    writer: C2CMessageWriter(prefix: "noop-", users: users))
                return (result, processCPUSeconds() - cpuBefore)
            }
        }
    }

    static func report(_ noop: (result: LoadResult, cpuSeconds: Double), into report: inout BenchReport, connections: Int, ingest: LoadResult?) {
        let ceiling = noop.result
        report.add("noop", "full load (\(connections) conns), nothing stored: callbacks/s", ceiling.okPerSecond, .perSecond)
        report.add("noop", "full load: latency p99", ceiling.milliseconds(atPercentile: 99), .milliseconds)
        if ceiling.ok > 0 {
            report.add("noop", "full load: CPU per callback (service + generator)", 1e6 * noop.cpuSeconds / Double(ceiling.ok), .microseconds)
        }
        report.check("noop", "answers other than 200 ErrorCode 0", ceiling.notOK + ceiling.failed,
                     failure: "\(ceiling.notOK + ceiling.failed) no-op callbacks were not answered 200 with ErrorCode 0")
        if let ingest, ceiling.okPerSecond > 0 {
            report.add(name, "full load as a share of the no-op ceiling", 100 * ingest.okPerSecond / ceiling.okPerSecond, .percent)
        }
    }

    /// What the database holds against what was acknowledged.
    struct Outcome: Sendable {
        var phases: [Phase]
        var acknowledged = 0
        var lost = 0
        var duplicated = 0
        /// Committed although the client saw no OK answer (harmless: never acknowledged).
        var storedUnacknowledged = 0
        var pendingMessages = 0
        var openDigests = 0
        var shed = 0.0
        var firstLost: String?

        func report(into report: inout BenchReport, connections: Int, rate: Double, duration: Double) {
            let n = Self.name
            if let full = phases.first(where: { $0.label == "full" })?.result {
                report.add(n, "full load (\(connections) conns): callbacks/s", full.okPerSecond, .perSecond, target: .atLeast(20_000))
                report.add(n, "full load: latency p50", full.milliseconds(atPercentile: 50), .milliseconds)
                report.add(n, "full load: latency p99", full.milliseconds(atPercentile: 99), .milliseconds)
                report.add(n, "full load: latency p99.9", full.milliseconds(atPercentile: 99.9), .milliseconds)
                if let cpu = phases.first(where: { $0.label == "full" })?.cpuSeconds, full.ok > 0 {
                    report.add(n, "full load: CPU per callback (service + generator)", 1e6 * cpu / Double(full.ok), .microseconds)
                }
                if let statements = phases.first(where: { $0.label == "full" })?.statements, full.ok > 0 {
                    report.add(n, "full load: PostgreSQL round trips per callback", Double(statements) / Double(full.ok), .ratio)
                }
            }
            if let fixed = phases.first(where: { $0.label == "rate" })?.result {
                let label = "\(Int(rate))/s offered"
                report.add(n, "\(label): callbacks/s answered", fixed.okPerSecond, .perSecond)
                report.add(n, "\(label): latency p50", fixed.milliseconds(atPercentile: 50), .milliseconds)
                report.add(n, "\(label): latency p99", fixed.milliseconds(atPercentile: 99), .milliseconds, target: .atMost(10))
                report.add(n, "\(label): latency p99.9", fixed.milliseconds(atPercentile: 99.9), .milliseconds)
                let offered = Int(rate * duration)
                if fixed.started < offered {
                    report.add(n, "\(label): never sent (run cut short)", Double(offered - fixed.started), .count)
                }
            }
            report.add(n, "callbacks acknowledged (all phases)", Double(acknowledged), .count)
            if storedUnacknowledged > 0 {
                report.add(n, "stored though never acknowledged (harmless)", Double(storedUnacknowledged), .count)
            }
            report.add(n, "pending messages in the store", Double(pendingMessages), .count)
            report.add(n, "open digests", Double(openDigests), .count)
            report.add(n, "shed (roundup_callbacks_total outcome=shed)", shed, .count)
            let notOK = phases.reduce(0) { $0 + $1.result.notOK }
            let failed = phases.reduce(0) { $0 + $1.result.failed }
            let problem = phases.compactMap(\.result.firstProblem).first.map { " (first: \($0))" } ?? ""
            report.check(n, "answers other than 200 ErrorCode 0", notOK, failure: "\(notOK) callbacks were not answered 200 with ErrorCode 0\(problem)")
            report.check(n, "callbacks unanswered (timeout, closed)", failed, failure: "\(failed) callbacks got no answer\(problem)")
            report.check(n, "acknowledged but not in the store (lost)", lost,
                         failure: "\(lost) acknowledged messages are not stored\(firstLost.map { " (e.g. MsgKey \($0))" } ?? "")")
            report.check(n, "stored more than once (duplicated)", duplicated, failure: "\(duplicated) MsgKeys are stored more than once")
            if acknowledged == 0 { report.fail(n, "no callback was acknowledged, so nothing could be verified") }
        }

        static let name = IngestScenario.name
    }

    /// Looks up every MsgKey the client sent (the unique `msg_key` index makes each a point
    /// query) and compares what is stored with what the client saw acknowledged.
    static func verify(runtime: RoundupRuntime, phases: [Phase]) throws -> Outcome {
        var outcome = Outcome(phases: phases)
        for phase in phases {
            for seq in 0..<phase.result.started {
                let key = phase.writer.msgKey(seq)
                let count = try runtime.store.messageCount(msgKey: key)
                if phase.result.acknowledged[seq] {
                    outcome.acknowledged += 1
                    if count == 0 {
                        outcome.lost += 1
                        if outcome.firstLost == nil { outcome.firstLost = key }
                    }
                } else if count > 0 {
                    outcome.storedUnacknowledged += 1
                }
                if count > 1 { outcome.duplicated += 1 }
            }
        }
        let snapshot = try runtime.store.statusSnapshot(now: Timestamp(Date()))
        outcome.pendingMessages = snapshot.pendingMessages
        outcome.openDigests = snapshot.openDigests
        outcome.shed = metricSum(runtime.metrics.exposition(), name: "roundup_callbacks_total", containing: #"outcome="shed""#)
        return outcome
    }

    static func short(_ seconds: Double) -> String { seconds == seconds.rounded() ? String(Int(seconds)) : String(format: "%.1f", seconds) }
}

/// The sum of a metric's samples whose labels contain `containing`, from the text exposition.
func metricSum(_ exposition: String, name: String, containing: String) -> Double {
    exposition.split(separator: "\n").reduce(0) { total, line in
        guard line.hasPrefix(name + "{"), line.contains(containing), let value = line.split(separator: " ").last.flatMap({ Double($0) })
        else { return total }
        return total + value
    }
}
