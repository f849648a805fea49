import Foundation
import Hummingbird
import Logging

/// `GET /wechat/push` (server check) and `POST /wechat/push` (message push):
/// 503 without a push token, 401 for a bad signature or a foreign AppID, 400 for anything
/// unreadable, and the literal `success` otherwise.
struct WeChatPushController: Sendable {
    let ledger: SubscriptionLedger
    let config: LiveConfig
    let logger: Logger

    func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        router.get("/wechat/push") { request, _ -> Response in
            let verifier = try verifier()
            let query = PushQuery(request.uri.queryParameters.reduce(into: [String: String]()) { $0[String($1.key)] = String($1.value) })
            do {
                try verifier.verifyServerCheck(query)
            } catch let error as WeChatPushError {
                throw APIError(.init(code: error.httpStatus), error.description)
            }
            return textResponse(.ok, request.uri.queryParameters.get("echostr") ?? "")
        }
        router.post("/wechat/push") { request, _ -> Response in
            let verifier = try verifier()
            let body = try await request.collectBody(limit: config.snapshot.server.maxBodyBytes)
            let query = PushQuery(request.uri.queryParameters.reduce(into: [String: String]()) { $0[String($1.key)] = String($1.value) })
            let event: WeChatEvent
            do {
                event = try verifier.verify(query: query, body: Data(buffer: body))
            } catch let error as WeChatPushError {
                throw APIError(.init(code: error.httpStatus), error.description)
            }
            try await ledger.apply(event)
            return textResponse(.ok, "success")
        }
    }

    /// The verifier for the config in force; 503 while no push token is configured.
    private func verifier() throws -> WeChatPushVerifier {
        let settings = config.snapshot.wechat
        guard !settings.pushToken.isEmpty else {
            throw APIError(.serviceUnavailable, "message push is not configured: set wechat.push_token")
        }
        do {
            return try WeChatPushVerifier(settings: settings)
        } catch {
            throw APIError(.serviceUnavailable, error.description)
        }
    }
}
