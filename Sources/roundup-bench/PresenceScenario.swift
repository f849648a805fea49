import Foundation
import Logging
import Roundup

/// `presence`: the in-memory presence map filled with a million users (resident memory per
/// user, events/s straight on the map from one and two threads), the SQLite writer's cache after
/// messages to as many users (resident memory at its bound), then `State.StateChange`
/// callbacks/s through the real HTTP endpoint.
struct PresenceScenario {
    var users: Int
    /// Distinct users the HTTP callbacks cycle through.
    var httpUsers: Int
    var connections: Int
    var duration: Double
    var logger: Logger

    static let name = "presence"

    func run(into report: inout BenchReport) async throws {
        let n = Self.name
        progress("presence: filling a PresenceMap with \(users) users")
        let direct = await directMap()
        if let bytes = direct.bytesPerUser {
            report.add(n, "resident memory per user (\(users) users, 20-char ids)", bytes, .bytes, target: .atMost(200))
            report.add(n, "resident memory for \(users) users", bytes * Double(users) / 1_048_576, .megabytes)
        } else {
            report.add(n, "resident memory per user (no /proc/self/statm)", .nan, .bytes)
        }
        report.add(n, "map: first event per user (insert), events/s", direct.insertsPerSecond, .perSecond)
        report.add(n, "map: events/s, 1 thread", direct.oneThread, .perSecond, target: .atLeast(100_000))
        report.add(n, "map: events/s, 2 threads", direct.twoThreads, .perSecond)
        report.check(n, "map: users counted online + offline", direct.counted, expected: users,
                     failure: "the map counts \(direct.counted) users online or offline, not \(users)")

        progress("presence: the SQLite writer's cache after messages to \(users) users")
        let beforeCache = residentBytes()
        let sample = WriterCacheSample()
        let held = sample.fill(users: users, id: BenchIDs.parent)
        if let b = beforeCache, let a = residentBytes() {
            report.add(n, "SQLite writer cache after \(users) users: resident memory (\(held.users) users, \(held.activeDigests) digests held)",
                       Double(a - b) / 1_048_576, .megabytes)
        }
        withExtendedLifetime(sample) {}

        let httpUsers = self.httpUsers, connections = self.connections, duration = self.duration
        let http = try await BenchWorld.with(logger: logger) { world in
            let runtime = try RoundupRuntime(config: try world.config(), logger: logger)
            let result = try await world.runService(runtime, sending: true) { port in
                progress("presence: State.StateChange callbacks for \(httpUsers) users, \(connections) connections, \(IngestScenario.short(duration)) s")
                return try await LoadGenerator.run(
                    port: port, plan: LoadPlan(connections: connections, mode: .closedLoop, duration: duration, maxRequests: 10_000_000),
                    writer: StateChangeWriter(users: httpUsers))
            }
            let counts = runtime.presence.counts
            return (result, counts.online + counts.offline)
        }
        let (result, known) = http
        report.add(n, "HTTP State.StateChange (\(connections) conns): callbacks/s", result.okPerSecond, .perSecond, target: .atLeast(100_000))
        report.add(n, "HTTP State.StateChange: latency p50", result.milliseconds(atPercentile: 50), .milliseconds)
        report.add(n, "HTTP State.StateChange: latency p99", result.milliseconds(atPercentile: 99), .milliseconds)
        let problem = result.firstProblem.map { " (first: \($0))" } ?? ""
        report.check(n, "HTTP: answers other than 200 ErrorCode 0", result.notOK,
                     failure: "\(result.notOK) State.StateChange callbacks were not answered 200 with ErrorCode 0\(problem)")
        report.check(n, "HTTP: callbacks unanswered", result.failed, failure: "\(result.failed) State.StateChange callbacks got no answer\(problem)")
        let expectedKnown = min(httpUsers, result.ok)
        if result.ok > 0 && known < expectedKnown {
            report.fail(n, "after \(result.ok) acknowledged events only \(known) users have a presence (expected at least \(expectedKnown))")
        }
        if result.ok == 0 { report.fail(n, "no State.StateChange callback was acknowledged") }
    }

    struct DirectFigures: Sendable {
        var bytesPerUser: Double?
        var insertsPerSecond: Double
        var oneThread: Double
        var twoThreads: Double
        var counted: Int
    }

    /// The map alone. Ids are created as the events arrive (as decoded JSON would create them), so
    /// the memory measured includes their strings, which only the map keeps.
    func directMap() async -> DirectFigures {
        let users = self.users
        let before = residentBytes()
        let map = PresenceMap()
        var start = ContinuousClock.now
        for i in 0..<users { map.apply(user: BenchIDs.parent(i), online: i % 2 == 0, eventTime: 1) }
        let inserts = Double(users) / seconds(since: start)
        let after = residentBytes()
        let bytesPerUser = before.flatMap { b in after.map { Double($0 - b) / Double(users) } }

        // Later events for known users, ids made in advance so only the map is timed.
        let ids = (0..<users).map(BenchIDs.parent)
        start = ContinuousClock.now
        for (i, id) in ids.enumerated() { map.apply(user: id, online: i % 2 == 1, eventTime: 2) }
        let one = Double(users) / seconds(since: start)

        start = ContinuousClock.now
        await withTaskGroup(of: Void.self) { group in
            for part in 0..<2 {
                group.addTask {
                    var i = part
                    while i < ids.count {
                        map.apply(user: ids[i], online: i % 2 == 0, eventTime: 3)
                        i += 2
                    }
                }
            }
        }
        let two = Double(users) / seconds(since: start)
        let counts = map.counts
        return DirectFigures(bytesPerUser: bytesPerUser, insertsPerSecond: inserts, oneThread: one, twoThreads: two,
                             counted: counts.online + counts.offline)
    }
}
