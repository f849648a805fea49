import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

@testable import Roundup

/// `POST /im/callback` over loopback HTTP against the running service.
@Suite("IM callback endpoint")
struct IMCallbackEndpointTests {
    static let ok = #"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}"#

    @Test("a signed after-send callback to an unknown user stores the message in a new digest due after the window")
    func storesAndOpens() async throws {
        let h = try ServiceHarness()
        defer { h.remove() }
        let r = try await h.withClient { c in
            try await c.post(h.callbackURI("C2C.CallbackAfterSendMsg"), Callbacks.c2c(from: "teacher_zhang", to: "parent_001", key: "k1"))
        }
        #expect(r.status == 200)
        #expect(r.body == Self.ok)
        let digest = try #require(try h.store.activeDigest(for: "parent_001"))
        #expect(digest.state == .open)
        #expect(digest.pendingCount == 1)
        #expect(digest.dueAt == Timestamp(ServiceHarness.start) + 600_000)
        let messages = try h.store.messages(recipient: "parent_001")
        #expect(messages.map(\.msgKey) == ["k1"])
        #expect(messages.first?.hasText == true)
        let log = try h.store.digestLog(digest.id).map(\.kind)
        #expect(log == ["opened", "message"])
    }

    @Test("signatures: a wrong Sign, a stale or future RequestTime, a missing Sign and a wrong SdkAppid get 401 with a JSON error")
    func authentication() async throws {
        let h = try ServiceHarness()
        defer { h.remove() }
        try await h.withClient { c in
            let body = Callbacks.c2c(from: "t", to: "p", key: "k")
            var tampered = h.callbackURI("C2C.CallbackAfterSendMsg")
            tampered = tampered.replacingOccurrences(of: "Sign=", with: "Sign=0")
            for uri in [
                tampered,
                h.callbackURI("C2C.CallbackAfterSendMsg", requestTime: ServiceHarness.start.addingTimeInterval(-61)),
                h.callbackURI("C2C.CallbackAfterSendMsg", requestTime: ServiceHarness.start.addingTimeInterval(61)),
                h.callbackURI("C2C.CallbackAfterSendMsg", sign: false),
                h.callbackURI("C2C.CallbackAfterSendMsg", appID: 1_400_000_001),
            ] {
                let r = try await c.post(uri, body)
                #expect(r.status == 401, "\(uri)")
                #expect(r.body.hasPrefix(#"{"error":""#))
            }
            // Exactly 60 s old is still fresh.
            let fresh = try await c.post(h.callbackURI("C2C.CallbackAfterSendMsg", requestTime: ServiceHarness.start.addingTimeInterval(-60)), body)
            #expect(fresh.status == 200)
        }
        #expect(try h.store.messages(recipient: "p").count == 1)
    }

    @Test("with no callback token every callback is refused unless unsigned callbacks are allowed")
    func emptyToken() async throws {
        let refused = try ServiceHarness(token: "")
        defer { refused.remove() }
        let r = try await refused.withClient { c in
            try await c.post(refused.callbackURI("C2C.CallbackAfterSendMsg", sign: false), Callbacks.c2c(from: "t", to: "p", key: "k"))
        }
        #expect(r.status == 401)
        #expect(r.body.contains("im.callback_token"))

        let allowed = try ServiceHarness(yaml: "  allow_unsigned_callbacks: true\n", token: "")
        defer { allowed.remove() }
        let ok = try await allowed.withClient { c in
            try await c.post(allowed.callbackURI("C2C.CallbackAfterSendMsg", sign: false), Callbacks.c2c(from: "t", to: "p", key: "k"))
        }
        #expect(ok.status == 200)
    }

    @Test("the same MsgKey twice is stored once")
    func dedupe() async throws {
        let h = try ServiceHarness()
        defer { h.remove() }
        try await h.withClient { c in
            for _ in 0..<3 {
                let r = try await c.post(h.callbackURI("C2C.CallbackAfterSendMsg"), Callbacks.c2c(from: "t", to: "p", key: "same"))
                #expect(r.status == 200)
            }
        }
        #expect(try h.store.messages(recipient: "p").count == 1)
        #expect(try h.store.activeDigest(for: "p")?.pendingCount == 1)
    }

    @Test("failed sends, online-only messages, ignored senders and before-send callbacks are answered but not stored")
    func skipRules() async throws {
        let h = try ServiceHarness(yaml: "digest:\n  ignore_senders: [notice_bot]\n")
        defer { h.remove() }
        try await h.withClient { c in
            let uri = h.callbackURI("C2C.CallbackAfterSendMsg")
            for body in [
                Callbacks.c2c(from: "t", to: "p", key: "failed", result: 20006),
                Callbacks.c2c(from: "t", to: "p", key: "online", onlineOnly: 1),
                Callbacks.c2c(from: "notice_bot", to: "p", key: "bot"),
            ] {
                #expect(try await c.post(uri, body) == (200, Self.ok))
            }
            let before = try await c.post(h.callbackURI("C2C.CallbackBeforeSendMsg"),
                                          Callbacks.c2c(from: "t", to: "p", key: "before", command: "C2C.CallbackBeforeSendMsg"))
            #expect(before == (200, Self.ok))
        }
        #expect(try h.store.messages(recipient: "p").isEmpty)
        #expect(try h.store.activeDigest(for: "p") == nil)
    }

    @Test("with ingest_from before_send the before-send callback stores and the after-send one does not")
    func beforeSendIngest() async throws {
        let h = try ServiceHarness(yaml: "  ingest_from: before_send\n")
        defer { h.remove() }
        try await h.withClient { c in
            try await c.post(h.callbackURI("C2C.CallbackBeforeSendMsg"), Callbacks.c2c(from: "t", to: "p", key: "b1", command: "C2C.CallbackBeforeSendMsg"))
            try await c.post(h.callbackURI("C2C.CallbackAfterSendMsg"), Callbacks.c2c(from: "t", to: "p", key: "a1"))
        }
        #expect(try h.store.messages(recipient: "p").map(\.msgKey) == ["b1"])
    }

    @Test("a message to an online user stays unjoined; going offline joins recent ones and drops older ones")
    func onlineThenOffline() async throws {
        let h = try ServiceHarness()
        defer { h.remove() }
        let t = Int64(ServiceHarness.start.timeIntervalSince1970) * 1000
        try await h.withClient { c in
            let state = h.callbackURI("State.StateChange")
            try await c.post(state, Callbacks.state("p", "Login", eventTime: t))
            try await c.post(h.callbackURI("C2C.CallbackAfterSendMsg"), Callbacks.c2c(from: "t", to: "p", key: "old"))
            h.clock.advance(by: 120)
            try await c.post(h.callbackURI("C2C.CallbackAfterSendMsg"), Callbacks.c2c(from: "t", to: "p", key: "recent"))
            #expect(try h.store.activeDigest(for: "p") == nil)
            h.clock.advance(by: 10)
            try await c.post(h.callbackURI("State.StateChange"), Callbacks.state("p", "Disconnect", eventTime: t + 130_000))
        }
        let messages = try h.store.messages(recipient: "p")
        #expect(messages.first { $0.msgKey == "old" }?.status == "dropped")
        let recent = try #require(messages.first { $0.msgKey == "recent" })
        let digest = try #require(try h.store.activeDigest(for: "p"))
        #expect(recent.digestID == digest.id)
        #expect(digest.windowStartAt == Timestamp(ServiceHarness.start) + 130_000)
        #expect(digest.dueAt == Timestamp(ServiceHarness.start) + 130_000 + 600_000)
    }

    @Test("Login cancels the open digest (user_online) and marks its messages seen; older state events are ignored")
    func loginCancels() async throws {
        let h = try ServiceHarness()
        defer { h.remove() }
        let t = Int64(ServiceHarness.start.timeIntervalSince1970) * 1000
        try await h.withClient { c in
            try await c.post(h.callbackURI("State.StateChange"), Callbacks.state("p", "Logout", eventTime: t))
            try await c.post(h.callbackURI("C2C.CallbackAfterSendMsg"), Callbacks.c2c(from: "t", to: "p", key: "k1"))
            try await c.post(h.callbackURI("State.StateChange"), Callbacks.state("p", "Login", eventTime: t + 5000))
            // A late Disconnect from before the Login changes nothing.
            try await c.post(h.callbackURI("State.StateChange"), Callbacks.state("p", "Disconnect", eventTime: t + 1000))
        }
        let digest = try #require(try h.store.digests(for: "p").first)
        #expect(digest.state == .cancelled)
        #expect(digest.reason == .userOnline)
        #expect(try h.store.messages(recipient: "p").first?.status == "seen")
        #expect(h.runtime.presence.state(of: "p") == .online)
    }

    @Test("a message from a user counts as their Login, unless it was sent through the REST API")
    func senderActivity() async throws {
        let h = try ServiceHarness()
        defer { h.remove() }
        try await h.withClient { c in
            try await c.post(h.callbackURI("C2C.CallbackAfterSendMsg"), Callbacks.c2c(from: "teacher", to: "parent", key: "k1"))
            #expect(try h.store.activeDigest(for: "parent") != nil)
            try await c.post(h.callbackURI("C2C.CallbackAfterSendMsg", platform: "RESTAPI"), Callbacks.c2c(from: "admin", to: "teacher", key: "k2"))
            // The parent replies from the app: that is a Login for the parent, which cancels their digest.
            try await c.post(h.callbackURI("C2C.CallbackAfterSendMsg", platform: "Android"), Callbacks.c2c(from: "parent", to: "teacher", key: "k3"))
        }
        #expect(h.runtime.presence.state(of: "teacher") == .online)
        #expect(h.runtime.presence.state(of: "admin") == .unknown)
        #expect(try h.store.digests(for: "parent").first?.reason == .userOnline)
    }

    @Test("a read report removes the messages it covers and cancels an emptied digest; an older report is ignored")
    func readReports() async throws {
        let h = try ServiceHarness()
        defer { h.remove() }
        try await h.withClient { c in
            let uri = h.callbackURI("C2C.CallbackAfterSendMsg")
            try await c.post(uri, Callbacks.c2c(from: "t1", to: "p", key: "a", msgTime: 100))
            try await c.post(uri, Callbacks.c2c(from: "t1", to: "p", key: "b", msgTime: 200))
            try await c.post(uri, Callbacks.c2c(from: "t2", to: "p", key: "c", msgTime: 150))
            let report = h.callbackURI("C2C.CallbackAfterMsgReport")
            try await c.post(report, Callbacks.report(reader: "p", peer: "t1", lastReadTime: 150))
            #expect(try h.store.activeDigest(for: "p")?.pendingCount == 2)
            try await c.post(report, Callbacks.report(reader: "p", peer: "t1", lastReadTime: 120))
            try await c.post(report, Callbacks.report(reader: "p", peer: "t1", lastReadTime: 200))
            try await c.post(report, Callbacks.report(reader: "p", peer: "t2", lastReadTime: 150))
        }
        let statuses = Dictionary(uniqueKeysWithValues: try h.store.messages(recipient: "p").map { ($0.msgKey ?? "", $0.status) })
        #expect(statuses == ["a": "read", "b": "read", "c": "read"])
        let digest = try #require(try h.store.digests(for: "p").first)
        #expect(digest.state == .cancelled)
        #expect(digest.reason == .read)
    }

    @Test("a recall removes the message, erases its text and cancels an emptied digest; an early recall blocks the late message")
    func recalls() async throws {
        let h = try ServiceHarness()
        defer { h.remove() }
        try await h.withClient { c in
            try await c.post(h.callbackURI("C2C.CallbackAfterSendMsg"), Callbacks.c2c(from: "t", to: "p", key: "k1"))
            try await c.post(h.callbackURI("C2C.CallbackAfterMsgWithDraw"), Callbacks.withdraw(from: "t", to: "p", key: "k1"))
            try await c.post(h.callbackURI("C2C.CallbackAfterMsgWithDraw"), Callbacks.withdraw(from: "t", to: "q", key: "k2"))
            try await c.post(h.callbackURI("C2C.CallbackAfterSendMsg"), Callbacks.c2c(from: "t", to: "q", key: "k2"))
        }
        let recalled = try #require(try h.store.messages(recipient: "p").first)
        #expect(recalled.status == "recalled")
        #expect(!recalled.hasText)
        #expect(try h.store.digests(for: "p").first?.reason == .recalled)
        #expect(try h.store.messages(recipient: "q").isEmpty)
    }

    @Test("urgent messages make the digest due now; max_messages makes it due early")
    func earlyDue() async throws {
        let h = try ServiceHarness(yaml: "digest:\n  urgent_senders: [principal]\n  max_messages: 3\n")
        defer { h.remove() }
        try await h.withClient { c in
            let uri = h.callbackURI("C2C.CallbackAfterSendMsg")
            try await c.post(uri, Callbacks.c2c(from: "principal", to: "p1", key: "u1"))
            try await c.post(uri, Callbacks.c2c(from: "t", to: "p2", key: "flag", custom: #"{"roundup_urgent": true}"#))
            for i in 0..<3 {
                h.clock.advance(by: 10)
                try await c.post(uri, Callbacks.c2c(from: "t", to: "p3", key: "m\(i)"))
            }
        }
        let now = Timestamp(ServiceHarness.start)
        #expect(try h.store.activeDigest(for: "p1")?.dueAt == now)
        #expect(try h.store.activeDigest(for: "p2")?.dueAt == now)
        #expect(try h.store.activeDigest(for: "p3")?.dueAt == now + 30_000)
    }

    @Test("a group message is committed as one row keyed by GroupId+MsgSeq; AVChatRoom groups are skipped")
    func groups() async throws {
        let h = try ServiceHarness()
        defer { h.remove() }
        try await h.withClient { c in
            let uri = h.callbackURI("Group.CallbackAfterSendMsg")
            try await c.post(uri, Callbacks.group(id: "@TGS#class3", seq: 41, from: "teacher_li", mentions: ["parent_001"]))
            try await c.post(uri, Callbacks.group(id: "@TGS#class3", seq: 41, from: "teacher_li"))
            try await c.post(uri, Callbacks.group(id: "@TGS#live", seq: 1, from: "teacher_li", type: "AVChatRoom"))
        }
        #expect(try h.store.groupMessage(groupID: "@TGS#class3", msgSeq: 41) != nil)
        #expect(try h.store.groupMessage(groupID: "@TGS#live", msgSeq: 1) == nil)
    }

    @Test("malformed bodies get 400, oversize bodies 413, unknown commands the OK reply")
    func badInput() async throws {
        let h = try ServiceHarness(env: ["ROUNDUP_SERVER_MAX_BODY_BYTES": "2048"])
        defer { h.remove() }
        try await h.withClient { c in
            let bad = try await c.post(h.callbackURI("C2C.CallbackAfterSendMsg"), raw: "{not json")
            #expect(bad.status == 400)
            #expect(bad.body.hasPrefix(#"{"error":""#))
            let missing = try await c.post(h.callbackURI("C2C.CallbackAfterSendMsg"), raw: #"{"From_Account":"t"}"#)
            #expect(missing.status == 400)
            let big = try await c.post(h.callbackURI("C2C.CallbackAfterSendMsg"),
                                       Callbacks.c2c(from: "t", to: "p", key: "big", text: String(repeating: "长", count: 2000)))
            #expect(big.status == 413)
            #expect(big.body.contains("max_body_bytes"))
            let unknown = try await c.post(h.callbackURI("Group.CallbackAfterNewMemberJoin"), ["CallbackCommand": "Group.CallbackAfterNewMemberJoin"])
            #expect(unknown == (200, Self.ok))
            let notFound = try await c.execute(uri: "/nope", method: .get) { Int($0.status.code) }
            #expect(notFound == 404)
        }
        #expect(try h.store.messages(recipient: "p").isEmpty)
    }

    @Test("every fixture under Fixtures/im is answered with the OK reply")
    func fixtures() async throws {
        let h = try ServiceHarness()
        defer { h.remove() }
        let dir = TestSupport.fixture("im")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".json") }.sorted()
        #expect(files.count >= 10)
        try await h.withClient { c in
            for file in files {
                let text = try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)
                let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
                let command = object["CallbackCommand"] as? String ?? "Unknown"
                let r = try await c.post(h.callbackURI(command), raw: text)
                #expect(r == (200, Self.ok), "\(file)")
            }
        }
    }

    @Test("200 simultaneous callbacks for 50 users are each stored exactly once")
    func concurrency() async throws {
        let h = try ServiceHarness()
        defer { h.remove() }
        try await h.withClient { c in
            // Fifty connections, as IM's callbacks arrive side by side. (The test client sends
            // everything down one connection, one request after another, and its 20 s timeout
            // counts from when a request joined that queue: on a loaded CI machine the last of
            // 200 timed out.)
            let port = try #require(c.port)
            let configuration = URLSessionConfiguration.ephemeral
            configuration.httpMaximumConnectionsPerHost = 50
            configuration.timeoutIntervalForRequest = 60
            let session = URLSession(configuration: configuration)
            defer { session.invalidateAndCancel() }
            try await withThrowingTaskGroup(of: Int.self) { group in
                for i in 0..<200 {
                    group.addTask {
                        // Every message is sent twice, concurrently.
                        var request = URLRequest(url: try #require(URL(string: "http://127.0.0.1:\(port)" + h.callbackURI("C2C.CallbackAfterSendMsg"))))
                        request.httpMethod = "POST"
                        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
                        request.httpBody = try JSONSerialization.data(withJSONObject: Callbacks.c2c(from: "t", to: "p\(i % 50)", key: "k\(i % 100)"))
                        let (_, response) = try await session.data(for: request)
                        return (response as? HTTPURLResponse)?.statusCode ?? -1
                    }
                }
                for try await status in group { #expect(status == 200) }
            }
        }
        var total = 0
        for u in 0..<50 {
            let messages = try h.store.messages(recipient: "p\(u)")
            total += messages.count
            if !messages.isEmpty {
                #expect(try h.store.activeDigest(for: "p\(u)")?.pendingCount == messages.count)
            }
        }
        #expect(total == 100)
    }

    @Test("/healthz answers ok and /metrics exports every metric from start")
    func statusEndpoints() async throws {
        let h = try ServiceHarness()
        defer { h.remove() }
        try await h.withClient { c in
            let health = try await c.execute(uri: "/healthz", method: .get) { (Int($0.status.code), String(buffer: $0.body)) }
            #expect(health == (200, #"{"status":"ok"}"#))
            try await c.post(h.callbackURI("C2C.CallbackAfterSendMsg"), Callbacks.c2c(from: "t", to: "p", key: "k"))
            let metrics = try await c.execute(uri: "/metrics", method: .get) { String(buffer: $0.body) }
            for name in ["roundup_callbacks_total", "roundup_messages_ingested_total", "roundup_digests_total", "roundup_digests_held",
                         "roundup_digest_messages", "roundup_wechat_errors_total", "roundup_pending_messages", "roundup_open_digests",
                         "roundup_presence_users", "roundup_callback_seconds", "roundup_access_token_refreshes_total",
                         "roundup_oldest_due_age_seconds", "roundup_config_reloads_total"] {
                #expect(metrics.contains(name), "\(name)")
            }
            #expect(metrics.contains(#"roundup_callbacks_total{command="C2C.CallbackAfterSendMsg",outcome="stored"} 1"#))
            #expect(metrics.contains("roundup_pending_messages 1"))
            #expect(metrics.contains("roundup_open_digests 1"))
        }
    }
}

@Suite("Flush and new messages")
struct FlushIngestTests {
    @Test("a message arriving after a flush joins the digest without moving its due time back")
    func flushKept() async throws {
        let h = try ServiceHarness()
        defer { h.remove() }
        try await h.withClient { c in
            try await c.post(h.callbackURI("C2C.CallbackAfterSendMsg"), Callbacks.c2c(from: "t", to: "p", key: "k1"))
            h.clock.advance(by: 5)
            _ = try h.store.flushDigest(user: "p", at: h.clock.timestamp, force: false, now: h.clock.timestamp, note: "test flush")
            h.clock.advance(by: 5)
            try await c.post(h.callbackURI("C2C.CallbackAfterSendMsg"), Callbacks.c2c(from: "t", to: "p", key: "k2"))
        }
        let d = try #require(try h.store.activeDigest(for: "p"))
        #expect(d.pendingCount == 2)
        #expect(d.dueAt == Timestamp(ServiceHarness.start) + 5000)
    }
}
