import Foundation
import Logging
import Roundup

/// `flush`: N bound users with a credit each and one message in a digest that is due now; the
/// engine sends them all to the fake WeChat (with 0 ms and 50 ms simulated API latency), and
/// each must be sent exactly once.
struct FlushScenario {
    var users: Int
    var sendConcurrency: Int
    var logger: Logger

    static let name = "flush"

    func run(into report: inout BenchReport) async throws {
        for latency in [0, 50] {
            progress("flush: \(users) digests due at once, WeChat latency \(latency) ms, send_concurrency \(sendConcurrency)")
            let figures = try await once(latencyMilliseconds: latency)
            figures.report(into: &report, users: users, sendConcurrency: sendConcurrency)
        }
    }

    struct Figures: Sendable {
        var latency: Int
        var seconds: Double
        var passes: Int
        var sent: Int
        var accepted: Int
        var distinctOpenids: Int
        var attempts: Int
        var overlaps: Int
        var stillOpen: Int
        var creditsLeft: Int

        func report(into report: inout BenchReport, users: Int, sendConcurrency: Int) {
            let n = FlushScenario.name
            let label = "\(latency) ms WeChat latency"
            let rate = seconds > 0 ? Double(accepted) / seconds : 0
            if latency == 0 {
                report.add(n, "\(label): sends/s", rate, .perSecond, target: .atLeast(2000))
            } else {
                // With every call taking `latency`, at most send_concurrency are in flight.
                let bound = Double(sendConcurrency) / (Double(latency) / 1000)
                report.add(n, "\(label): sends/s (bound \(sendConcurrency)/\(latency) ms = \(Int(bound))/s)", rate, .perSecond,
                           target: .atLeast((0.8 * bound).rounded()))
            }
            report.add(n, "\(label): total time for \(users) digests", seconds, .seconds)
            report.add(n, "\(label): scheduler passes", Double(passes), .count)
            report.check(n, "\(label): digests sent", sent, expected: users, failure: "\(sent) of \(users) digests ended sent (\(label))")
            report.check(n, "\(label): sends accepted by WeChat", accepted, expected: users,
                         failure: "WeChat accepted \(accepted) sends for \(users) digests (\(label))")
            report.check(n, "\(label): distinct openids sent to", distinctOpenids, expected: users,
                         failure: "\(distinctOpenids) distinct openids received the \(accepted) sends (\(label))")
            report.check(n, "\(label): send attempts", attempts, expected: users,
                         failure: "\(attempts) subscribe/send calls for \(users) digests (\(label))")
            report.check(n, "\(label): digests still open", stillOpen, failure: "\(stillOpen) digests were left open (\(label))")
            report.check(n, "\(label): overlapping sends to one openid", overlaps, failure: "\(overlaps) sends overlapped (\(label))")
            report.check(n, "\(label): one-time credits left", creditsLeft, failure: "\(creditsLeft) credits were not spent (\(label))")
        }
    }

    /// One run over a fresh database and fresh fakes.
    func once(latencyMilliseconds latency: Int) async throws -> Figures {
        let users = self.users, sendConcurrency = self.sendConcurrency
        return try await BenchWorld.with(logger: logger) { world in
            await world.wechat.script.setSendLatency(.milliseconds(latency))
            let config = try world.config(digest: "  window: 10m\n  send_concurrency: \(sendConcurrency)\n")
            let runtime = try RoundupRuntime(config: config, logger: logger)
            try Self.seed(runtime.store, users: users)
            // The HTTP service runs as in production; the engine is driven pass by pass (as its
            // own loop would, back to back while digests are due) so the time is exact.
            let (elapsed, passes) = try await world.runService(runtime, sending: false) { _ in
                let start = ContinuousClock.now
                var passes = 0
                // Bounded: a pass takes up to 1,000 due digests; a few spare passes, and 10 minutes.
                while passes < users / 1000 + 10, seconds(since: start) < 600 {
                    passes += 1
                    if await runtime.scheduler.runOnce() == 0 { break }
                }
                return (seconds(since: start), passes)
            }
            let accepted = await world.wechat.script.accepted
            let credits = try runtime.store.credits().reduce(0) { $0 + $1.count }
            return Figures(
                latency: latency, seconds: elapsed, passes: passes,
                sent: try runtime.store.digestSummaries(states: [.sent]).count, accepted: accepted.count,
                distinctOpenids: Set(accepted.map(\.touser)).count, attempts: await world.wechat.script.sendAttempts,
                overlaps: await world.wechat.script.overlaps,
                stillOpen: try runtime.store.statusSnapshot(now: Timestamp(Date())).openDigests, creditsLeft: credits)
        }
    }

    /// Users bound to openids with one credit each, and one message each in an open digest that
    /// came due a second ago — in one transaction, through the store's own operations.
    static func seed(_ store: RoundupStore, users: Int) throws {
        let now = Timestamp(Date())
        let opened = now - 11 * 60_000
        var roster = (0..<users).map { RosterEntry(imUserID: BenchIDs.parent($0), openid: BenchIDs.openid($0), name: "家长\($0)", profile: nil) }
        roster += (0..<BenchIDs.teachers).map { RosterEntry(imUserID: BenchIDs.teacher($0), openid: nil, name: "老师\($0)", profile: nil) }
        _ = try store.importRoster(roster, now: opened)
        try store.write { tx in
            for i in 0..<users {
                let user = BenchIDs.parent(i)
                _ = try tx.applyCredit(openid: BenchIDs.openid(i), templateID: BenchIDs.templateID, change: .add(1), eventKey: nil, now: opened)
                guard let message = try tx.insertMessage(NewMessage(
                    msgKey: "flush-\(i)", recipient: user, sender: BenchIDs.teacher(i % BenchIDs.teachers),
                    msgTime: opened.milliseconds / 1000, receivedAt: opened, summary: "请明天带作业本和红领巾"))
                else { throw BenchError.seed("message flush-\(i) already exists") }
                let digest = try tx.openDigest(for: user, windowStart: opened, dueAt: now - 1000, now: opened, note: "roundup-bench")
                try tx.join(messages: [message], to: digest)
                try tx.updateDigestTiming(digest, lastMessageAt: opened, dueAt: nil, urgent: false, now: opened)
            }
        }
    }
}

/// Why a scenario could not be set up.
enum BenchError: Error, CustomStringConvertible {
    case seed(String)

    var description: String {
        switch self {
        case .seed(let why): return "could not build the scenario's data: \(why)"
        }
    }
}
