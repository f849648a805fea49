import Foundation
import NIOCore
import Testing

@testable import Roundup

/// `/wechat/push` over loopback HTTP, driven by WeChat's published test vectors.
@Suite("WeChat push endpoint")
struct WeChatPushEndpointTests {
    static let template = "BDcgTGpwt7fcRVFhGh-NvjcASaWWmkwzN3y_6mXzJR4"
    static let yaml = """
        templates:
          - id: "\(template)"
            fields: { thing1: "{{count}}条新消息" }
          - id: LONG
            kind: long_term
            fields: { thing1: "{{count}}条新消息" }

        """

    /// A harness whose WeChat settings match the official vector (token AAAAA, 43×A, wxba5fad812f8e6fb9).
    func harness(token: String = "AAAAA", aes: Bool = true) throws -> ServiceHarness {
        var env = ["ROUNDUP_WECHAT_PUSH_TOKEN": token, "ROUNDUP_WECHAT_APP_ID": "wxba5fad812f8e6fb9"]
        if aes { env["ROUNDUP_WECHAT_ENCODING_AES_KEY"] = String(repeating: "A", count: 43) }
        return try ServiceHarness(yaml: Self.yaml, env: env)
    }

    /// A plaintext push signed with `token`.
    func signedQuery(token: String = "AAAAA", timestamp: String = "1714037059", nonce: String = "486452656") -> String {
        "signature=\(PushSignature.compute(token: token, timestamp: timestamp, nonce: nonce))&timestamp=\(timestamp)&nonce=\(nonce)"
    }

    func post(_ h: ServiceHarness, query: String, body: String) async throws -> (Int, String) {
        try await h.withClient { c in
            try await c.execute(uri: "/wechat/push?\(query)", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: body)) {
                (Int($0.status.code), String(buffer: $0.body))
            }
        }
    }

    @Test("the GET server check echoes echostr for the official vector and refuses a bad signature")
    func serverCheck() async throws {
        let h = try harness()
        defer { h.remove() }
        try await h.withClient { c in
            let good = try await c.execute(
                uri: "/wechat/push?signature=f464b24fc39322e44b38aa78f5edd27bd1441696&echostr=4375120948345356249&timestamp=1714036504&nonce=1514711492",
                method: .get) { (Int($0.status.code), String(buffer: $0.body), $0.headers[.contentType]) }
            #expect(good.0 == 200)
            #expect(good.1 == "4375120948345356249")
            #expect(good.2?.hasPrefix("text/plain") == true)
            let bad = try await c.execute(
                uri: "/wechat/push?signature=0464b24fc39322e44b38aa78f5edd27bd1441696&echostr=1&timestamp=1714036504&nonce=1514711492",
                method: .get) { Int($0.status.code) }
            #expect(bad == 401)
        }
    }

    @Test("with no push token both GET and POST answer 503")
    func notConfigured() async throws {
        let h = try harness(token: "", aes: false)
        defer { h.remove() }
        #expect(try await post(h, query: signedQuery(), body: "{}").0 == 503)
        let get = try await h.withClient { c in try await c.execute(uri: "/wechat/push?echostr=1", method: .get) { Int($0.status.code) } }
        #expect(get == 503)
    }

    @Test("a popup accept grants one credit, and the same push re-sent grants nothing more")
    func popupOnce() async throws {
        let h = try harness()
        defer { h.remove() }
        let body = try TestSupport.fixtureText("wechat/popup-object.json")
        for _ in 0..<3 {
            let r = try await post(h, query: signedQuery(), body: body)
            #expect(r == (200, "success"))
        }
        #expect(try h.store.credit(openid: "o8dH44seYM3qeBzHlrmwI0sAtSfI", templateID: Self.template)?.count == 1)
    }

    @Test("a reject in a change event sets the credits to zero")
    func changeReject() async throws {
        let h = try harness()
        defer { h.remove() }
        try h.store.applyCredit(openid: "o7esq5OI1Uej6Xixw1lA2H7XDVbc", templateID: "BEwX0BOT3MqK3Uc5oTU3CGBqzjpndk2jzUf7VfExd8", change: .add(3), eventKey: nil, now: t0)
        let r = try await post(h, query: signedQuery(), body: try TestSupport.fixtureText("wechat/change.json"))
        #expect(r.0 == 200)
        #expect(try h.store.credit(openid: "o7esq5OI1Uej6Xixw1lA2H7XDVbc", templateID: "BEwX0BOT3MqK3Uc5oTU3CGBqzjpndk2jzUf7VfExd8")?.count == 0)
    }

    @Test("the official safe-mode push decrypts and is answered success; tampering gets 401, garbage 400")
    func safeMode() async throws {
        let h = try harness()
        defer { h.remove() }
        let query = try TestSupport.fixtureText("wechat/safe-mode-official.query").trimmingCharacters(in: .whitespacesAndNewlines)
        let body = try TestSupport.fixtureText("wechat/safe-mode-official.json")
        #expect(try await post(h, query: query, body: body) == (200, "success"))
        let badSig = query.replacingOccurrences(of: "msg_signature=046e", with: "msg_signature=146e")
        #expect(try await post(h, query: badSig, body: body).0 == 401)
        #expect(try await post(h, query: signedQuery(), body: "{not json").0 == 400)
        let doctype = try TestSupport.fixtureText("wechat/doctype.xml")
        let refused = try await post(h, query: signedQuery(), body: doctype)
        #expect(refused.0 == 400)
        #expect(refused.1.hasPrefix(#"{"error":""#))
    }

    @Test("a push encrypted for another AppID is refused with 401")
    func foreignAppID() async throws {
        let h = try ServiceHarness(yaml: Self.yaml, env: [
            "ROUNDUP_WECHAT_PUSH_TOKEN": "AAAAA", "ROUNDUP_WECHAT_APP_ID": "wx0000000000000000",
            "ROUNDUP_WECHAT_ENCODING_AES_KEY": String(repeating: "A", count: 43),
        ])
        defer { h.remove() }
        let query = try TestSupport.fixtureText("wechat/safe-mode-official.query").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try await post(h, query: query, body: try TestSupport.fixtureText("wechat/safe-mode-official.json")).0 == 401)
    }
}
