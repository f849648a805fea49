import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
import Yams

@testable import Roundup

/// `docs/openapi.yaml` describes every route the router serves, and the bodies it documents are
/// the ones the real service answers.
@Suite("docs/openapi.yaml matches the router and its answers")
struct OpenAPIDocTests {
    static let adminToken = "docs-admin-token"
    static let pushToken = "docs-push-token"
    static let methods = ["get", "put", "post", "delete", "patch", "head", "options"]

    static func document() throws -> [String: Any] {
        let text = try String(contentsOf: TestSupport.packageRoot.appendingPathComponent("docs/openapi.yaml"), encoding: .utf8)
        return try #require(try Yams.load(yaml: text) as? [String: Any])
    }

    /// `/admin/users/{im_user_id}` and `/admin/users/{id}` are the same route.
    static func normalize(_ path: String) -> String {
        path.replacingOccurrences(of: #"\{[^}]*\}"#, with: "{}", options: .regularExpression)
    }

    /// A service with admin and push tokens and one template.
    static func harness(adminToken: String = adminToken, pushToken: String = pushToken) throws -> ServiceHarness {
        try ServiceHarness(yaml: """
            templates:
              - id: T1
                fields: { thing1: "{{count}}条新消息" }

            """, env: ["ROUNDUP_SERVER_ADMIN_TOKEN": adminToken, "ROUNDUP_WECHAT_PUSH_TOKEN": pushToken])
    }

    @Test("the document is OpenAPI 3.1 and covers /admin, /im/callback, /wechat/push and /healthz")
    func shape() throws {
        let doc = try Self.document()
        #expect((doc["openapi"] as? String)?.hasPrefix("3.1") == true)
        #expect((doc["info"] as? [String: Any])?["version"] as? String == RoundupVersion.current)
        let paths = try #require(doc["paths"] as? [String: Any])
        for path in ["/im/callback", "/wechat/push", "/healthz", "/admin/credits", "/admin/digests"] {
            #expect(paths[path] != nil, "\(path) is not described")
        }
    }

    @Test("every route the router serves is described, and every described operation is served")
    func routes() throws {
        let h = try Self.harness()
        defer { h.remove() }
        let served = Set(h.runtime.buildRouter().routes.map { "\($0.method.rawValue.lowercased()) \(Self.normalize($0.path.description))" })
        #expect(served.count >= 11, "\(served)")
        let paths = try #require(try Self.document()["paths"] as? [String: Any])
        var described: Set<String> = []
        for (path, item) in paths {
            for method in Self.methods where (item as? [String: Any])?[method] != nil {
                described.insert("\(method) \(Self.normalize(path))")
            }
        }
        for route in served.sorted() where !described.contains(route) {
            Issue.record("the router serves \(route), which docs/openapi.yaml does not describe")
        }
        for operation in described.sorted() where !served.contains(operation) {
            Issue.record("docs/openapi.yaml describes \(operation), which the router does not serve")
        }
    }

    /// A request to make, and the status the real service is known to answer it with.
    struct Call: CustomStringConvertible, Sendable {
        let method: HTTPRequest.Method
        let uri: String
        var body: String?
        var contentType = "application/json"
        var auth: String? = "Bearer \(OpenAPIDocTests.adminToken)"
        let status: Int
        var description: String { "\(method) \(uri) → \(status)" }
    }

    /// Makes each call and checks that its status is documented for that operation and that the
    /// body has exactly the documented shape.
    func check(_ calls: [Call], on h: ServiceHarness) async throws {
        try await h.withClient { (c: any TestClientProtocol) async throws in
            let doc = try Self.document()
            let validator = SchemaValidator(document: doc)
            let paths = try #require(doc["paths"] as? [String: Any])
            for call in calls {
                var headers: HTTPFields = [.contentType: call.contentType]
                if let auth = call.auth { headers[.authorization] = auth }
                let (status, type, body) = try await c.execute(
                    uri: call.uri, method: call.method, headers: headers, body: call.body.map { ByteBuffer(string: $0) }
                ) { (Int($0.status.code), $0.headers[.contentType] ?? "", String(buffer: $0.body)) }
                #expect(status == call.status, "\(call): got \(status) \(body)")
                let path = String(call.uri.prefix { $0 != "?" })
                let template = paths.keys.first { Self.matches(path, template: $0) }
                let operation = template.flatMap { (paths[$0] as? [String: Any])?[call.method.rawValue.lowercased()] as? [String: Any] }
                let documented: [String: Any]
                if let operation {
                    let responses = operation["responses"] as? [String: Any] ?? [:]
                    guard let response = responses[String(status)] as? [String: Any] else {
                        Issue.record("\(call): status \(status) is not documented for this operation")
                        continue
                    }
                    documented = validator.resolve(response)
                } else {
                    // No such route: the answer is the common error body.
                    documented = ["content": ["application/json": ["schema": ["$ref": "#/components/schemas/Error"]]]]
                }
                let content = documented["content"] as? [String: Any] ?? [:]
                if content.isEmpty {
                    #expect(body.isEmpty, "\(call): documented without a body, got \(body)")
                    continue
                }
                guard let (mediaType, media) = content.first(where: { type.hasPrefix($0.key) }) else {
                    Issue.record("\(call): Content-Type \(type) is not documented (\(content.keys.sorted()))")
                    continue
                }
                let schema = validator.resolve((media as? [String: Any])?["schema"] as? [String: Any] ?? [:])
                let value: Any
                if mediaType == "application/json" {
                    guard let parsed = try? JSONSerialization.jsonObject(with: Data(body.utf8), options: [.fragmentsAllowed]) else {
                        Issue.record("\(call): the body is not JSON: \(body)")
                        continue
                    }
                    value = parsed
                } else {
                    value = body
                }
                for problem in validator.errors(value, schema) {
                    Issue.record("\(call): \(problem) in \(body)")
                }
            }
        }
    }

    static func matches(_ path: String, template: String) -> Bool {
        let a = path.split(separator: "/", omittingEmptySubsequences: false)
        let b = template.split(separator: "/", omittingEmptySubsequences: false)
        return a.count == b.count && zip(a, b).allSatisfy { $1.hasPrefix("{") || $0 == $1 }
    }

    @Test("error answers of every endpoint have exactly the documented {\"error\": string} shape")
    func errorBodies() async throws {
        let h = try Self.harness()
        defer { h.remove() }
        let ts = "1741075200", nonce = "n1"
        let sig = PushSignature.compute(token: Self.pushToken, timestamp: ts, nonce: nonce)
        let big = String(repeating: "x", count: 1_048_577)
        try await check([
            Call(method: .get, uri: "/admin/users/nobody", auth: nil, status: 401),
            Call(method: .get, uri: "/admin/users/nobody", auth: "Bearer wrong", status: 401),
            Call(method: .get, uri: "/admin/users/nobody", status: 404),
            Call(method: .put, uri: "/admin/users/p1", body: #"{"name":"王芳"}"#, contentType: "text/plain", status: 415),
            Call(method: .put, uri: "/admin/users/p1", body: #"{"name":"#, status: 400),
            Call(method: .put, uri: "/admin/users/p1", body: "[1]", status: 400),
            Call(method: .put, uri: "/admin/users/p1", body: #"{"name":5}"#, status: 422),
            Call(method: .put, uri: "/admin/users/p1", body: #"{"colour":"red"}"#, status: 422),
            Call(method: .put, uri: "/admin/users/p1", body: #"{"profile":"vip"}"#, status: 422),
            Call(method: .put, uri: "/admin/users/p1", body: #"{"openid":"oP1"}"#, status: 200),
            Call(method: .put, uri: "/admin/users/p2", body: #"{"openid":"oP1"}"#, status: 409),
            Call(method: .delete, uri: "/admin/users/nobody", status: 404),
            Call(method: .post, uri: "/admin/credits", body: #"{"openid":"oP1","template_id":"T1","count":0}"#, status: 422),
            Call(method: .post, uri: "/admin/credits", body: #"{"openid":"oP1","template_id":"T9","count":1}"#, status: 422),
            Call(method: .post, uri: "/admin/credits", body: "not json", status: 400),
            Call(method: .get, uri: "/admin/digests?state=bogus", status: 400),
            Call(method: .get, uri: "/admin/digests?limit=0", status: 400),
            Call(method: .post, uri: "/admin/digests/nobody/flush", status: 404),
            Call(method: .post, uri: h.callbackURI("C2C.CallbackAfterSendMsg", appID: 1), body: "{}", auth: nil, status: 401),
            Call(method: .post, uri: h.callbackURI("C2C.CallbackAfterSendMsg", sign: false), body: "{}", auth: nil, status: 401),
            Call(method: .post, uri: h.callbackURI("C2C.CallbackAfterSendMsg"), body: "{nope", auth: nil, status: 400),
            Call(method: .get, uri: "/wechat/push?signature=bad&timestamp=\(ts)&nonce=\(nonce)&echostr=e", auth: nil, status: 401),
            Call(method: .post, uri: "/wechat/push?timestamp=\(ts)&nonce=\(nonce)", body: "{}", auth: nil, status: 401),
            Call(method: .post, uri: "/wechat/push?signature=\(sig)&timestamp=\(ts)&nonce=\(nonce)", body: "{nope", auth: nil, status: 400),
            Call(method: .get, uri: "/no/such/endpoint", auth: nil, status: 404),
            Call(method: .patch, uri: "/healthz", auth: nil, status: 404),
            // Last: the server may close the connection after refusing a body this large.
            Call(method: .put, uri: "/admin/users/p3", body: big, status: 413),
        ], on: h)

        let off = try Self.harness(adminToken: "", pushToken: "")
        defer { off.remove() }
        try await check([
            Call(method: .get, uri: "/admin/users/p1", status: 403),
            Call(method: .post, uri: "/admin/credits", body: "{}", status: 403),
            Call(method: .get, uri: "/wechat/push?signature=x&timestamp=1&nonce=2&echostr=e", auth: nil, status: 503),
            Call(method: .post, uri: "/wechat/push?signature=x&timestamp=1&nonce=2", body: "{}", auth: nil, status: 503),
        ], on: off)
    }

    @Test("successful answers have the documented shapes")
    func successBodies() async throws {
        let h = try Self.harness()
        defer { h.remove() }
        let ts = "1741075200", nonce = "n1"
        let sig = PushSignature.compute(token: Self.pushToken, timestamp: ts, nonce: nonce)
        let message = String(data: try JSONSerialization.data(withJSONObject: Callbacks.c2c(from: "teacher", to: "p1", key: "k1")), encoding: .utf8)!
        let popup = try TestSupport.fixtureText("wechat/popup-object.json")
        try await check([
            Call(method: .get, uri: "/healthz", auth: nil, status: 200),
            Call(method: .get, uri: "/metrics", auth: nil, status: 200),
            Call(method: .post, uri: h.callbackURI("C2C.CallbackAfterSendMsg"), body: message, auth: nil, status: 200),
            Call(method: .post, uri: h.callbackURI("Some.UnknownCommand"), body: #"{"CallbackCommand":"Some.UnknownCommand"}"#, auth: nil, status: 200),
            Call(method: .get, uri: "/wechat/push?signature=\(sig)&timestamp=\(ts)&nonce=\(nonce)&echostr=hello", auth: nil, status: 200),
            Call(method: .post, uri: "/wechat/push?signature=\(sig)&timestamp=\(ts)&nonce=\(nonce)", body: popup, auth: nil, status: 200),
            Call(method: .put, uri: "/admin/users/p1", body: #"{"openid":"oP1","name":"王芳"}"#, status: 200),
            Call(method: .put, uri: "/admin/users/teacher", body: #"{"name":"张老师","openid":null}"#, status: 200),
            Call(method: .post, uri: "/admin/credits", body: #"{"openid":"oP1","template_id":"T1","count":2,"idempotency_key":"k"}"#, status: 200),
            Call(method: .get, uri: "/admin/users/p1", status: 200),
            Call(method: .get, uri: "/admin/digests", status: 200),
            Call(method: .get, uri: "/admin/digests?state=open&limit=5", status: 200),
            Call(method: .post, uri: "/admin/digests/p1/flush?force=true", status: 202),
            Call(method: .delete, uri: "/admin/users/teacher", status: 204),
        ], on: h)
    }
}

/// Checks a JSON value against the subset of JSON Schema that docs/openapi.yaml uses: `$ref`,
/// `type` (one or a list), `required`, `properties`, `additionalProperties`, `items`, `enum`,
/// `const` and `oneOf`.
struct SchemaValidator {
    let document: [String: Any]

    /// Follows `$ref` (`#/components/...`) until a schema or response without one.
    func resolve(_ object: [String: Any]) -> [String: Any] {
        var current = object
        var hops = 0
        while let ref = current["$ref"] as? String, ref.hasPrefix("#/"), hops < 10 {
            var node: Any = document
            for part in ref.dropFirst(2).split(separator: "/") {
                node = (node as? [String: Any])?[String(part)] as Any
            }
            current = node as? [String: Any] ?? [:]
            hops += 1
        }
        return current
    }

    func errors(_ value: Any, _ schemaIn: [String: Any], at path: String = "$") -> [String] {
        let schema = resolve(schemaIn)
        var out: [String] = []
        if let options = schema["oneOf"] as? [[String: Any]] {
            let matching = options.filter { errors(value, $0, at: path).isEmpty }
            if matching.count != 1 { out.append("\(path) matches \(matching.count) of the oneOf schemas") }
        }
        if let type = schema["type"] {
            let types = (type as? [String]) ?? [(type as? String) ?? ""]
            if !types.contains(where: { Self.isType(value, $0) }) {
                return out + ["\(path) is not \(types.joined(separator: " or "))"]
            }
        }
        if let constant = schema["const"], !Self.equal(value, constant) {
            out.append("\(path) is not \(constant)")
        }
        if let options = schema["enum"] as? [Any], !options.contains(where: { Self.equal(value, $0) }) {
            out.append("\(path) = \(value) is not one of \(options)")
        }
        if let object = value as? [String: Any] {
            let properties = schema["properties"] as? [String: Any] ?? [:]
            for key in schema["required"] as? [String] ?? [] where object[key] == nil {
                out.append("\(path).\(key) is required but missing")
            }
            for (key, v) in object {
                if let p = properties[key] as? [String: Any] {
                    out += errors(v, p, at: "\(path).\(key)")
                } else if let extra = schema["additionalProperties"] as? [String: Any] {
                    out += errors(v, extra, at: "\(path).\(key)")
                } else if (schema["additionalProperties"] as? Bool) == false {
                    out.append("\(path).\(key) is not documented")
                }
            }
        }
        if let array = value as? [Any], let items = schema["items"] as? [String: Any] {
            for (i, v) in array.enumerated() { out += errors(v, items, at: "\(path)[\(i)]") }
        }
        return out
    }

    static func isBool(_ value: Any) -> Bool {
        guard let n = value as? NSNumber, !(value is String) else { return false }
        return String(cString: n.objCType) == "c"
    }

    static func isType(_ value: Any, _ type: String) -> Bool {
        switch type {
        case "null": return value is NSNull
        case "string": return value is String
        case "boolean": return isBool(value)
        case "integer":
            guard !isBool(value), let n = value as? NSNumber, !(value is String) else { return false }
            return n.doubleValue == n.doubleValue.rounded()
        case "number": return !isBool(value) && !(value is String) && value is NSNumber
        case "object": return value is [String: Any]
        case "array": return value is [Any]
        default: return false
        }
    }

    static func equal(_ a: Any, _ b: Any) -> Bool {
        if a is NSNull || b is NSNull { return a is NSNull && b is NSNull }
        if let x = a as? String, let y = b as? String { return x == y }
        if a is String || b is String { return false }
        if isBool(a) || isBool(b) { return isBool(a) && isBool(b) && (a as? NSNumber)?.boolValue == (b as? NSNumber)?.boolValue }
        if let x = a as? NSNumber, let y = b as? NSNumber { return x.doubleValue == y.doubleValue }
        return false
    }
}
