import Foundation
import Logging
import Roundup

/// `startup`: a database with a million pending messages (in open digests of many users, due
/// later) is built and closed; then the service starts on it, as `roundup serve` does, and the
/// time to ready is measured. Ready means both: `/healthz` answered 200, and the engine finished
/// what the scheduler and housekeeper do before its first wait (recover interrupted sends, housekeeping,
/// one pass). Both start together, as in `serve`; ready is when the later one is done.
struct StartupScenario {
    var messages: Int
    var users: Int
    var logger: Logger

    static let name = "startup"

    func run(into report: inout BenchReport) async throws {
        let messages = self.messages, users = self.users
        let figures = try await BenchWorld.with(logger: logger) { world in
            let config = try world.config()
            progress("startup: building a database with \(messages) pending messages for \(users) users")
            let buildStart = ContinuousClock.now
            try Self.build(path: config.storage.path, messages: messages, users: users)
            let built = seconds(since: buildStart)
            let size = Self.fileSize(config.storage.path)
            progress("startup: built in \(String(format: "%.1f", built)) s (\(String(format: "%.0f", size / 1_048_576)) MB); starting the service on it")
            var figures = try await Self.start(world: world, config: config, logger: logger)
            figures.buildSeconds = built
            figures.databaseBytes = size
            return figures
        }
        let n = Self.name
        report.add(n, "time to ready (\(messages) pending messages)", figures.ready, .seconds, target: .atMost(2))
        report.add(n, "  database open + migrations checked", figures.opened, .seconds)
        report.add(n, "  lease taken + runtime wired", figures.wired, .seconds)
        report.add(n, "  HTTP listening", figures.listening, .seconds)
        report.add(n, "  /healthz answered 200", figures.healthy, .seconds)
        report.add(n, "  engine first pass done", figures.engineDone, .seconds)
        report.add(n, "database size", figures.databaseBytes / 1_048_576, .megabytes)
        report.add(n, "building it (not timed as startup)", figures.buildSeconds, .seconds)
        report.check(n, "pending messages after start", figures.pending, expected: messages,
                     failure: "the started service holds \(figures.pending) pending messages, not \(messages)")
        report.check(n, "open digests after start", figures.openDigests, expected: users,
                     failure: "the started service holds \(figures.openDigests) open digests, not \(users)")
        if !figures.healthOK { report.fail(n, "/healthz did not answer 200") }
    }

    struct Figures: Sendable {
        var opened = 0.0
        var wired = 0.0
        var listening = 0.0
        var healthy = 0.0
        var engineDone = 0.0
        var healthOK = false
        var pending = 0
        var openDigests = 0
        var buildSeconds = 0.0
        var databaseBytes = 0.0

        var ready: Double { max(healthy, engineDone) }
    }

    /// Starts the service on the existing database, timing each step from the first.
    static func start(world: BenchWorld, config: RoundupConfig, logger: Logger) async throws -> Figures {
        var f = Figures()
        let t0 = ContinuousClock.now
        let store = try RoundupStore.open(path: config.storage.path, synchronous: config.storage.synchronous)
        f.opened = seconds(since: t0)
        let clock = SystemWallClock()
        let lease = try ServeLease.acquire(store: store, now: clock.timestamp)
        let runtime = RoundupRuntime(
            config: config, store: store, clock: clock, logger: logger, imAPI: RoundupRuntime.imClient(config, clock: clock),
            wechatAPI: WeChatAPIClient(baseURL: config.wechat.apiBaseURL))
        f.wired = seconds(since: t0)
        let engineDone = try await withThrowingTaskGroup(of: Double.self) { group in
            group.addTask {
                // What the scheduler and the housekeeper do before they first wait.
                _ = try runtime.store.recoverInterruptedSends(now: clock.timestamp)
                await runtime.housekeeper.runOnce()
                await runtime.scheduler.runOnce()
                return seconds(since: t0)
            }
            let (listening, healthy, ok) = try await world.runService(runtime, sending: false) { port in
                let listening = seconds(since: t0)
                let health = try await LoadGenerator.run(
                    port: port, plan: LoadPlan(connections: 1, mode: .closedLoop, duration: 30, maxRequests: 1), writer: HealthWriter())
                return (listening, seconds(since: t0), health.ok == 1)
            }
            f.listening = listening
            f.healthy = healthy
            f.healthOK = ok
            return try await group.next() ?? .nan
        }
        f.engineDone = engineDone
        let snapshot = try runtime.store.statusSnapshot(now: clock.timestamp)
        f.pending = snapshot.pendingMessages
        f.openDigests = snapshot.openDigests
        withExtendedLifetime(lease) {}
        return f
    }

    /// Builds the database through the store's own operations, in large transactions: users
    /// bound to openids, and per user an open digest due in 10 minutes holding its messages.
    static func build(path: String, messages: Int, users: Int) throws {
        let store = try RoundupStore.open(path: path)
        let now = Timestamp(Date())
        var roster = (0..<users).map { RosterEntry(imUserID: BenchIDs.parent($0), openid: BenchIDs.openid($0), name: nil, profile: nil) }
        roster += (0..<BenchIDs.teachers).map { RosterEntry(imUserID: BenchIDs.teacher($0), openid: nil, name: "老师\($0)", profile: nil) }
        _ = try store.importRoster(roster, now: now)
        let base = messages / users, extra = messages % users
        let batch = 2000
        for first in stride(from: 0, to: users, by: batch) {
            try store.write { tx in
                for u in first..<min(users, first + batch) {
                    let user = BenchIDs.parent(u)
                    let digest = try tx.openDigest(for: user, windowStart: now, dueAt: now + 600_000, now: now, note: "roundup-bench")
                    var ids: [Int64] = []
                    for k in 0..<(base + (u < extra ? 1 : 0)) {
                        guard let id = try tx.insertMessage(NewMessage(
                            msgKey: "start-\(u)-\(k)", recipient: user, sender: BenchIDs.teacher((u + k) % BenchIDs.teachers),
                            msgTime: now.milliseconds / 1000, receivedAt: now, summary: "请明天带作业本和红领巾"))
                        else { throw BenchError.seed("message start-\(u)-\(k) already exists") }
                        ids.append(id)
                    }
                    try tx.join(messages: ids, to: digest)
                    try tx.updateDigestTiming(digest, lastMessageAt: now, dueAt: nil, urgent: false, now: now)
                }
            }
        }
    }

    static func fileSize(_ path: String) -> Double {
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        return (attributes?[.size] as? NSNumber)?.doubleValue ?? 0
    }
}
