import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import Roundup

/// Every endpoint that reads a JSON body reads it strictly: each way a lenient reader would
/// bend the grammar is answered 400 with a JSON `{"error": …}` body, on every endpoint alike.
@Suite("Strict JSON on every endpoint")
struct StrictJSONEndpointTests {
    static let adminToken = "admin-secret-token"
    static let pushToken = "AAAAA"
    static let appID = "wxba5fad812f8e6fb9"
    static let aesKey = String(repeating: "A", count: 43)
    static let yaml = """
        templates:
          - id: T1
            fields: { thing1: "{{count}}条新消息" }
        digest:
          profiles:
            clinic: { window: 2m }

        """

    /// A runtime with the admin API, message push (plaintext and safe mode) and callbacks configured.
    static func harness() throws -> ServiceHarness {
        try ServiceHarness(yaml: yaml, env: [
            "ROUNDUP_SERVER_ADMIN_TOKEN": adminToken, "ROUNDUP_WECHAT_PUSH_TOKEN": pushToken,
            "ROUNDUP_WECHAT_APP_ID": appID, "ROUNDUP_WECHAT_ENCODING_AES_KEY": aesKey,
        ])
    }

    /// An endpoint that reads JSON, with the members of a body it accepts.
    struct Endpoint: Sendable, CustomTestStringConvertible {
        let testDescription: String
        /// The members of a well-formed body, as JSON text (`"key":value`).
        let members: [String]
        /// Whether the JSON document travels inside `Encrypt` (safe mode) rather than as the body.
        var encrypted = false
        let send: @Sendable (ServiceHarness, any TestClientProtocol, [UInt8]) async throws -> (status: Int, body: String, type: String?)

        /// The well-formed body.
        var body: String { "{" + members.joined(separator: ",") + "}" }
    }

    /// One way of bending RFC 8259, applied to a well-formed object body.
    struct Flaw: Sendable, CustomTestStringConvertible {
        let testDescription: String
        let apply: @Sendable ([String]) -> [UInt8]

        /// A flaw that rewrites the document's text.
        init(_ name: String, _ text: @escaping @Sendable ([String]) -> String) {
            testDescription = name
            apply = { Array(text($0).utf8) }
        }

        /// A flaw that rewrites the document's bytes.
        init(bytes name: String, _ bytes: @escaping @Sendable ([String]) -> [UInt8]) {
            testDescription = name
            apply = bytes
        }
    }

    static func object(_ members: [String]) -> String { "{" + members.joined(separator: ",") + "}" }

    static let flaws: [Flaw] = [
        Flaw("a trailing comma in an object") { object($0).dropLast() + ",}" },
        Flaw("a trailing comma in an array") { object($0 + [#""zz":[1,2,]"#]) },
        Flaw("a // comment") { "{ // a note\n" + object($0).dropFirst() },
        Flaw("a /* */ comment") { "{/* a note */" + object($0).dropFirst() },
        Flaw("NaN") { object($0 + [#""zz":NaN"#]) },
        Flaw("Infinity") { object($0 + [#""zz":Infinity"#]) },
        Flaw("a lone high surrogate escape") { object($0 + [#""zz":"a\ud800b""#]) },
        Flaw("a lone low surrogate escape") { object($0 + [#""zz":"a\udc00b""#]) },
        Flaw("a duplicate key") { object($0 + [$0[0]]) },
        Flaw(bytes: "a UTF-8 byte-order mark") { [0xEF, 0xBB, 0xBF] + Array(object($0).utf8) },
        Flaw("a second top-level value") { object($0) + "\n" + object($0) },
    ]

    /// Sends `body` as the JSON document of a message push: as the body (plaintext mode) or,
    /// in safe mode, encrypted inside a well-formed outer body with correct signatures.
    static func push(_ c: any TestClientProtocol, _ body: [UInt8], encrypted: Bool) async throws -> (status: Int, body: String, type: String?) {
        let timestamp = "1714112445", nonce = "415670741"
        var query = "signature=\(PushSignature.compute(token: pushToken, timestamp: timestamp, nonce: nonce))&timestamp=\(timestamp)&nonce=\(nonce)"
        var sent = body
        if encrypted {
            let crypto = try PushCrypto(encodingAESKey: aesKey, appID: appID)
            let encrypt = crypto.encrypt(Data(body))
            query += "&encrypt_type=aes&msg_signature=\(PushSignature.compute(token: pushToken, timestamp: timestamp, nonce: nonce, encrypt: encrypt))"
            sent = Array(#"{"ToUserName":"gh_97417a04a28d","Encrypt":"\#(encrypt)"}"#.utf8)
        }
        return try await c.execute(
            uri: "/wechat/push?\(query)", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(bytes: sent)
        ) { (Int($0.status.code), String(buffer: $0.body), $0.headers[.contentType]) }
    }

    /// Sends `body` to an admin endpoint with the bearer token.
    static func admin(_ c: any TestClientProtocol, _ method: HTTPRequest.Method, _ path: String, _ body: [UInt8]) async throws
        -> (status: Int, body: String, type: String?)
    {
        try await c.execute(
            uri: path, method: method,
            headers: [.contentType: "application/json", .authorization: "Bearer \(adminToken)"], body: ByteBuffer(bytes: body)
        ) { (Int($0.status.code), String(buffer: $0.body), $0.headers[.contentType]) }
    }

    static let popup = [
        #""ToUserName":"gh_97417a04a28d""#, #""FromUserName":"oP1""#, #""CreateTime":1714112445"#, #""MsgType":"event""#,
        #""Event":"subscribe_msg_popup_event""#, #""List":[{"TemplateId":"T1","SubscribeStatusString":"accept"}]"#,
    ]

    static let endpoints: [Endpoint] = [
        Endpoint(
            testDescription: "POST /im/callback",
            members: [
                #""CallbackCommand":"C2C.CallbackAfterSendMsg""#, #""From_Account":"t""#, #""To_Account":"p""#, #""MsgKey":"k1""#,
                #""MsgSeq":1"#, #""MsgRandom":2"#, #""MsgTime":1741075200"#, #""SendMsgResult":0"#, #""OnlineOnlyFlag":0"#,
                #""MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"请明天带作业本"}}]"#,
            ],
            send: { h, c, body in
                try await c.execute(
                    uri: h.callbackURI("C2C.CallbackAfterSendMsg"), method: .post, headers: [.contentType: "application/json"],
                    body: ByteBuffer(bytes: body)
                ) { (Int($0.status.code), String(buffer: $0.body), $0.headers[.contentType]) }
            }),
        Endpoint(
            testDescription: "POST /wechat/push (plaintext)", members: popup,
            send: { _, c, body in try await push(c, body, encrypted: false) }),
        Endpoint(
            testDescription: "POST /wechat/push (safe mode, the decrypted document)", members: popup, encrypted: true,
            send: { _, c, body in try await push(c, body, encrypted: true) }),
        Endpoint(
            testDescription: "PUT /admin/users/{id}",
            members: [#""openid":"oP1""#, #""name":"王芳""#, #""profile":"clinic""#],
            send: { _, c, body in try await admin(c, .put, "/admin/users/parent_1", body) }),
        Endpoint(
            testDescription: "POST /admin/credits",
            members: [#""openid":"oP1""#, #""template_id":"T1""#, #""count":2"#, #""idempotency_key":"a""#],
            send: { _, c, body in try await admin(c, .post, "/admin/credits", body) }),
    ]

    @Test("each endpoint accepts its well-formed body", arguments: endpoints)
    func wellFormed(_ endpoint: Endpoint) async throws {
        let h = try Self.harness()
        defer { h.remove() }
        let answer = try await h.withClient { c in try await endpoint.send(h, c, Array(endpoint.body.utf8)) }
        #expect(answer.status == 200, "\(answer.body)")
    }

    @Test("a body that bends RFC 8259 is answered 400 with a JSON error", arguments: endpoints, flaws)
    func malformed(_ endpoint: Endpoint, _ flaw: Flaw) async throws {
        let h = try Self.harness()
        defer { h.remove() }
        let body = flaw.apply(endpoint.members)
        let answer = try await h.withClient { c in try await endpoint.send(h, c, body) }
        #expect(answer.status == 400, "\(answer.body)")
        #expect(answer.type?.hasPrefix("application/json") == true)
        let error = try parseJSON(answer.body)
        #expect(error.keys.sorted() == ["error"])
        #expect((error["error"] as? String)?.isEmpty == false)
    }

    @Test("safe mode: an outer body that bends RFC 8259 is answered 400 before anything is decrypted", arguments: flaws)
    func malformedOuter(_ flaw: Flaw) async throws {
        let h = try Self.harness()
        defer { h.remove() }
        let timestamp = "1714112445", nonce = "415670741"
        let crypto = try PushCrypto(encodingAESKey: Self.aesKey, appID: Self.appID)
        let encrypt = crypto.encrypt(Data(Self.object(Self.popup).utf8))
        let outer = flaw.apply([#""Encrypt":"\#(encrypt)""#, #""ToUserName":"gh_97417a04a28d""#])
        let query = "signature=\(PushSignature.compute(token: Self.pushToken, timestamp: timestamp, nonce: nonce))&timestamp=\(timestamp)"
            + "&nonce=\(nonce)&encrypt_type=aes&msg_signature=\(PushSignature.compute(token: Self.pushToken, timestamp: timestamp, nonce: nonce, encrypt: encrypt))"
        let answer = try await h.withClient { c in
            try await c.execute(uri: "/wechat/push?\(query)", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(bytes: outer)) {
                (Int($0.status.code), String(buffer: $0.body))
            }
        }
        #expect(answer.0 == 400, "\(answer.1)")
        #expect((try parseJSON(answer.1)["error"] as? String)?.isEmpty == false)
        #expect(try h.store.credit(openid: "oP1", templateID: "T1") == nil)
    }
}
