import Foundation
import Testing

@testable import Roundup

/// The digest rules that had two homes or a gap: `min_interval` counting from a send still in
/// flight, the hold reason when only paused templates have a credit, settling an in-doubt send
/// whichever of the event and the verdict comes first.
extension DigestPipelineTests {
    static let minIntervalYAML = yaml + """
        digest:
          window: 1m
          min_interval: 10m

        """

    @Test("min_interval counts from a send that ended in doubt: a digest opened after it waits the full interval")
    func minIntervalFromInDoubt() async throws {
        // The call's deadline (2 s) ends well before the fake answers (4 s), and far enough from
        // the start that a loaded machine still gets the request out first.
        try await withWorld(yaml: Self.minIntervalYAML, wechatTimeout: .seconds(2)) { w in
            try bind(w, "parent_001", openid: "oP1", credits: 2)
            await w.wechat.script.enqueue(.delay(.seconds(4)))
            try await message(w, to: "parent_001", key: "k1")
            w.h.clock.advance(by: 60)
            await w.runtime.scheduler.runOnce()
            let first = try #require(try w.h.store.digests(for: "parent_001").first)
            #expect(first.state == .inDoubt)
            let sendingAt = try #require(try w.h.store.digestTimingFacts(first.id)?.sendingAt)

            try await message(w, to: "parent_001", key: "k2")
            let second = try #require(try w.h.store.activeDigest(for: "parent_001"))
            let due = try #require(second.dueAt)
            #expect(due >= sendingAt + 600_000, "due \(due.rfc3339), but the in-doubt send started \(sendingAt.rfc3339)")
            // The window closes after a minute; the interval still holds it.
            w.h.clock.advance(by: 120)
            await w.runtime.scheduler.runOnce()
            #expect(try w.h.store.activeDigest(for: "parent_001")?.state == .open)
            // The fake finishes the first send late (WeChat did deliver it); then, past the interval, the second goes.
            let script = w.wechat.script
            #expect(try await crashPoll(timeout: 10) { await script.accepted.count == 1 })
            w.h.clock.advance(by: 600)
            await w.runtime.scheduler.runOnce()
            #expect(await w.wechat.script.accepted.count == 2)
            #expect(try w.h.store.digestSummary(second.id)?.state == .sent)
        }
    }

    @Test("min_interval is checked again when a due digest is picked: one due before the interval is re-timed, not sent")
    func minIntervalAtPick() async throws {
        try await withWorld(yaml: Self.minIntervalYAML) { w in
            try bind(w, "parent_001", openid: "oP1", credits: 2)
            try await message(w, to: "parent_001", key: "k1")
            w.h.clock.advance(by: 60)
            await w.runtime.scheduler.runOnce()
            #expect(await w.wechat.script.accepted.count == 1)

            // A digest whose stored due time ignores the interval (written before a restart, say).
            try await message(w, to: "parent_001", key: "k2")
            let second = try #require(try w.h.store.activeDigest(for: "parent_001"))
            let now = w.h.clock.timestamp
            try await w.h.store.write { tx in try tx.setDue(second.id, now, now: now) }
            await w.runtime.scheduler.runOnce()
            #expect(await w.wechat.script.accepted.count == 1, "sent inside min_interval")
            let retimed = try #require(try w.h.store.activeDigest(for: "parent_001"))
            #expect(retimed.state == .open)
            #expect((retimed.dueAt ?? now) > now + 500_000)
            #expect(try w.h.store.digestLog(second.id).contains { $0.kind == "retimed" && $0.detail.contains("min_interval") })
        }
    }

    @Test("a user whose only credit is for a template paused by a configuration error is held config_error, not no_credit")
    func holdReasonNamesThePausedTemplate() async throws {
        let twoTemplates = Self.yaml + """
              - id: T2
                kind: one_time
                page: pages/chat/index
                fields:
                  thing1: "{{first_sender}}"

            """
        try await withWorld(yaml: twoTemplates) { w in
            try bind(w, "parent_001", openid: "oP1")  // a credit for T1 only
            try w.h.store.setSendPause(.template("T1"), until: nil, reason: "errcode 40037", now: t0)
            try await message(w, to: "parent_001", key: "k1")
            w.h.clock.advance(by: 600)
            await w.runtime.scheduler.runOnce()
            let d = try #require(try w.h.store.activeDigest(for: "parent_001"))
            #expect(d.state == .held)
            #expect(d.reason == .configError)
            #expect(await w.wechat.script.sendAttempts == 0)

            // Without any credit the reason is no_credit.
            try w.h.store.updateUser("parent_002", UserUpdate(openid: .set("oP2")), now: t0)
            try await message(w, to: "parent_002", key: "k2")
            w.h.clock.advance(by: 600)
            await w.runtime.scheduler.runOnce()
            #expect(try w.h.store.activeDigest(for: "parent_002")?.reason == .noCredit)
        }
    }

    /// The push WeChat sends once it delivered a message.
    func sentEvent(_ w: World, openid: String, msgid: String) -> WeChatEvent {
        .subscribeSent(SentEvent(
            toUser: "gh_x", openid: openid, createTime: Int64(w.h.clock.now.timeIntervalSince1970),
            items: [.init(templateID: "T1", msgID: msgid, errorCode: 0, errorStatus: "success")]))
    }

    @Test("an in-doubt send settled by a sent event that came later spends its one-time credit")
    func settleEventAfter() async throws {
        try await withWorld(wechatTimeout: .seconds(2)) { w in
            try bind(w, "parent_001", openid: "oP1", credits: 2)
            await w.wechat.script.enqueue(.delay(.seconds(4)))
            try await message(w, to: "parent_001", key: "k1")
            w.h.clock.advance(by: 600)
            await w.runtime.scheduler.runOnce()
            let d = try #require(try w.h.store.digests(for: "parent_001").first)
            #expect(d.state == .inDoubt)
            #expect(try w.h.store.credit(openid: "oP1", templateID: "T1")?.count == 2)
            try await w.runtime.ledger.apply(sentEvent(w, openid: "oP1", msgid: "1864323726461255681"))
            let settled = try #require(try w.h.store.digestSummary(d.id))
            #expect(settled.state == .sent)
            #expect(settled.msgid == "1864323726461255681")
            #expect(try w.h.store.credit(openid: "oP1", templateID: "T1")?.count == 1)
        }
    }

    @Test("a sent event that arrives while the send still hangs settles it as sent the moment it goes in doubt, spending its credit")
    func settleEventFirst() async throws {
        try await withWorld(wechatTimeout: .seconds(2)) { w in
            try bind(w, "parent_001", openid: "oP1", credits: 2)
            await w.wechat.script.enqueue(.delay(.seconds(4)))
            try await message(w, to: "parent_001", key: "k1")
            w.h.clock.advance(by: 600)
            let runtime = w.runtime
            async let pass = runtime.scheduler.runOnce()
            // The send is at the fake, hanging; WeChat's sent event arrives first.
            let script = w.wechat.script
            #expect(try await crashPoll(timeout: 10) { await script.sendAttempts >= 1 })
            #expect(try w.h.store.digests(for: "parent_001").first?.state == .sending)
            try await w.runtime.ledger.apply(sentEvent(w, openid: "oP1", msgid: "1864323726461255682"))
            _ = await pass
            let d = try #require(try w.h.store.digests(for: "parent_001").first)
            let settled = try #require(try w.h.store.digestSummary(d.id))
            #expect(settled.state == .sent)
            #expect(settled.msgid == "1864323726461255682")
            #expect(try w.h.store.credit(openid: "oP1", templateID: "T1")?.count == 1)
        }
    }
}
