import Foundation
import Hummingbird
import Logging

/// `/admin/*` for the mini program's backend (SPEC §4): bindings and credits. Bearer auth
/// compared in constant time; 403 while no admin token is configured.
struct AdminController: Sendable {
    let store: RoundupStore
    let ledger: SubscriptionLedger
    let presence: PresenceMap
    let config: LiveConfig
    let clock: any WallClock
    /// A binding changed (user id, whether the profile changed): held digests may be sendable
    /// now, and a new profile re-times the user's open digest.
    let onBindingChanged: @Sendable (String, Bool) async -> Void

    func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        let admin = router.group("admin").add(middleware: BearerAuthMiddleware<Context>(config: config))
        admin.put("users/:id") { request, context in try await putUser(request, id: try userID(context)) }
        admin.get("users/:id") { _, context in try getUser(id: try userID(context)) }
        admin.delete("users/:id") { request, context in try deleteUser(request, id: try userID(context)) }
        admin.post("credits") { request, _ in try await postCredits(request) }
    }

    /// The path's user id, percent-decoded once (SPEC §4).
    private func userID(_ context: some RequestContext) throws -> String {
        let raw = try context.parameters.require("id")
        guard let id = raw.removingPercentEncoding, !id.isEmpty else { throw APIError(.badRequest, "the user id in the path is not valid") }
        return id
    }

    private func putUser(_ request: Request, id: String) async throws -> Response {
        let body = try await jsonObject(request)
        func field(_ key: String) throws -> FieldUpdate<String> {
            guard let value = body[key] else { return .keep }
            if value is NSNull { return .clear }
            guard let s = value as? String, !(value is NSNumber) else {
                throw APIError(.unprocessableContent, "\(key) must be a string or null")
            }
            return s.isEmpty ? .clear : .set(s)
        }
        for key in body.keys where !["openid", "name", "profile"].contains(key) {
            throw APIError(.unprocessableContent, "unknown field \(key) (fields: openid, name, profile)")
        }
        let update = UserUpdate(openid: try field("openid"), name: try field("name"), profile: try field("profile"))
        if case .set(let profile) = update.profile, config.snapshot.digest.profiles[profile] == nil {
            throw APIError(.unprocessableContent, "profile \(profile) is not in digest.profiles")
        }
        if case .set(let openid) = update.openid, openid.utf8.count > 128 {
            throw APIError(.unprocessableContent, "openid is too long")
        }
        do {
            try store.updateUser(id, update, now: clock.timestamp)
        } catch StoreError.openidBoundElsewhere(_, let other) {
            throw APIError(.conflict, "that openid is already bound to user \(other)")
        }
        await onBindingChanged(id, update.profile != .keep)
        return jsonResponse(.ok, try userObject(id))
    }

    private func getUser(id: String) throws -> Response {
        guard try store.isKnown(user: id) else { throw APIError(.notFound, "no user \(id) is known") }
        return jsonResponse(.ok, try userObject(id))
    }

    private func deleteUser(_ request: Request, id: String) throws -> Response {
        let erase = request.uri.queryParameters.get("erase") == "true"
        if erase {
            guard try store.eraseUser(id) else { throw APIError(.notFound, "no user \(id) is known") }
        } else {
            guard try store.unbindUser(id, now: clock.timestamp) != nil else { throw APIError(.notFound, "no user \(id) is known") }
        }
        return Response(status: .noContent)
    }

    private func postCredits(_ request: Request) async throws -> Response {
        let body = try await jsonObject(request)
        guard let openid = body["openid"] as? String, !openid.isEmpty else {
            throw APIError(.unprocessableContent, "openid must be a non-empty string")
        }
        guard let template = body["template_id"] as? String, config.snapshot.template(id: template) != nil else {
            throw APIError(.unprocessableContent, "template_id must name a template in the config")
        }
        guard let number = body["count"] as? NSNumber, CFGetTypeIDIsNumber(number), number.doubleValue == number.doubleValue.rounded(),
              (1...100).contains(number.intValue)
        else {
            throw APIError(.unprocessableContent, "count must be a whole number from 1 to 100")
        }
        let key = body["idempotency_key"]
        if key != nil, !(key is String) || (key as? String)?.isEmpty == true {
            throw APIError(.unprocessableContent, "idempotency_key must be a non-empty string")
        }
        let (_, credit) = try ledger.grant(openid: openid, templateID: template, count: number.intValue, idempotencyKey: key as? String)
        let total = config.snapshot.template(id: template)?.kind == .longTerm ? (credit.subscribed ? 1 : 0) : credit.count
        return jsonResponse(.ok, .object([("openid", .string(openid)), ("template_id", .string(template)), ("credits", .int(Int64(total)))]))
    }

    /// The user object of `GET /admin/users/{id}`.
    private func userObject(_ id: String) throws -> JSONValue {
        let user = try store.user(id)
        let cfg = config.snapshot
        var credits: [(String, JSONValue)] = []
        if let openid = user?.openid {
            for c in try store.credits(openid: openid) {
                let longTerm = cfg.template(id: c.templateID)?.kind == .longTerm
                credits.append((c.templateID, .int(Int64(longTerm ? (c.subscribed ? 1 : 0) : c.count))))
            }
        }
        return .object([
            ("im_user_id", .string(id)), ("openid", .string(user?.openid)), ("name", .string(user?.name)),
            ("profile", .string(user?.profile)), ("presence", .string(presence.state(of: id).rawValue)),
            ("credits", .object(credits)), ("digest", try store.activeDigestSummary(for: id)?.json ?? .null),
        ])
    }

    /// The body as a JSON object: 415 unless `application/json`, 400 unless an object.
    private func jsonObject(_ request: Request) async throws -> [String: Any] {
        let type = request.headers[.contentType]?.lowercased() ?? ""
        guard type.hasPrefix("application/json") else {
            throw APIError(.unsupportedMediaType, "the body must be JSON with Content-Type: application/json")
        }
        let body = try await request.collectBody(limit: config.snapshot.server.maxBodyBytes)
        guard let object = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any] else {
            throw APIError(.badRequest, "the body is not a JSON object")
        }
        return object
    }
}

/// True for JSON numbers (not booleans, which JSONSerialization also gives as NSNumber).
private func CFGetTypeIDIsNumber(_ n: NSNumber) -> Bool {
    String(cString: n.objCType) != "c"
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
