import Foundation
import Logging
import Testing

@testable import Roundup

/// Retention and privacy: messages that outlive `digest.retention` expire, unjoined ones are
/// dropped, and message text is erased `storage.text_retention` after its digest finished —
/// from the rows and from the database's files.
extension DigestPipelineTests {
    static let retentionYAML = yaml + """
        digest:
          window: 3h
          retention: 1h

        """
    /// Text is erased an hour after its digest finished.
    static let textRetention = ["ROUNDUP_STORAGE_TEXT_RETENTION": "1h"]

    @Test("a pending message older than digest.retention expires, and a digest left empty is expired")
    func retentionExpires() async throws {
        try await withWorld(yaml: Self.retentionYAML) { w in
            try bind(w, "parent_001", openid: "oP1")
            try await message(w, to: "parent_001", key: "k1")
            let d = try #require(try w.h.store.activeDigest(for: "parent_001"))
            w.h.clock.advance(by: 59 * 60)
            #expect(await w.runtime.housekeeper.runOnce().expiredDigests == 0)
            #expect(try w.h.store.activeDigest(for: "parent_001")?.state == .open)
            w.h.clock.advance(by: 2 * 60)
            #expect(await w.runtime.housekeeper.runOnce().expiredDigests == 1)
            #expect(try w.h.store.digestSummary(d.id)?.state == .expired)
            #expect(try w.h.store.messages(recipient: "parent_001").map(\.status) == ["expired"])
            #expect(w.runtime.metrics.exposition().contains(#"roundup_digests_total{outcome="expired"} 1"#))
        }
    }

    @Test("an unjoined message (its recipient stayed online) is dropped once it is older than digest.retention")
    func unjoinedDropped() async throws {
        try await withWorld(yaml: Self.retentionYAML) { w in
            try await w.runtime.buildApplication().test(.live) { c in
                let r = try await c.post(w.h.callbackURI("State.StateChange"), Callbacks.state("parent_001", "Login", eventTime: Int64(w.h.clock.now.timeIntervalSince1970 * 1000)))
                #expect(r.status == 200)
            }
            try await message(w, to: "parent_001", key: "k1")
            #expect(try w.h.store.messages(recipient: "parent_001").map(\.status) == ["pending"])
            #expect(try w.h.store.activeDigest(for: "parent_001") == nil)
            w.h.clock.advance(by: 30 * 60)
            await w.runtime.housekeeper.runOnce()
            #expect(try w.h.store.messages(recipient: "parent_001").map(\.status) == ["pending"])
            w.h.clock.advance(by: 31 * 60)
            await w.runtime.housekeeper.runOnce()
            #expect(try w.h.store.messages(recipient: "parent_001").map(\.status) == ["dropped"])
        }
    }

    @Test("text_retention after a digest is sent, its message text and rendered body are gone from the rows and from the database and WAL files")
    func textErasedFromFiles() async throws {
        let secret = "暗号XYZZY-4242-春游改期"
        try await withWorld(yaml: Self.yaml, env: Self.textRetention) { w in
            try bind(w, "parent_001", openid: "oP1")
            try await message(w, to: "parent_001", key: "k1", text: secret)
            w.h.clock.advance(by: 600)
            await w.runtime.scheduler.runOnce()
            let d = try #require(try w.h.store.digests(for: "parent_001").first)
            #expect(try w.h.store.digestSummary(d.id)?.state == .sent)
            let files = [w.h.dir.appendingPathComponent("roundup.sqlite"), w.h.dir.appendingPathComponent("roundup.sqlite-wal")]
            func contains(_ text: String) -> Bool {
                files.contains { file in
                    guard let data = try? Data(contentsOf: file) else { return false }
                    return data.range(of: Data(text.utf8)) != nil
                }
            }
            #expect(contains(secret), "the text should be in the files before the purge (else this test proves nothing)")
            // Not yet: the digest finished less than text_retention ago.
            w.h.clock.advance(by: 30 * 60)
            #expect(await w.runtime.housekeeper.runOnce().purgedDigests == 0)
            #expect(try w.h.store.digestMessages(d.id).isEmpty)  // delivered, no longer pending
            w.h.clock.advance(by: 31 * 60)
            #expect(await w.runtime.housekeeper.runOnce().purgedDigests == 1)
            #expect(try w.h.store.messages(recipient: "parent_001").allSatisfy { !$0.hasText })
            #expect(!contains(secret), "erased text is still readable in the database or WAL file")
        }
    }

    @Test("a restart reuses the access token saved in the database instead of fetching a new one")
    func tokenSurvivesRestart() async throws {
        try await withWorld { w in
            try bind(w, "parent_001", openid: "oP1")
            try bind(w, "parent_002", openid: "oP2")
            try await message(w, to: "parent_001", key: "k1")
            w.h.clock.advance(by: 600)
            await w.runtime.scheduler.runOnce()
            #expect(await w.wechat.script.tokenFetches == 1)
            #expect(try w.h.store.cachedAccessToken() != nil)

            let store = try RoundupStore.open(path: w.h.dir.appendingPathComponent("roundup.sqlite").path)
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            let restarted = RoundupRuntime(config: w.runtime.config.snapshot, store: store, clock: w.h.clock, logger: logger,
                                           imAPI: nil, wechatAPI: w.runtime.sender.wechat?.api)
            try await message(w, to: "parent_002", key: "k2")
            w.h.clock.advance(by: 600)
            await restarted.scheduler.runOnce()
            #expect(await w.wechat.script.accepted.count == 2)
            #expect(await w.wechat.script.tokenFetches == 1, "the restarted runtime fetched a new token")
        }
    }
}

extension DigestPipelineTests {
    @Test("DELETE /admin/users/{id}?erase=true leaves none of the user's message text in the database or WAL file")
    func eraseLeavesNoTextInFiles() async throws {
        let secret = "家访暗号QUUX-7788-勿外传"
        try await withWorld(env: ["ROUNDUP_SERVER_ADMIN_TOKEN": "erase-token"]) { w in
            try bind(w, "parent_001", openid: "oP1")
            try await message(w, to: "parent_001", key: "k1", text: secret)
            let files = [w.h.dir.appendingPathComponent("roundup.sqlite"), w.h.dir.appendingPathComponent("roundup.sqlite-wal")]
            func contains(_ text: String) -> Bool {
                files.contains { (try? Data(contentsOf: $0))?.range(of: Data(text.utf8)) != nil }
            }
            #expect(contains(secret), "the text should be in the files before the erase (else this test proves nothing)")
            try await w.runtime.buildApplication().test(.live) { c in
                let r = try await c.execute(uri: "/admin/users/parent_001?erase=true", method: .delete,
                                            headers: [.authorization: "Bearer erase-token"], body: nil)
                #expect(r.status == .noContent)
            }
            #expect(try w.h.store.messages(recipient: "parent_001").isEmpty)
            #expect(!contains(secret), "erased text is still readable in the database or WAL file")
        }
    }
}
