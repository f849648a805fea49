import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import Roundup

/// `/admin/*` over loopback HTTP.
@Suite("Admin API")
struct AdminEndpointTests {
    static let token = "admin-secret-token"
    static let yaml = """
        templates:
          - id: T1
            fields: { thing1: "{{count}}条新消息" }
        digest:
          profiles:
            clinic: { window: 2m }

        """

    func harness(token: String = AdminEndpointTests.token) throws -> ServiceHarness {
        try ServiceHarness(yaml: Self.yaml, env: ["ROUNDUP_SERVER_ADMIN_TOKEN": token])
    }

    func call(_ c: any TestClientProtocol, _ method: HTTPRequest.Method, _ path: String, _ body: String? = nil,
              auth: String? = "Bearer \(AdminEndpointTests.token)", type: String = "application/json") async throws -> (Int, String) {
        var headers: HTTPFields = [.contentType: type]
        if let auth { headers[.authorization] = auth }
        return try await c.execute(uri: path, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) }) {
            (Int($0.status.code), String(buffer: $0.body))
        }
    }

    func object(_ text: String) throws -> [String: Any] { try parseJSON(text) }

    @Test("no admin token configured: 403; a wrong or missing bearer token: 401")
    func auth() async throws {
        let off = try harness(token: "")
        defer { off.remove() }
        try await off.withClient { (c: any TestClientProtocol) async throws in
            #expect(try await call(c, .get, "/admin/users/p1").0 == 403)
        }
        let h = try harness()
        defer { h.remove() }
        try await h.withClient { (c: any TestClientProtocol) async throws in
            #expect(try await call(c, .get, "/admin/users/p1", auth: nil).0 == 401)
            #expect(try await call(c, .get, "/admin/users/p1", auth: "Bearer wrong").0 == 401)
            #expect(try await call(c, .get, "/admin/users/p1", auth: "Basic \(AdminEndpointTests.token)").0 == 401)
        }
    }

    @Test("PUT merges a binding, GET shows it with presence, credits and digest; unknown users are 404")
    func putAndGet() async throws {
        let h = try harness()
        defer { h.remove() }
        try await h.withClient { (c: any TestClientProtocol) async throws in
            #expect(try await call(c, .get, "/admin/users/parent_1").0 == 404)
            let put = try await call(c, .put, "/admin/users/parent_1", #"{"openid":"oP1","name":"王芳"}"#)
            #expect(put.0 == 200)
            let merged = try await call(c, .put, "/admin/users/parent_1", #"{"profile":"clinic"}"#)
            let user = try object(merged.1)
            #expect(user["openid"] as? String == "oP1")
            #expect(user["name"] as? String == "王芳")
            #expect(user["profile"] as? String == "clinic")
            #expect(user["presence"] as? String == "unknown")
            #expect(user["digest"] is NSNull)
            #expect((user["credits"] as? [String: Any])?.isEmpty == true)
            let cleared = try object(try await call(c, .put, "/admin/users/parent_1", #"{"name":null}"#).1)
            #expect(cleared["name"] is NSNull)
            #expect(cleared["openid"] as? String == "oP1")
            // A teacher has only a name; ids are percent-decoded once.
            #expect(try await call(c, .put, "/admin/users/teacher%E6%9D%8E", #"{"name":"李老师"}"#).0 == 200)
            #expect(try h.store.user("teacher李")?.name == "李老师")
            // The id follows the same rules as `users bind`: no spaces, at most 32 bytes.
            #expect(try await call(c, .put, "/admin/users/teacher%20li", #"{"name":"李老师"}"#).0 == 422)
            #expect(try await call(c, .put, "/admin/users/\(String(repeating: "u", count: 33))", #"{"name":"x"}"#).0 == 422)
        }
    }

    @Test("PUT refuses an openid bound elsewhere (409), wrong types or an unknown profile (422), bad JSON (400), non-JSON (415)")
    func putErrors() async throws {
        let h = try harness()
        defer { h.remove() }
        try await h.withClient { (c: any TestClientProtocol) async throws in
            #expect(try await call(c, .put, "/admin/users/a", #"{"openid":"o1"}"#).0 == 200)
            let conflict = try await call(c, .put, "/admin/users/b", #"{"openid":"o1"}"#)
            #expect(conflict.0 == 409)
            #expect(conflict.1.hasPrefix(#"{"error":""#))
            let wrongType = try await call(c, .put, "/admin/users/b", #"{"openid":42}"#)
            #expect(wrongType.0 == 422)
            #expect(try object(wrongType.1)["error"] as? String == "openid must be a string or null")
            let unknown = try await call(c, .put, "/admin/users/b", #"{"name":"x","nickname":"x"}"#)
            #expect(unknown.0 == 422)
            #expect(try object(unknown.1)["error"] as? String == "nickname is not a known field (fields: openid, name, profile)")
            #expect(try h.store.user("b") == nil)
            #expect(try await call(c, .put, "/admin/users/b", #"{"profile":"vip"}"#).0 == 422)
            #expect(try await call(c, .put, "/admin/users/b", #"{"nickname":"x"}"#).0 == 422)
            #expect(try await call(c, .put, "/admin/users/b", "{oops").0 == 400)
            #expect(try await call(c, .put, "/admin/users/b", "[1]").0 == 400)
            #expect(try await call(c, .put, "/admin/users/b", #"{"name":"x"}"#, type: "text/plain").0 == 415)
        }
    }

    @Test("PUT refuses the openids users bind and users import refuse (422), binding nothing", arguments: OpenidCases.refused)
    func putRefusesOpenid(_ bad: OpenidCases.Refused) async throws {
        let h = try harness()
        defer { h.remove() }
        try await h.withClient { (c: any TestClientProtocol) async throws in
            let body = String(decoding: try JSONSerialization.data(withJSONObject: ["openid": bad.openid, "name": "王芳"]), as: UTF8.self)
            let refused = try await call(c, .put, "/admin/users/parent_1", body)
            #expect(refused.0 == 422)
            #expect((try object(refused.1)["error"] as? String)?.contains("is not an openid") == true)
        }
        #expect(try h.store.user("parent_1") == nil)
    }

    @Test("PUT binds a 64-character openid of every allowed kind; an empty openid is refused, null clears it")
    func putLongestOpenid() async throws {
        let h = try harness()
        defer { h.remove() }
        try await h.withClient { (c: any TestClientProtocol) async throws in
            let bound = try await call(c, .put, "/admin/users/parent_1", #"{"openid":"\#(OpenidCases.longest)"}"#)
            #expect(bound.0 == 200)
            #expect(try object(bound.1)["openid"] as? String == OpenidCases.longest)
            #expect(try await call(c, .put, "/admin/users/parent_1", #"{"openid":""}"#).0 == 422)
            #expect(try await call(c, .put, "/admin/users/parent_1", #"{"openid":null}"#).0 == 200)
        }
        #expect(try h.store.user("parent_1")?.openid == nil)
    }

    @Test("DELETE unbinds (204) and keeps pending messages; ?erase=true removes everything about the user")
    func delete() async throws {
        let h = try harness()
        defer { h.remove() }
        try await h.withClient { (c: any TestClientProtocol) async throws in
            #expect(try await call(c, .put, "/admin/users/p", #"{"openid":"oP","name":"N"}"#).0 == 200)
            try await c.post(h.callbackURI("C2C.CallbackAfterSendMsg"), Callbacks.c2c(from: "t", to: "p", key: "k1"))
            #expect(try await call(c, .delete, "/admin/users/p").0 == 204)
            #expect(try h.store.user("p")?.openid == nil)
            #expect(try h.store.messages(recipient: "p").count == 1)
            #expect(try await call(c, .delete, "/admin/users/p?erase=true").0 == 204)
            #expect(try h.store.messages(recipient: "p").isEmpty)
            #expect(try h.store.digests(for: "p").isEmpty)
            #expect(try await call(c, .get, "/admin/users/p").0 == 404)
            #expect(try await call(c, .delete, "/admin/users/nobody").0 == 404)
        }
    }

    @Test("POST /admin/credits adds up, applies a repeated idempotency key once, and refuses bad counts, templates, types and keys")
    func credits() async throws {
        let h = try harness()
        defer { h.remove() }
        try await h.withClient { (c: any TestClientProtocol) async throws in
            let first = try await call(c, .post, "/admin/credits", #"{"openid":"oP","template_id":"T1","count":2,"idempotency_key":"a"}"#)
            #expect(first.0 == 200)
            #expect(try object(first.1)["credits"] as? Int == 2)
            let again = try await call(c, .post, "/admin/credits", #"{"openid":"oP","template_id":"T1","count":2,"idempotency_key":"a"}"#)
            #expect(try object(again.1)["credits"] as? Int == 2)
            let more = try await call(c, .post, "/admin/credits", #"{"openid":"oP","template_id":"T1","count":1,"idempotency_key":"b"}"#)
            #expect(try object(more.1)["credits"] as? Int == 3)
            for bad in [#"{"openid":"oP","template_id":"T1","count":0}"#, #"{"openid":"oP","template_id":"T1","count":101}"#,
                        #"{"openid":"oP","template_id":"T1","count":1.5}"#, #"{"openid":"oP","template_id":"T1","count":true}"#,
                        #"{"openid":"oP","template_id":"NOPE","count":1}"#, #"{"template_id":"T1","count":1}"#,
                        #"{"openid":"oP","template_id":"T1","count":"1"}"#, #"{"openid":"oP","template_id":"T1","count":null}"#,
                        #"{"openid":"","template_id":"T1","count":1}"#, #"{"openid":"oP","template_id":"T1"}"#,
                        #"{"openid":"oP","template_id":"T1","count":1,"idempotency_key":""}"#,
                        #"{"openid":"oP","template_id":"T1","count":1,"idempotency_key":null}"#,
                        #"{"openid":"oP","template_id":"T1","count":1,"idempotency_key":7}"#] {
                #expect(try await call(c, .post, "/admin/credits", bad).0 == 422, "\(bad)")
            }
            // A whole number written with a fraction counts, and members the API does not know are ignored.
            let whole = try await call(c, .post, "/admin/credits", #"{"openid":"oP","template_id":"T1","count":2.0,"idempotency_key":"c","note":"x"}"#)
            #expect(whole.0 == 200)
            #expect(try object(whole.1)["credits"] as? Int == 5)
        }
        #expect(try h.store.credit(openid: "oP", templateID: "T1")?.count == 5)
    }
}

@Suite("Admin API and the engine")
struct AdminEngineTests {
    @Test("a profile set through PUT re-times the user's open digest")
    func profileRetimes() async throws {
        let h = try ServiceHarness(yaml: AdminEndpointTests.yaml, env: ["ROUNDUP_SERVER_ADMIN_TOKEN": AdminEndpointTests.token])
        defer { h.remove() }
        try await h.withClient { c in
            try await c.post(h.callbackURI("C2C.CallbackAfterSendMsg"), Callbacks.c2c(from: "t", to: "p", key: "k1"))
            #expect(try h.store.activeDigest(for: "p")?.dueAt == Timestamp(ServiceHarness.start) + 600_000)
            let r = try await c.execute(uri: "/admin/users/p", method: .put,
                                        headers: [.contentType: "application/json", .authorization: "Bearer \(AdminEndpointTests.token)"],
                                        body: ByteBuffer(string: #"{"profile":"clinic"}"#)) { Int($0.status.code) }
            #expect(r == 200)
        }
        #expect(try h.store.activeDigest(for: "p")?.dueAt == Timestamp(ServiceHarness.start) + 120_000)
    }
}
