import Foundation
import Testing

@testable import Roundup

/// `explain` and `show` called directly on the library at a fixed instant, for the due-time
/// reasons that need a particular config (quiet hours, min_interval, max_messages, urgent).
@Suite("Digest operator")
struct DigestOperatorTests {
    /// 2025-03-04 21:25 in Shanghai (13:25 UTC).
    static let evening = Timestamp(seconds: 1_741_094_700)

    /// An operator over a fresh in-memory store, at `now`, with extra `digest:` keys.
    func world(_ digestYAML: String, now: Timestamp = DigestOperatorTests.evening) throws -> (DigestOperator, DigestFixtures) {
        let config = try ConfigLoader(environment: [:]).load(yaml: OperatorTestConfig.yaml + "digest:\n" + digestYAML).config
        let store = try RoundupStore.inMemory()
        let f = DigestFixtures(store: store, now: now)
        try f.user("p1", openid: "o1", name: "王芳")
        try f.user("t1", name: "张老师")
        try f.credit("o1")
        return (DigestOperator(store: store, config: config, now: { now }), f)
    }

    @Test("an open digest whose window ends in quiet hours is explained as moved to their end")
    func quietHours() throws {
        let (op, f) = try world("  quiet_hours: \"21:30-07:00\"\n")
        let windowEnd = f.now + 600_000
        let due = DuePolicy.afterQuietHours(windowEnd, op.config.digest.policy.quietHours, op.config.digest.timezone)
        try f.open("p1", [("t1", "a")], ago: 0, due: due)
        let text = try op.explain("p1").text
        #expect(text.hasPrefix("open: due 3月5日 07:00 (in 9h35m) because the 10m fixed window that began at 21:25 ends then"))
        #expect(text.contains("quiet hours (21:30-07:00) move it to 3月5日 07:00"))
    }

    @Test("min_interval after the last send is named when it sets the due time")
    func minInterval() throws {
        let (op, f) = try world("  min_interval: 1h\n")
        try f.finish(try f.open("p1", [("t1", "a")], ago: 120), as: .sent, errcode: "0", msgid: "1")
        // The interval counts from when the last send started (`finish` marks it sending 20 s ago).
        let lastSendStart = f.now - 20_000
        try f.open("p1", [("t1", "b")], ago: 0, due: lastSendStart + 3_600_000)
        let text = try op.explain("p1").text
        #expect(text.contains("min_interval 1h after the last send at 21:24 holds it until 22:24"))
    }

    @Test("urgent and max_messages make a digest due at once, and the paragraph says which")
    func early() throws {
        let (op, f) = try world("  max_messages: 2\n")
        try f.open("p1", [("t1", "a"), ("t1", "b")], ago: 5, due: f.now - 5_000)
        #expect(try op.explain("p1").text.contains("because max_messages (2) is reached; a running roundup serve sends it within a second"))

        try f.user("p2", openid: "o2")
        try f.credit("o2")
        let id = try f.open("p2", [("t1", "c")], ago: 5, due: f.now - 5_000)
        try f.store.write { tx in try tx.updateDigestTiming(id, lastMessageAt: nil, dueAt: nil, urgent: true, now: f.now) }
        #expect(try op.explain("p2").text.contains("because an urgent message makes it due at once"))
    }

    @Test("an open digest without credit or binding warns that it will be held when due")
    func willBeHeld() throws {
        let (op, f) = try world("  window: 10m\n")
        try f.user("p2", openid: "o2", name: "李娜")
        try f.open("p2", [("t1", "a")])
        #expect(try op.explain("p2").text.contains("李娜 has no subscription credit yet, so at that time it will be held"))
        try f.user("p3")
        try f.open("p3", [("t1", "a")])
        #expect(try op.explain("p3").text.contains("no openid is bound to p3, so at that time it will be held"))
    }

    @Test("show renders with the first template the openid holds a credit for")
    func showChoosesCreditedTemplate() throws {
        let yaml = OperatorTestConfig.yaml + """
              - id: T2
                fields: { thing1: "{{count}}条新消息" }

            """
        let config = try ConfigLoader(environment: [:]).load(yaml: yaml).config
        let store = try RoundupStore.inMemory()
        let f = DigestFixtures(store: store, now: Self.evening)
        try f.user("p1", openid: "o1")
        try f.credit("o1", template: "T2")
        try f.open("p1", [("t1", "a"), ("t1", "b")])
        let report = try DigestOperator(store: store, config: config, now: { Self.evening }).show("p1")
        #expect(report.json["template_id"] == .string("T2"))
        #expect(report.text.contains(#""data":{"thing1":{"value":"2条新消息"}}"#))
    }
}
