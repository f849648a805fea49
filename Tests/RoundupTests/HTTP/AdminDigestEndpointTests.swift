import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Synchronization
import Testing

@testable import Roundup

/// `GET /admin/digests` and `POST /admin/digests/{id}/flush` on a router of their own.
@Suite("Admin API: digests")
struct AdminDigestEndpointTests {
    static let token = "admin-secret-token"

    /// Counts engine wake-ups.
    final class Wakes: Sendable {
        let count = Mutex(0)
    }

    let store: RoundupStore
    let clock = ManualWallClock(ServiceHarness.start)
    let wakes = Wakes()
    let f: DigestFixtures

    init() throws {
        store = try RoundupStore.inMemory()
        f = DigestFixtures(store: store, now: Timestamp(ServiceHarness.start))
    }

    /// Runs `body` against a router with the controller behind the JSON error middleware.
    func withClient(token: String = AdminDigestEndpointTests.token, _ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        var config = try ConfigLoader(environment: [:]).load(yaml: OperatorTestConfig.yaml).config
        config.server.adminToken = token
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: JSONErrorMiddleware(logger: Logger(label: "test")))
        let wakes = self.wakes
        AdminDigestController(store: store, config: LiveConfig(config), clock: clock, onFlushed: { wakes.count.withLock { $0 += 1 } })
            .addRoutes(to: router)
        try await Application(router: router).test(.router, body)
    }

    static func call(_ c: any TestClientProtocol, _ method: HTTPRequest.Method, _ path: String,
                     auth: String? = "Bearer \(AdminDigestEndpointTests.token)") async throws -> (Int, String) {
        var headers: HTTPFields = [:]
        if let auth { headers[.authorization] = auth }
        return try await c.execute(uri: path, method: method, headers: headers, body: nil) { (Int($0.status.code), String(buffer: $0.body)) }
    }

    @Test("a wrong or missing bearer token is 401, and no configured token is 403")
    func auth() async throws {
        try await withClient { (c: any TestClientProtocol) async throws in
            #expect(try await Self.call(c, .get, "/admin/digests?state=open", auth: nil).0 == 401)
            #expect(try await Self.call(c, .post, "/admin/digests/p1/flush", auth: "Bearer wrong").0 == 401)
        }
        try await withClient(token: "") { (c: any TestClientProtocol) async throws in
            #expect(try await Self.call(c, .get, "/admin/digests").0 == 403)
        }
    }

    @Test("GET lists the digests in a state as digest objects; an unknown state is 400")
    func list() async throws {
        try f.user("p1", openid: "o1", name: "王芳")
        try f.user("p2")
        let open = try f.open("p1", [("t", "a"), ("t", "b")])
        try f.hold(try f.open("p2", [("t", "c")]), .unbound)
        try await withClient { (c: any TestClientProtocol) async throws in
            let (status, body) = try await Self.call(c, .get, "/admin/digests?state=open")
            #expect(status == 200)
            let digests = try #require(try parseJSON(body)["digests"] as? [[String: Any]])
            #expect(digests.map { $0["id"] as? Int } == [Int(open)])
            #expect(digests.first?["name"] as? String == "王芳")
            #expect(digests.first?["messages"] as? Int == 2)
            #expect(digests.first?["msgid"] is NSNull)
            let held = try parseJSON(try await Self.call(c, .get, "/admin/digests?state=held").1)["digests"] as? [[String: Any]]
            #expect(held?.first?["reason"] as? String == "unbound")
            let sent = try parseJSON(try await Self.call(c, .get, "/admin/digests?state=sent").1)["digests"] as? [Any]
            #expect(sent?.isEmpty == true)
            let bad = try await Self.call(c, .get, "/admin/digests?state=opened")
            #expect(bad.0 == 400)
            #expect((try parseJSON(bad.1)["error"] as? String)?.contains("state must be one of") == true)
        }
    }

    @Test("POST flush makes the open digest due now (202 with the digest), ?force=true marks it forced; none is 404")
    func flush() async throws {
        try f.user("p 1", openid: "o1")
        let id = try f.open("p 1", [("t", "a")], due: f.now + 3_600_000)
        try f.user("p2", openid: "o2")
        try f.hold(try f.open("p2", [("t", "b")]), .noCredit)
        let store = self.store
        try await withClient { (c: any TestClientProtocol) async throws in
            let (status, body) = try await Self.call(c, .post, "/admin/digests/p%201/flush")
            #expect(status == 202)
            let digest = try parseJSON(body)
            #expect(digest["id"] as? Int == Int(id))
            #expect(digest["due_at"] as? String == Timestamp(ServiceHarness.start).rfc3339)
            #expect(try store.digestTimingFacts(id)?.flushRequested == 1)
            #expect(try await Self.call(c, .post, "/admin/digests/p%201/flush?force=true").0 == 202)
            #expect(try store.dueDigest(id)?.flushForce == true)

            let missing = try await Self.call(c, .post, "/admin/digests/nobody/flush")
            #expect(missing.0 == 404)
            #expect((try parseJSON(missing.1)["error"] as? String)?.contains("no open digest") == true)
            let held = try await Self.call(c, .post, "/admin/digests/p2/flush")
            #expect(held.0 == 404)
            #expect(held.1.contains("held (no_credit)"))
        }
        #expect(wakes.count.withLock { $0 } == 2)
    }
}
