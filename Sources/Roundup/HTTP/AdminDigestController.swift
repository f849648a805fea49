import Foundation
import Hummingbird

/// `/admin/digests`: digests by state, and an operator's flush of one user's open
/// digest. The same digest objects as `roundup pending --json`; bearer auth as the rest of `/admin`.
struct AdminDigestController: Sendable {
    let store: RoundupStore
    let config: LiveConfig
    let clock: any WallClock
    /// A digest was flushed: wake the engine so it goes at once.
    let onFlushed: @Sendable () -> Void

    /// The most digests `GET /admin/digests` returns unless `?limit=` says otherwise.
    static let defaultLimit = 1000

    func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        let admin = router.group("admin").add(middleware: BearerAuthMiddleware<Context>(config: config))
        admin.get("digests") { request, _ in try await list(request) }
        admin.post("digests/:id/flush") { request, context in try await flush(request, id: try userID(context)) }
    }

    /// The path's user id, percent-decoded once.
    private func userID(_ context: some RequestContext) throws -> String {
        let raw = try context.parameters.require("id")
        guard let id = raw.removingPercentEncoding, !id.isEmpty else { throw APIError(.badRequest, "the user id in the path is not valid") }
        return id
    }

    /// `GET /admin/digests?state=open[&limit=N]`: without `state`, the open and held digests.
    private func list(_ request: Request) async throws -> Response {
        let states: [DigestState]
        if let raw = request.uri.queryParameters.get("state") {
            guard let state = DigestState(rawValue: raw) else {
                let known = DigestState.allCases.map(\.rawValue).joined(separator: ", ")
                throw APIError(.badRequest, "state must be one of \(known)")
            }
            states = [state]
        } else {
            states = [.open, .held]
        }
        var limit = Self.defaultLimit
        if let raw = request.uri.queryParameters.get("limit") {
            guard let n = Int(raw), n >= 1 else { throw APIError(.badRequest, "limit must be a positive whole number") }
            limit = n
        }
        let chosen = (states, limit)
        let digests = try await store.read { tx in try tx.digestSummaries(.states(chosen.0, user: nil), limit: chosen.1) }
        return jsonResponse(.ok, .object([("digests", .array(digests.map(\.json)))]))
    }

    /// `POST /admin/digests/{id}/flush[?force=true]`: 202 with the digest; 404 without an open one.
    private func flush(_ request: Request, id: String) async throws -> Response {
        let force = request.uri.queryParameters.get("force") == "true"
        let now = clock.timestamp
        let note = "flushed by the operator (POST /admin/digests/…/flush\(force ? "?force=true: quiet hours skipped" : ""))"
        let store = self.store
        switch try await store.blocking({ try store.flushDigest(user: id, at: now, force: force, now: now, note: note) }) {
        case .flushed(let digest):
            onFlushed()
            return jsonResponse(.accepted, digest.json)
        case .held(let digest):
            throw APIError(.notFound, "user \(id) has no open digest: it is held (\(digest.reason?.rawValue ?? "?")), and a flush never skips binding or credit")
        case .noDigest:
            throw APIError(.notFound, "user \(id) has no open digest")
        }
    }
}
