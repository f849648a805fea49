import Foundation
import Hummingbird
import Logging

/// `POST /im/callback`: checks `SdkAppid` and `Sign`/`RequestTime`, decodes the
/// command, hands it to the ingestor and answers IM's fixed OK body — always `ErrorCode 0`, so a
/// before-send callback never blocks a message.
struct IMCallbackController: Sendable {
    let ingestor: Ingestor
    let config: LiveConfig
    let clock: any WallClock
    let metrics: RoundupMetrics
    let logger: Logger

    /// IM's documented success reply.
    static let okBody = #"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}"#

    func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        router.post("/im/callback") { request, _ in try await handle(request) }
    }

    func handle(_ request: Request) async throws -> Response {
        let started = ContinuousClock.now
        let cfg = config.snapshot
        // Parsed once: Hummingbird parses the query string again on every access.
        let query = QueryValues(request.uri.queryParameters)
        let command = query["CallbackCommand"]
        defer { metrics.callbackSeconds.record(ContinuousClock.now - started) }

        guard let appID = query["SdkAppid"], UInt32(appID) == cfg.im.sdkAppID else {
            metrics.callback(command, .unauthorized)
            throw APIError(.unauthorized, "SdkAppid does not match im.sdk_app_id")
        }
        if cfg.im.callbackToken.isEmpty {
            guard cfg.im.allowUnsignedCallbacks else {
                metrics.callback(command, .unauthorized)
                throw APIError(.unauthorized, "callback authentication is not configured: set im.callback_token")
            }
        } else {
            do {
                try IMCallbackSignature.verify(
                    sign: query["Sign"], requestTime: query["RequestTime"],
                    token: cfg.im.callbackToken, now: clock.now)
            } catch {
                metrics.callback(command, .unauthorized)
                throw APIError(.unauthorized, "the callback signature is missing, wrong or stale")
            }
        }

        let body = try await request.collectBody(limit: cfg.server.maxBodyBytes)
        let callback: IMCallback
        do {
            callback = try IMCallback.decode(command: command, body: Data(buffer: body))
        } catch {
            metrics.callback(command, .malformed)
            throw APIError(.badRequest, error.description)
        }
        let outcome: IngestOutcome
        if case .unknown = callback {
            outcome = .skipped("unknown command")
            metrics.callback(callback.command, .answered)
        } else {
            outcome = await ingestor.handle(callback, optPlatform: query["OptPlatform"])
            metrics.callback(callback.command, outcome.metric)
        }
        switch outcome {
        case .shed:
            logger.warning("callback shed: not committed within 1.5 s", metadata: IMCallbackController.keys(callback))
        case .failed(let why):
            logger.error("callback not stored", metadata: IMCallbackController.keys(callback).merging(["error": "\(why)"]) { a, _ in a })
        default:
            break
        }
        return textResponse(.ok, IMCallbackController.okBody, contentType: "application/json")
    }

    /// Identifiers (never text) that let an operator find a lost message.
    static func keys(_ callback: IMCallback) -> Logger.Metadata {
        switch callback {
        case .c2cAfterSend(let m), .c2cBeforeSend(let m): return ["command": "\(callback.command)", "MsgKey": "\(m.msgKey)"]
        case .groupAfterSend(let g): return ["command": "\(callback.command)", "GroupId": "\(g.groupID)", "MsgSeq": "\(g.msgSeq)"]
        case .withdraw(let w): return ["command": "\(callback.command)", "MsgKey": "\(w.msgKey)"]
        default: return ["command": "\(callback.command)"]
        }
    }
}

/// A request's query parameters, parsed once; names match exactly, else case-insensitively (IM
/// spells `SdkAppid` two ways).
struct QueryValues {
    let parameters: Parameters

    init(_ parameters: Parameters) { self.parameters = parameters }

    subscript(_ name: String) -> String? {
        if let exact = parameters.get(name) { return exact }
        let lower = name.lowercased()
        return parameters.first { String($0.key).lowercased() == lower }.map { String($0.value) }
    }
}

/// `GET /healthz` and `GET /metrics`.
struct StatusController: Sendable {
    let store: RoundupStore
    let gauges: StatusGauges
    let drain: DrainState

    func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        router.get("/healthz") { _, _ -> Response in
            if drain.isDraining {
                return jsonResponse(.serviceUnavailable, .object([("error", .string("this instance is shutting down"))]))
            }
            guard await store.isHealthy() else {
                return jsonResponse(.serviceUnavailable, .object([("error", .string("the database does not answer"))]))
            }
            return jsonResponse(.ok, .object([("status", .string("ok"))]))
        }
        router.get("/metrics") { _, _ -> Response in
            let gauges = self.gauges
            let text = (try? await store.blocking { gauges.refreshedExposition() }) ?? gauges.refreshedExposition()
            return textResponse(.ok, text, contentType: "text/plain; version=0.0.4; charset=utf-8")
        }
    }
}
