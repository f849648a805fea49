import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import Roundup

/// A replayed push or callback changes nothing (issue 8): IM callbacks by
/// `MsgKey` (groups: `GroupId`+`MsgSeq`), the `EventTime` guard and IM's ±60 s `RequestTime`
/// window; WeChat pushes by event key (FromUserName, CreateTime, Event, template), whatever
/// timestamp and nonce they are re-sent with; admin credit grants by `idempotency_key`.
@Suite("Replays")
struct ReplayTests {
    static let ok = IMCallbackController.okBody

    // MARK: IM callbacks

    @Test("a signed IM callback replayed byte for byte is stored once and counted as skipped")
    func imCallbackReplayed() async throws {
        let h = try ServiceHarness()
        defer { h.remove() }
        let uri = h.callbackURI("C2C.CallbackAfterSendMsg")
        try await h.withClient { (c: any TestClientProtocol) async throws in
            let body = Callbacks.c2c(from: "teacher_zhang", to: "parent_001", key: "replayed-key")
            for _ in 0..<3 {
                #expect(try await c.post(uri, body) == (200, Self.ok))
                h.clock.advance(by: 20)
            }
        }
        #expect(try h.store.messages(recipient: "parent_001").map(\.msgKey) == ["replayed-key"])
        #expect(try h.store.activeDigest(for: "parent_001")?.pendingCount == 1)
        let metrics = h.runtime.metrics.exposition()
        #expect(metricSample(metrics, #"roundup_callbacks_total{command="C2C.CallbackAfterSendMsg",outcome="stored"}"#) == 1)
        #expect(metricSample(metrics, #"roundup_callbacks_total{command="C2C.CallbackAfterSendMsg",outcome="skipped"}"#) == 2)
        #expect(metricSample(metrics, "roundup_messages_ingested_total") == 1)
    }

    @Test("a callback arriving more than 60 s after its RequestTime is refused with 401 and stores nothing")
    func imCallbackStale() async throws {
        let h = try ServiceHarness()
        defer { h.remove() }
        // Captured while fresh, delivered 61 s later: never stored.
        let captured = h.callbackURI("C2C.CallbackAfterSendMsg")
        try await h.withClient { (c: any TestClientProtocol) async throws in
            let stored = Callbacks.c2c(from: "t", to: "p", key: "first")
            #expect(try await c.post(captured, stored).status == 200)
            h.clock.advance(by: 61)
            // The stored one again, and a new message under the same old signature.
            let replay = try await c.post(captured, stored)
            #expect(replay.status == 401)
            #expect(replay.body.hasPrefix(#"{"error":""#))
            #expect(try await c.post(captured, Callbacks.c2c(from: "t", to: "q", key: "late")).status == 401)
            // Moving RequestTime forward without the token to re-sign breaks the signature.
            let oldTime = String(Int64(ServiceHarness.start.timeIntervalSince1970))
            let newTime = String(Int64(h.clock.now.timeIntervalSince1970))
            let forged = captured.replacingOccurrences(of: "RequestTime=\(oldTime)", with: "RequestTime=\(newTime)")
            #expect(forged != captured)
            #expect(try await c.post(forged, Callbacks.c2c(from: "t", to: "q", key: "late")).status == 401)
        }
        #expect(try h.store.messages(recipient: "p").count == 1)
        #expect(try h.store.messages(recipient: "q").isEmpty)
        #expect(try h.store.activeDigest(for: "q") == nil)
        let metrics = h.runtime.metrics.exposition()
        #expect(metricSample(metrics, #"roundup_callbacks_total{command="C2C.CallbackAfterSendMsg",outcome="unauthorized"}"#) == 3)
        #expect(metricSample(metrics, "roundup_messages_ingested_total") == 1)
    }

    @Test("a replayed group message is stored once, and a replayed old Login neither flips presence nor cancels the digest")
    func imGroupAndStateReplayed() async throws {
        let h = try ServiceHarness()
        defer { h.remove() }
        let t = Int64(ServiceHarness.start.timeIntervalSince1970) * 1000
        try await h.withClient { (c: any TestClientProtocol) async throws in
            let group = Callbacks.group(id: "@TGS#class3", seq: 7, from: "teacher_li", mentions: ["parent_001"])
            for _ in 0..<2 { #expect(try await c.post(h.callbackURI("Group.CallbackAfterSendMsg"), group) == (200, Self.ok)) }

            let state = h.callbackURI("State.StateChange")
            let login = Callbacks.state("parent_002", "Login", eventTime: t)
            try await c.post(state, login)
            try await c.post(state, Callbacks.state("parent_002", "Logout", eventTime: t + 5000))
            try await c.post(h.callbackURI("C2C.CallbackAfterSendMsg"), Callbacks.c2c(from: "t", to: "parent_002", key: "k"))
            #expect(try await c.post(state, login) == (200, Self.ok))
        }
        #expect(try h.store.groupMessage(groupID: "@TGS#class3", msgSeq: 7) != nil)
        let metrics = h.runtime.metrics.exposition()
        #expect(metricSample(metrics, #"roundup_callbacks_total{command="Group.CallbackAfterSendMsg",outcome="stored"}"#) == 1)
        #expect(metricSample(metrics, #"roundup_callbacks_total{command="Group.CallbackAfterSendMsg",outcome="skipped"}"#) == 1)
        #expect(h.runtime.presence.state(of: "parent_002") == .offline)
        #expect(try h.store.activeDigest(for: "parent_002")?.state == .open)
    }

    // MARK: WeChat pushes

    /// A harness for pushes signed with `token`, decrypting with `aesKey` for `appID`.
    func pushHarness(token: String, aesKey: String?, appID: String, yaml: String = "") throws -> ServiceHarness {
        var env = ["ROUNDUP_WECHAT_PUSH_TOKEN": token, "ROUNDUP_WECHAT_APP_ID": appID]
        if let aesKey { env["ROUNDUP_WECHAT_ENCODING_AES_KEY"] = aesKey }
        return try ServiceHarness(yaml: yaml, env: env)
    }

    func push(_ c: any TestClientProtocol, query: String, body: String, type: String) async throws -> (Int, String) {
        try await c.execute(uri: "/wechat/push?\(query)", method: .post, headers: [.contentType: type], body: ByteBuffer(string: body)) {
            (Int($0.status.code), String(buffer: $0.body))
        }
    }

    @Test("a popup accept re-sent by WeChat with new timestamps and nonces grants one credit, in JSON and in XML")
    func plaintextPopupReplayed() async throws {
        let h = try pushHarness(token: "AAAAA", aesKey: nil, appID: "wxba5fad812f8e6fb9")
        defer { h.remove() }
        let json = try TestSupport.fixtureText("wechat/popup-object.json")
        let xml = try TestSupport.fixtureText("wechat/popup.xml")
        try await h.withClient { (c: any TestClientProtocol) async throws in
            for attempt in 0..<3 {
                let timestamp = String(1_714_037_059 + attempt * 5), nonce = "retry\(attempt)"
                let query = "signature=\(PushSignature.compute(token: "AAAAA", timestamp: timestamp, nonce: nonce))&timestamp=\(timestamp)&nonce=\(nonce)"
                #expect(try await push(c, query: query, body: json, type: "application/json") == (200, "success"))
                #expect(try await push(c, query: query, body: xml, type: "text/xml") == (200, "success"))
            }
        }
        #expect(try h.store.credit(openid: "o8dH44seYM3qeBzHlrmwI0sAtSfI", templateID: "BDcgTGpwt7fcRVFhGh-NvjcASaWWmkwzN3y_6mXzJR4")?.count == 1)
        #expect(try h.store.credit(openid: "otFpruAK8D-E6EfStSYonYSBZ8_4", templateID: "VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc")?.count == 1)
        #expect((try h.store.credit(openid: "otFpruAK8D-E6EfStSYonYSBZ8_4", templateID: "9nLIlbOQZC5Y89AZteFEux3WCXRRRG5Wfzkpssu4bLI")?.count ?? 0) == 0)
    }

    @Test("an encrypted (safe-mode) popup push replayed as sent, and re-signed with a new timestamp and nonce, grants one credit")
    func safeModePopupReplayed() async throws {
        let h = try pushHarness(token: "spamtest", aesKey: "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", appID: "wx2c2769f8efd9abc2")
        defer { h.remove() }
        let query = try TestSupport.fixtureText("wechat/safe-mode-popup.query").trimmingCharacters(in: .whitespacesAndNewlines)
        let body = try TestSupport.fixtureText("wechat/safe-mode-popup.xml")
        let encrypt = try #require(body.firstMatch(of: /<Encrypt><!\[CDATA\[([^\]]+)\]\]><\/Encrypt>/)).1
        let resigned = (1...2).map { attempt -> String in
            let timestamp = String(1_714_112_445 + attempt * 5), nonce = "resent\(attempt)"
            return "signature=\(PushSignature.compute(token: "spamtest", timestamp: timestamp, nonce: nonce))&timestamp=\(timestamp)"
                + "&nonce=\(nonce)&encrypt_type=aes&msg_signature=\(PushSignature.compute(token: "spamtest", timestamp: timestamp, nonce: nonce, encrypt: String(encrypt)))"
        }
        try await h.withClient { (c: any TestClientProtocol) async throws in
            for q in [query, query] + resigned {
                #expect(try await push(c, query: q, body: body, type: "text/xml") == (200, "success"))
            }
            // A re-signed query whose msg_signature does not cover this Encrypt is still refused.
            let stale = resigned[0].replacingOccurrences(of: "nonce=resent1", with: "nonce=resent9")
            #expect(try await push(c, query: stale, body: body, type: "text/xml").0 == 401)
        }
        #expect(try h.store.credit(openid: "oyORnuP8q7ou2gfYjqLzSIWZf0rs", templateID: "tmpl-digest-中文")?.count == 1)
        #expect((try h.store.credit(openid: "oyORnuP8q7ou2gfYjqLzSIWZf0rs", templateID: "tmpl-other")?.count ?? 0) == 0)
    }

    // MARK: admin credit grants

    /// `POST /admin/credits` for one credit of T1 under `key`: the status and the running total.
    func grant(_ c: any TestClientProtocol, key: String) async throws -> (Int, Int?) {
        try await c.execute(
            uri: "/admin/credits", method: .post,
            headers: [.contentType: "application/json", .authorization: "Bearer admin-secret"],
            body: ByteBuffer(string: #"{"openid":"oParent1","template_id":"T1","count":1,"idempotency_key":"\#(key)"}"#)
        ) { response in
            let object = try? parseJSON(String(buffer: response.body))
            return (Int(response.status.code), object?["credits"] as? Int)
        }
    }

    @Test("an admin credit grant replayed with the same idempotency_key is counted once; a new key adds")
    func adminGrantReplayed() async throws {
        let h = try ServiceHarness(yaml: "templates:\n  - id: T1\n    fields: { thing1: \"{{count}}条新消息\" }\n",
                                   env: ["ROUNDUP_SERVER_ADMIN_TOKEN": "admin-secret"])
        defer { h.remove() }
        try await h.withClient { (c: any TestClientProtocol) async throws in
            for _ in 0..<3 { #expect(try await grant(c, key: "req-8f2c") == (200, 1)) }
            #expect(try await grant(c, key: "req-9a01") == (200, 2))
            #expect(try await grant(c, key: "req-8f2c") == (200, 2))
        }
        #expect(try h.store.credit(openid: "oParent1", templateID: "T1")?.count == 2)
    }
}

/// The value of one series (`name{labels}` exactly as exported) in a Prometheus text exposition.
func metricSample(_ exposition: String, _ series: String) -> Double? {
    exposition.split(separator: "\n").lazy
        .first { $0.hasPrefix(series + " ") }
        .flatMap { Double($0.dropFirst(series.count + 1).trimmingCharacters(in: .whitespaces)) }
}
