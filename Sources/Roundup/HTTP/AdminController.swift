import Foundation
import Hummingbird
import Logging

/// `/admin/*` for the mini program's backend: bindings and credits. Bearer auth
/// compared in constant time; 403 while no admin token is configured.
struct AdminController: Sendable {
    let store: RoundupStore
    let ledger: SubscriptionLedger
    let presence: PresenceMap
    let config: LiveConfig
    let clock: any WallClock
    /// Every bind goes through it: the rules `users bind` and `users import` keep, and the
    /// re-time and wake after a change.
    let bindings: BindingService

    func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        let admin = router.group("admin").add(middleware: BearerAuthMiddleware<Context>(config: config))
        admin.put("users/:id") { request, context in try await putUser(request, id: try userID(context)) }
        admin.get("users/:id") { _, context in try await getUser(id: try userID(context)) }
        admin.delete("users/:id") { request, context in try await deleteUser(request, id: try userID(context)) }
        admin.post("credits") { request, _ in try await postCredits(request) }
    }

    /// The path's user id, percent-decoded once.
    private func userID(_ context: some RequestContext) throws -> String {
        let raw = try context.parameters.require("id")
        guard let id = raw.removingPercentEncoding, !id.isEmpty else { throw APIError(.badRequest, "the user id in the path is not valid") }
        return id
    }

    private func putUser(_ request: Request, id: String) async throws -> Response {
        let body = try await decodeBody(UserBindingBody.self, request, refusingUnknownFields: true)
        do {
            let bindings = self.bindings
            _ = try await store.blocking { try bindings.bind(id, BindingRequest(openid: body.openid, name: body.name, profile: body.profile)) }
        } catch let error as BindingError {
            switch error {
            case .invalid: throw APIError(.unprocessableContent, error.description)
            case .openidBoundElsewhere: throw APIError(.conflict, error.description)
            }
        }
        return jsonResponse(.ok, try await userObject(id))
    }

    private func getUser(id: String) async throws -> Response {
        guard try await store.read({ tx in try tx.isKnown(user: id) }) else { throw APIError(.notFound, "no user \(id) is known") }
        return jsonResponse(.ok, try await userObject(id))
    }

    private func deleteUser(_ request: Request, id: String) async throws -> Response {
        let erase = request.uri.queryParameters.get("erase") == "true"
        if erase {
            guard try await store.write({ tx in try tx.eraseUser(id) }) else { throw APIError(.notFound, "no user \(id) is known") }
            // The erased rows' old page images must not stay readable in the write-ahead log.
            await store.truncateWAL()
        } else {
            let store = self.store, now = clock.timestamp
            guard try await store.blocking({ try store.unbindUser(id, now: now) != nil }) else { throw APIError(.notFound, "no user \(id) is known") }
        }
        return Response(status: .noContent)
    }

    private func postCredits(_ request: Request) async throws -> Response {
        let body = try await decodeBody(CreditGrantBody.self, request, refusingUnknownFields: false)
        guard !body.openid.isEmpty else { throw APIError(.unprocessableContent, "openid must be a non-empty string") }
        guard let template = config.snapshot.template(id: body.templateID) else {
            throw APIError(.unprocessableContent, "template_id must name a template in the config")
        }
        guard (1...100).contains(body.count) else { throw APIError(.unprocessableContent, "count must be a whole number from 1 to 100") }
        if body.idempotencyKey?.isEmpty == true { throw APIError(.unprocessableContent, "idempotency_key must be a non-empty string") }
        let (_, credit) = try await ledger.grant(openid: body.openid, templateID: body.templateID, count: body.count, idempotencyKey: body.idempotencyKey)
        let total = template.kind == .longTerm ? (credit.subscribed ? 1 : 0) : credit.count
        return jsonResponse(
            .ok, .object([("openid", .string(body.openid)), ("template_id", .string(body.templateID)), ("credits", .int(Int64(total)))]))
    }

    /// The user object of `GET /admin/users/{id}`.
    private func userObject(_ id: String) async throws -> JSONValue {
        let (user, stored, digest) = try await store.read { tx -> (User?, [Credit], DigestSummary?) in
            let user = try tx.user(id)
            return (user, try user?.openid.map { try tx.credits(openid: $0) } ?? [], try tx.digestSummaries(.active(user: id), limit: nil).first)
        }
        let cfg = config.snapshot
        var credits: [(String, JSONValue)] = []
        if user?.openid != nil {
            for c in stored {
                let longTerm = cfg.template(id: c.templateID)?.kind == .longTerm
                credits.append((c.templateID, .int(Int64(longTerm ? (c.subscribed ? 1 : 0) : c.count))))
            }
        }
        return .object([
            ("im_user_id", .string(id)), ("openid", .string(user?.openid)), ("name", .string(user?.name)),
            ("profile", .string(user?.profile)), ("presence", .string(presence.state(of: id).rawValue)),
            ("credits", .object(credits)), ("digest", digest?.json ?? .null),
        ])
    }

    /// The body decoded as `type`: 415 unless `application/json`, 400 unless it is strict JSON
    /// and an object, 422 when a field is unknown (if refused) or of the wrong type.
    private func decodeBody<T: Decodable>(_ type: T.Type, _ request: Request, refusingUnknownFields: Bool) async throws -> T {
        let contentType = request.headers[.contentType]?.lowercased() ?? ""
        guard contentType.hasPrefix("application/json") else {
            throw APIError(.unsupportedMediaType, "the body must be JSON with Content-Type: application/json")
        }
        let body = try await request.collectBody(limit: config.snapshot.server.maxBodyBytes)
        let value: StrictJSON
        do {
            value = try StrictJSON.parse(Data(buffer: body))
        } catch {
            throw APIError(.badRequest, "the body is not valid JSON: \(error)")
        }
        guard case .object = value else { throw APIError(.badRequest, "the body is not a JSON object") }
        do {
            return try StrictJSONDecoder(refusesUnknownKeys: refusingUnknownFields).decode(type, from: value)
        } catch let error as DecodingError {
            throw APIError(.unprocessableContent, error.sentence)
        }
    }
}

/// The body of `PUT /admin/users/{id}`: a merge, where a key left out stays and `null` clears.
struct UserBindingBody: Decodable, Equatable {
    var openid: FieldUpdate<String>
    var name: FieldUpdate<String>
    var profile: FieldUpdate<String>

    enum CodingKeys: String, CodingKey, CaseIterable {
        case openid, name, profile
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        /// Absent: keep; `null`: clear; a string: set (an empty one is the binding service's to judge).
        func field(_ key: CodingKeys) throws -> FieldUpdate<String> {
            guard container.contains(key) else { return .keep }
            if try container.decodeNil(forKey: key) { return .clear }
            do {
                return .set(try container.decode(String.self, forKey: key))
            } catch DecodingError.typeMismatch(let type, let context) {
                throw DecodingError.typeMismatch(type, .init(codingPath: context.codingPath, debugDescription: "must be a string or null"))
            }
        }
        openid = try field(.openid)
        name = try field(.name)
        profile = try field(.profile)
    }
}

/// The body of `POST /admin/credits`; other members are ignored.
struct CreditGrantBody: Decodable, Equatable {
    var openid: String
    var templateID: String
    var count: Int
    /// Present only when given; `null` is refused like any other non-string.
    var idempotencyKey: String?

    enum CodingKeys: String, CodingKey {
        case openid
        case templateID = "template_id"
        case count
        case idempotencyKey = "idempotency_key"
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        openid = try container.decode(String.self, forKey: .openid)
        templateID = try container.decode(String.self, forKey: .templateID)
        count = try container.decode(Int.self, forKey: .count)
        idempotencyKey = container.contains(.idempotencyKey) ? try container.decode(String.self, forKey: .idempotencyKey) : nil
    }
}

/// `Authorization: Bearer <server.admin_token>` for `/admin/*`.
struct BearerAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let config: LiveConfig

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let token = config.snapshot.server.adminToken
        guard !token.isEmpty else { throw APIError(.forbidden, "the admin API is disabled: set server.admin_token") }
        let header = request.headers[.authorization] ?? ""
        let prefix = "Bearer "
        guard header.hasPrefix(prefix), constantTimeEquals(Array(header.dropFirst(prefix.count).utf8), Array(token.utf8)) else {
            throw APIError(.unauthorized, "a valid Authorization: Bearer token is required")
        }
        return try await next(request, context)
    }
}
