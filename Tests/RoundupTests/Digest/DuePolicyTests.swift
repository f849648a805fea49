import Foundation
import Testing

@testable import Roundup

@Suite("Due policy")
struct DuePolicyTests {
    static let shanghai = TimeZone(identifier: "Asia/Shanghai")!
    /// 2025-03-04 16:00 in Shanghai.
    static let t0 = Timestamp(seconds: 1_741_075_200)

    func policy(_ edit: (inout DigestPolicy) -> Void = { _ in }) -> DigestPolicy {
        var p = DigestPolicy()
        edit(&p)
        return p
    }

    func due(_ f: DuePolicy.Facts, _ p: DigestPolicy, tz: TimeZone = shanghai) -> Timestamp {
        DuePolicy.dueAt(f, policy: p, timeZone: tz)
    }

    @Test("fixed windows are due `window` after the first message, whatever comes later")
    func fixed() {
        let f = DuePolicy.Facts(windowStart: Self.t0, lastMessageAt: Self.t0 + 540_000, pendingCount: 5)
        #expect(due(f, policy()) == Self.t0 + 600_000)
    }

    @Test("sliding windows follow the last message, capped by max_wait")
    func sliding() {
        let p = policy { $0.mode = .sliding; $0.window = .minutes(10); $0.maxWait = .minutes(30) }
        #expect(due(.init(windowStart: Self.t0, lastMessageAt: Self.t0 + 300_000, pendingCount: 2), p) == Self.t0 + 900_000)
        #expect(due(.init(windowStart: Self.t0, lastMessageAt: Self.t0 + 1_500_000, pendingCount: 2), p) == Self.t0 + 1_800_000)
    }

    @Test("max_messages and urgent messages make a digest due early; only urgent skips min_interval")
    func early() {
        let p = policy { $0.maxMessages = 3; $0.minInterval = .minutes(30) }
        let lastSent = Self.t0 - 60_000
        let full = DuePolicy.Facts(windowStart: Self.t0, lastMessageAt: Self.t0 + 5000, pendingCount: 3, earlySince: Self.t0 + 5000, lastSentAt: lastSent)
        #expect(due(full, p) == lastSent + 1_800_000)
        var urgent = full
        urgent.urgent = true
        #expect(due(urgent, p) == Self.t0 + 5000)
        var noHistory = full
        noHistory.lastSentAt = nil
        #expect(due(noHistory, p) == Self.t0 + 5000)
    }

    @Test("min_interval holds a digest until that long after the user's last send")
    func minInterval() {
        let p = policy { $0.minInterval = .hours(1) }
        let f = DuePolicy.Facts(windowStart: Self.t0, lastMessageAt: Self.t0, pendingCount: 1, lastSentAt: Self.t0 - 600_000)
        #expect(due(f, p) == Self.t0 + 3_000_000)
    }

    @Test("a due time inside quiet hours moves to their end, across midnight, in the configured time zone")
    func quietHours() throws {
        let p = policy { $0.quietHours = try! QuietHours(parsing: "21:30-07:00,12:00-13:30") }
        // 21:50 Shanghai → 07:00 next day.
        let evening = Timestamp(seconds: 1_741_075_200 + 5 * 3600 + 50 * 60 - 600)
        let f = DuePolicy.Facts(windowStart: evening, lastMessageAt: evening, pendingCount: 1)
        let next7 = Timestamp(seconds: 1_741_075_200 + 15 * 3600)
        #expect(due(f, p) == next7)
        // 12:05 → 13:30 the same day.
        let noon = Timestamp(seconds: 1_741_075_200 - 4 * 3600 + 5 * 60 - 600)
        #expect(due(.init(windowStart: noon, lastMessageAt: noon, pendingCount: 1), p) == Timestamp(seconds: 1_741_075_200 - 2 * 3600 - 30 * 60))
        // The same instants in UTC are not quiet there.
        #expect(due(f, p, tz: TimeZone(identifier: "UTC")!) == evening + 600_000)
    }

    @Test("back-to-back quiet ranges are skipped together")
    func adjacentRanges() {
        let p = policy { $0.quietHours = try! QuietHours(parsing: "20:00-22:00,22:00-23:00") }
        let t = Timestamp(seconds: 1_741_075_200 + 4 * 3600 + 30 * 60 - 600)  // due 20:30
        #expect(due(.init(windowStart: t, lastMessageAt: t, pendingCount: 1), p) == Timestamp(seconds: 1_741_075_200 + 7 * 3600))
    }

    @Test("a quiet range ending in a DST gap ends at the first instant after it")
    func dstGap() throws {
        // New York, 2025-03-09: 02:00 → 03:00. Quiet 01:00-02:30 ends at 03:00 local (07:00 UTC).
        let ny = TimeZone(identifier: "America/New_York")!
        let p = policy { $0.quietHours = try! QuietHours(parsing: "01:00-02:30"); $0.window = .minutes(1) }
        let at0130 = Timestamp(seconds: 1_741_501_800 - 60)  // due 01:30 EST = 06:30 UTC
        #expect(due(.init(windowStart: at0130, lastMessageAt: at0130, pendingCount: 1), p, tz: ny) == Timestamp(seconds: 1_741_503_600))
    }

    @Test("flush is due now, skipping window and min_interval; only --force also skips quiet hours")
    func flush() {
        let p = policy { $0.minInterval = .hours(5); $0.quietHours = try! QuietHours(parsing: "15:00-17:00") }
        var f = DuePolicy.Facts(windowStart: Self.t0, lastMessageAt: Self.t0, pendingCount: 1, lastSentAt: Self.t0)
        f.flush = .init(at: Self.t0 + 1000, force: false)
        #expect(due(f, p) == Timestamp(seconds: 1_741_075_200 + 3600))
        f.flush = .init(at: Self.t0 + 1000, force: true)
        #expect(due(f, p) == Self.t0 + 1000)
    }
}
