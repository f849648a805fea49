import Foundation
import Logging
import Testing

@testable import Roundup

/// The send path end to end: signed IM callbacks in over loopback HTTP, the pipeline
/// driven by a manual clock, fake WeChat and IM REST servers on 127.0.0.1.
@Suite("Digest pipeline: scheduler, sender and housekeeper")
struct DigestPipelineTests {
    static let yaml = """
        wechat:
          app_id: wx_fake_app_id
          app_secret: fake_app_secret

        """ + FakeConfigYAML.template(id: "T1")

    /// Everything one test needs, torn down by `remove()`.
    struct World {
        let h: ServiceHarness
        let runtime: RoundupRuntime
        let wechat: FakeWeChatServer
        let im: FakeIMServer
    }

    /// Runs `body` with the service, both fakes and a runtime wired to them.
    func withWorld(yaml: String = DigestPipelineTests.yaml, env: [String: String] = [:], dryRun: Bool = false,
                   wechatTimeout: Duration = .seconds(5), _ body: (World) async throws -> Void) async throws {
        let h = try ServiceHarness(yaml: yaml, env: env)
        defer { h.remove() }
        let wechat = FakeWeChatServer()
        let im = FakeIMServer()
        try await wechat.withRunning { wechatBase in
            try await im.withRunning { imBase in
                let api = IMRestClient(configuration: IMRestConfiguration(
                    baseURL: imBase, sdkAppID: im.sdkAppID, adminIdentifier: im.adminIdentifier, secretKey: im.secretKey))
                var logger = Logger(label: "test")
                logger.logLevel = .critical
                let runtime = RoundupRuntime(
                    config: h.runtime.config.snapshot, store: h.store, clock: h.clock, logger: logger, imAPI: api,
                    wechatAPI: dryRun ? nil : WeChatAPIClient(baseURL: wechatBase, timeout: wechatTimeout))
                try await body(World(h: h, runtime: runtime, wechat: wechat, im: im))
            }
        }
    }

    /// Posts a C2C message through the real HTTP endpoint of `runtime`.
    func message(_ w: World, from: String = "teacher_zhang", to: String, key: String, text: String = "明天带作业本") async throws {
        try await w.runtime.buildApplication().test(.live) { c in
            let r = try await c.post(w.h.callbackURI("C2C.CallbackAfterSendMsg"), Callbacks.c2c(from: from, to: to, key: key, text: text))
            #expect(r.status == 200)
        }
    }

    /// Starts a scheduler pass with the fake WeChat's gate closed, and returns once its first
    /// send waits there (`openGate` lets it through).
    func runOnceHeldAtWeChat(_ w: World) async throws -> Task<Int, Never> {
        await w.wechat.script.closeGate()
        let run = Task { await w.runtime.scheduler.runOnce() }
        for _ in 0..<1_000 where await w.wechat.script.sendAttempts == 0 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(await w.wechat.script.sendAttempts == 1)
        return run
    }

    func bind(_ w: World, _ user: String, openid: String, credits: Int = 1) throws {
        try w.h.store.updateUser(user, UserUpdate(openid: .set(openid), name: .set("王芳")), now: t0)
        try w.h.store.updateUser("teacher_zhang", UserUpdate(name: .set("张老师")), now: t0)
        if credits > 0 { try w.h.store.applyCredit(openid: openid, templateID: "T1", change: .add(credits), eventKey: nil, now: t0) }
    }

    @Test("an offline user's messages become one subscribe message when the window closes, spending one credit")
    func oneSendPerWindow() async throws {
        try await withWorld { w in
            try bind(w, "parent_001", openid: "oP1", credits: 2)
            for i in 0..<3 {
                try await message(w, to: "parent_001", key: "k\(i)", text: "第\(i + 1)条")
                w.h.clock.advance(by: 60)
            }
            #expect(await w.runtime.scheduler.runOnce() == 0)
            #expect(await w.wechat.script.accepted.isEmpty)
            w.h.clock.advance(by: 7 * 60)
            #expect(await w.runtime.scheduler.runOnce() == 1)
            let sent = await w.wechat.script.accepted
            #expect(sent.count == 1)
            #expect(sent.first?.touser == "oP1")
            #expect(sent.first?.body.contains(#""number2":{"value":"3"}"#) == true)
            #expect(sent.first?.body.contains("张老师等1人") == true)
            #expect(sent.first?.body.contains("第3条") == true)
            let digest = try #require(try w.h.store.digests(for: "parent_001").first)
            #expect(digest.state == .sent)
            #expect(try w.h.store.digestSummary(digest.id)?.msgid == sent.first?.msgid)
            #expect(try w.h.store.credit(openid: "oP1", templateID: "T1")?.count == 1)
            #expect(try w.h.store.messages(recipient: "parent_001").allSatisfy { $0.status == "delivered" })
            // Nothing is sent twice.
            w.h.clock.advance(by: 3600)
            await w.runtime.scheduler.runOnce()
            #expect(await w.wechat.script.accepted.count == 1)
        }
    }

    @Test("a send gives its slot back as soon as WeChat answers: the next send does not wait while the result is recorded")
    func slotFreeWhileRecording() async throws {
        try await withWorld(yaml: "digest:\n  send_concurrency: 1\n" + Self.yaml) { w in
            try bind(w, "parent_001", openid: "oP1")
            try await message(w, to: "parent_001", key: "k1")
            w.h.clock.advance(by: 600)
            let run = try await runOnceHeldAtWeChat(w)
            #expect(w.runtime.scheduler.slots.inUse == 1)
            // WeChat answers; recording the result waits for the writer.
            let hold = await WriterHold.start(w.runtime.committer)
            await w.wechat.script.openGate()
            #expect(try await hold.waitForQueue(1), "the result was not queued for the writer")
            #expect(w.runtime.scheduler.slots.inUse == 0, "the slot was kept while the result waited for the writer")
            try await hold.release()
            #expect(await run.value == 1)
            #expect(try #require(try w.h.store.digests(for: "parent_001").first).state == .sent)
        }
    }

    @Test("a message that joins while its digest waits for a slot is in the card: the body read with the batch is refused, the next pass sends both")
    func joinWhileWaitingForSlot() async throws {
        try await withWorld(yaml: "digest:\n  send_concurrency: 1\n" + Self.yaml) { w in
            try bind(w, "parent_001", openid: "oP1")
            try bind(w, "parent_002", openid: "oP2")
            try await message(w, to: "parent_001", key: "a1")
            try await message(w, to: "parent_002", key: "b1")
            w.h.clock.advance(by: 600)
            // One send holds the only slot at WeChat; the other digest waits with the messages read for the batch.
            let run = try await runOnceHeldAtWeChat(w)
            // A second message for each: the waiting digest takes it; the other, already sending, opens a new one.
            try await message(w, to: "parent_001", key: "a2")
            try await message(w, to: "parent_002", key: "b2")
            await w.wechat.script.openGate()
            #expect(await run.value == 2)
            let first = await w.wechat.script.accepted
            #expect(first.count == 1, "the waiting digest was sent from a body without the message that joined")
            #expect(first.first?.body.contains(#""number2":{"value":"1"}"#) == true)
            #expect(await w.runtime.scheduler.runOnce() == 1)
            let all = await w.wechat.script.accepted
            #expect(all.count == 2)
            #expect(all.last?.touser != first.first?.touser)
            #expect(all.last?.body.contains(#""number2":{"value":"2"}"#) == true, "\(all.last?.body ?? "-")")
            #expect(await w.wechat.script.sendAttempts == 2)
        }
    }

    @Test("a user who comes online first gets nothing and keeps the credit")
    func onlineFirst() async throws {
        try await withWorld { w in
            try bind(w, "parent_001", openid: "oP1")
            try await message(w, to: "parent_001", key: "k1")
            await w.im.state.setStatus(.online, for: ["parent_001"])
            w.h.clock.advance(by: 600)
            await w.runtime.scheduler.runOnce()
            #expect(await w.wechat.script.accepted.isEmpty)
            let digest = try #require(try w.h.store.digests(for: "parent_001").first)
            #expect(digest.state == .cancelled)
            #expect(digest.reason == .userOnline)
            #expect(try w.h.store.credit(openid: "oP1", templateID: "T1")?.count == 1)
        }
    }

    @Test("unbound, then bound: held unbound, then sent at once")
    func unboundThenBound() async throws {
        try await withWorld { w in
            try await message(w, to: "parent_009", key: "k1")
            w.h.clock.advance(by: 600)
            await w.runtime.scheduler.runOnce()
            #expect(try w.h.store.digests(for: "parent_009").first?.reason == .unbound)
            try bind(w, "parent_009", openid: "oP9")
            await w.runtime.scheduler.runOnce()
            #expect(await w.wechat.script.accepted.map(\.touser) == ["oP9"])
        }
    }

    @Test("no credit, then an accept: held no_credit, then sent at once")
    func noCreditThenAccept() async throws {
        try await withWorld { w in
            try bind(w, "parent_001", openid: "oP1", credits: 0)
            try await message(w, to: "parent_001", key: "k1")
            w.h.clock.advance(by: 600)
            await w.runtime.scheduler.runOnce()
            #expect(try w.h.store.digests(for: "parent_001").first?.reason == .noCredit)
            #expect(await w.wechat.script.accepted.isEmpty)
            _ = try await w.runtime.ledger.grant(openid: "oP1", templateID: "T1", count: 1, idempotencyKey: "accept-1")
            await w.runtime.scheduler.runOnce()
            #expect(await w.wechat.script.accepted.count == 1)
            #expect(try w.h.store.credit(openid: "oP1", templateID: "T1")?.count == 0)
        }
    }

    @Test("43101 zeroes that template's credits and the next template is used in the same pass")
    func noCreditAnswer() async throws {
        let twoTemplates = DigestPipelineTests.yaml + """
              - id: T2
                fields: { thing1: "{{count}}条新消息" }

            """
        try await withWorld(yaml: twoTemplates) { w in
            try bind(w, "parent_001", openid: "oP1", credits: 3)
            try w.h.store.applyCredit(openid: "oP1", templateID: "T2", change: .add(1), eventKey: nil, now: t0)
            await w.wechat.script.enqueue(.errcode(43101, "user refuse to accept the msg"))
            try await message(w, to: "parent_001", key: "k1")
            w.h.clock.advance(by: 600)
            await w.runtime.scheduler.runOnce()
            #expect(try w.h.store.credit(openid: "oP1", templateID: "T1")?.count == 0)
            #expect(await w.wechat.script.accepted.map(\.templateID) == ["T2"])
            #expect(try w.h.store.digests(for: "parent_001").first?.state == .sent)
        }
    }

    @Test("-1 is retried with backoff; 47003 is dead with its errcode; nothing is sent twice")
    func retryAndDead() async throws {
        try await withWorld { w in
            try bind(w, "parent_001", openid: "oP1")
            try w.h.store.updateUser("parent_002", UserUpdate(openid: .set("oP2")), now: t0)
            try w.h.store.applyCredit(openid: "oP2", templateID: "T1", change: .add(1), eventKey: nil, now: t0)
            await w.wechat.script.enqueue(.errcode(-1, "system error"))
            try await message(w, to: "parent_001", key: "k1")
            w.h.clock.advance(by: 600)
            await w.runtime.scheduler.runOnce()
            let d = try #require(try w.h.store.digests(for: "parent_001").first)
            #expect(d.state == .open)
            #expect(d.dueAt == w.h.clock.timestamp + 30_000)
            w.h.clock.advance(by: 30)
            await w.runtime.scheduler.runOnce()
            #expect(try w.h.store.digests(for: "parent_001").first?.state == .sent)

            await w.wechat.script.enqueue(.errcode(47003, "argument invalid! data.thing1.value invalid"))
            try await message(w, to: "parent_002", key: "k2")
            w.h.clock.advance(by: 600)
            await w.runtime.scheduler.runOnce()
            let dead = try #require(try w.h.store.digestSummaries(states: [.dead], user: "parent_002").first)
            #expect(dead.errcode == "47003")
            #expect(dead.errmsg?.contains("data.thing1.value invalid") == true)
            #expect(try w.h.store.credit(openid: "oP2", templateID: "T1")?.count == 1)
        }
    }

    @Test("a timeout leaves the digest in doubt, never resent, until a sent event settles it")
    func inDoubt() async throws {
        try await withWorld(wechatTimeout: .milliseconds(300)) { w in
            try bind(w, "parent_001", openid: "oP1")
            await w.wechat.script.enqueue(.delay(.seconds(1)))
            try await message(w, to: "parent_001", key: "k1")
            w.h.clock.advance(by: 600)
            await w.runtime.scheduler.runOnce()
            let d = try #require(try w.h.store.digests(for: "parent_001").first)
            #expect(d.state == .inDoubt)
            #expect(try w.h.store.credit(openid: "oP1", templateID: "T1")?.count == 1)
            w.h.clock.advance(by: 3600)
            await w.runtime.scheduler.runOnce()
            #expect(try w.h.store.digests(for: "parent_001").first?.state == .inDoubt)
            // The push that reports WeChat delivered it.
            let event = WeChatEvent.subscribeSent(SentEvent(
                toUser: "gh_x", openid: "oP1", createTime: Int64(w.h.clock.now.timeIntervalSince1970) - 3000,
                items: [.init(templateID: "T1", msgID: "1864323726461255680", errorCode: 0, errorStatus: "success")]))
            try await w.runtime.ledger.apply(event)
            let settled = try #require(try w.h.store.digestSummary(d.id))
            #expect(settled.state == .sent)
            #expect(settled.msgid == "1864323726461255680")
        }
    }

    @Test("a digest left in sending by a crash becomes in_doubt at start and is not resent")
    func crashDuringSend() async throws {
        try await withWorld { w in
            try bind(w, "parent_001", openid: "oP1")
            try await message(w, to: "parent_001", key: "k1")
            let d = try #require(try w.h.store.activeDigest(for: "parent_001"))
            #expect(try await w.h.store.write { tx in try tx.markSending(d.id, template: "T1", body: "{}", now: t0) })
            #expect(try w.h.store.recoverInterruptedSends(now: t0) == [d.id])
            #expect(try w.h.store.digestSummary(d.id)?.state == .inDoubt)
            w.h.clock.advance(by: 3600)
            await w.runtime.scheduler.runOnce()
            #expect(await w.wechat.script.accepted.isEmpty)
        }
    }

    @Test("45009 pauses all sending until the next quota day; digests stay due")
    func quota() async throws {
        try await withWorld { w in
            try bind(w, "parent_001", openid: "oP1")
            await w.wechat.script.enqueue(.errcode(45009, "reach max api daily quota limit"))
            try await message(w, to: "parent_001", key: "k1")
            w.h.clock.advance(by: 600)
            await w.runtime.scheduler.runOnce()
            #expect(try w.h.store.digests(for: "parent_001").first?.state == .open)
            #expect(try w.h.store.sendPauses().quota)
            await w.runtime.scheduler.runOnce()
            #expect(await w.wechat.script.sendAttempts == 1)
            // 2025-03-05 00:00 Shanghai.
            w.h.clock.set(Date(timeIntervalSince1970: 1_741_104_000))
            await w.runtime.scheduler.runOnce()
            #expect(await w.wechat.script.accepted.count == 1)
        }
    }

    @Test("a token that cannot be had leaves the digest open for a backoff retry: never `sending`, WeChat never called")
    func tokenUnavailable() async throws {
        try await withWorld { w in
            try bind(w, "parent_001", openid: "oP1")
            await w.wechat.script.failTokenRequests(-1)
            try await message(w, to: "parent_001", key: "k1")
            w.h.clock.advance(by: 600)
            await w.runtime.scheduler.runOnce()
            let d = try #require(try w.h.store.digests(for: "parent_001").first)
            let after = try #require(try w.h.store.digestSummary(d.id))
            #expect(after.state == .open)
            #expect(after.errcode == "-1")
            #expect(after.dueAt == w.h.clock.timestamp + DigestSender.retryBase)
            #expect(try w.h.store.dueDigest(d.id)?.attempts == 1)
            #expect(await w.wechat.script.sendAttempts == 0)
            let log = try w.h.store.digestLog(d.id).map(\.detail)
            #expect(!log.contains { $0.hasPrefix("sending") }, "\(log)")
            #expect(log.contains { $0.contains("errcode -1") && $0.contains("try 2") }, "\(log)")
            w.h.clock.advance(by: 30)
            await w.runtime.scheduler.runOnce()
            #expect(try w.h.store.digestSummary(d.id)?.state == .sent)
            #expect(await w.wechat.script.accepted.count == 1)
            #expect(try w.h.store.dueDigest(d.id)?.attempts == 2)
        }
    }

    @Test("a token refused for configuration (40164) holds the digest straight from open, with nothing spent")
    func tokenConfigError() async throws {
        try await withWorld { w in
            try bind(w, "parent_001", openid: "oP1")
            await w.wechat.script.failTokenRequests(40164)
            try await message(w, to: "parent_001", key: "k1")
            w.h.clock.advance(by: 600)
            await w.runtime.scheduler.runOnce()
            let d = try #require(try w.h.store.digests(for: "parent_001").first)
            let after = try #require(try w.h.store.digestSummary(d.id))
            #expect(after.state == .held)
            #expect(after.reason == .configError)
            #expect(after.errcode == "40164")
            #expect(await w.wechat.script.sendAttempts == 0)
            #expect(try w.h.store.credit(openid: "oP1", templateID: "T1")?.count == 1)
            #expect(!(try w.h.store.digestLog(d.id).contains { $0.detail.hasPrefix("sending") }))
        }
    }

    @Test("dry run applies every rule but calls nothing and spends nothing")
    func dryRun() async throws {
        try await withWorld(dryRun: true) { w in
            try bind(w, "parent_001", openid: "oP1")
            try await message(w, to: "parent_001", key: "k1")
            w.h.clock.advance(by: 600)
            await w.runtime.scheduler.runOnce()
            let d = try #require(try w.h.store.digests(for: "parent_001").first)
            #expect(d.state == .dryRun)
            #expect(await w.wechat.script.sendAttempts == 0)
            #expect(try w.h.store.credit(openid: "oP1", templateID: "T1")?.count == 1)
        }
    }

    @Test("1,000 users due at once: 1,000 sends, each once, presence asked in batches of at most 500")
    func thousand() async throws {
        try await withWorld { w in
            try await w.h.store.write { tx in
                for i in 0..<1000 {
                    _ = try tx.applyCredit(openid: "o\(i)", templateID: "T1", change: .add(1), eventKey: nil, now: t0)
                }
            }
            for i in 0..<1000 { try w.h.store.updateUser("p\(i)", UserUpdate(openid: .set("o\(i)")), now: t0) }
            let committer = w.runtime.committer
            let now = w.h.clock.timestamp
            let policy = DigestPolicy()
            let cfg = w.runtime.config.snapshot
            for i in 0..<1000 {
                _ = try await committer.perform(timeout: .seconds(30)) { tx in
                    let id = try tx.insertMessage(NewMessage(msgKey: "m\(i)", recipient: "p\(i)", sender: "t", msgTime: 1, receivedAt: now, summary: "hi"))!
                    try DigestLifecycle(config: cfg, now: now).join(tx, user: "p\(i)", messages: [id], from: "t", windowStart: now, urgent: false, policy: policy)
                }
            }
            w.h.clock.advance(by: 600)
            await w.runtime.scheduler.runOnce()
            let sent = await w.wechat.script.accepted
            #expect(sent.count == 1000)
            #expect(Set(sent.map(\.touser)).count == 1000)
            #expect(await w.wechat.script.overlaps == 0)
            #expect(await w.im.state.largestOnlineBatch <= 500)
            #expect(await w.im.state.onlineStatusCalls == 2)
        }
    }

    @Test("a restart mid-window keeps the due time, and the new process sends exactly once")
    func restartMidWindow() async throws {
        try await withWorld { w in
            try bind(w, "parent_001", openid: "oP1")
            try await message(w, to: "parent_001", key: "k1")
            let due = try #require(try w.h.store.activeDigest(for: "parent_001")?.dueAt)
            // A new process: a fresh store handle and runtime on the same file, presence unknown.
            let store = try RoundupStore.open(path: w.h.dir.appendingPathComponent("roundup.sqlite").path)
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            let api = IMRestClient(configuration: IMRestConfiguration(
                baseURL: "http://127.0.0.1:1", sdkAppID: w.im.sdkAppID, adminIdentifier: w.im.adminIdentifier, secretKey: w.im.secretKey))
            #expect(w.runtime.sender.wechat != nil)
            let restarted = RoundupRuntime(config: w.runtime.config.snapshot, store: store, clock: w.h.clock, logger: logger,
                                           imAPI: api, wechatAPI: w.runtime.sender.wechat?.api)
            #expect(try store.activeDigest(for: "parent_001")?.dueAt == due)
            w.h.clock.advance(by: 599)
            await restarted.scheduler.runOnce()
            #expect(await w.wechat.script.accepted.isEmpty)
            w.h.clock.advance(by: 1)
            await restarted.scheduler.runOnce()
            await restarted.scheduler.runOnce()
            #expect(await w.wechat.script.accepted.count == 1)
        }
    }
}
