import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// A fake of the two WeChat APIs Roundup calls — `/cgi-bin/stable_token` and
/// `/cgi-bin/message/subscribe/send` — on loopback, for the demo, the benchmark and the tests.
/// It checks what real WeChat checks (credentials, token, body shape, per-openid concurrency) and
/// answers whatever `script` says.
public struct FakeWeChatServer: Sendable {
    public let appID: String
    public let secret: String
    /// What the server answers, and what it recorded.
    public let script: FakeWeChatScript

    public init(appID: String = "wx_fake_app_id", secret: String = "fake_app_secret", tokenExpiresIn: Int64 = 7200) {
        self.appID = appID
        self.secret = secret
        self.script = FakeWeChatScript(appID: appID, secret: secret, tokenExpiresIn: tokenExpiresIn)
    }

    /// The server as a Hummingbird application (a `Service`, for a `ServiceGroup`). It binds
    /// `host:port` (port 0: any free port) and reports the real port through `onReady`.
    public func application(
        host: String = "127.0.0.1", port: Int = 0, onReady: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        var logger = Logger(label: "roundup.fake-wechat")
        logger.logLevel = .critical
        return Application(
            router: router(),
            configuration: .init(address: .hostname(host, port: port), serverName: "FakeWeChat"),
            onServerRunning: { channel in await onReady(channel.localAddress?.port ?? port) },
            logger: logger)
    }

    /// Runs the server around `body`, which gets its base URL (`http://127.0.0.1:PORT`); the server
    /// stops when `body` returns or throws.
    public func withRunning<T>(_ body: (_ baseURL: String) async throws -> T) async throws -> T {
        var logger = Logger(label: "roundup.fake-wechat")
        logger.logLevel = .critical
        return try await withLoopbackApplication(logger: logger, { onRunning in application(onReady: onRunning) }) { port in
            try await body("http://127.0.0.1:\(port)")
        }
    }

    /// Why the fake could not serve.
    public enum FakeServerError: Error, Equatable {
        /// A scripted `closeConnection` step closed the connection instead of answering.
        case closedOnPurpose
    }

    // MARK: Routes

    private func router() -> Router<FakeWeChatContext> {
        let router = Router(context: FakeWeChatContext.self)
        let script = self.script
        router.post("/cgi-bin/stable_token") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 64 * 1024)
            let object = Self.jsonObject(body)
            let latency = await script.tokenLatency
            if latency > .zero { try await Task.sleep(for: latency) }
            guard let object else { return Self.json(["errcode": 47001, "errmsg": "data format error"]) }
            let (code, message, token) = await script.tokenRequest(
                grantType: object["grant_type"] as? String, appID: object["appid"] as? String,
                secret: object["secret"] as? String, forceRefresh: object["force_refresh"] as? Bool ?? false)
            guard code == 0, let token else { return Self.json(["errcode": code, "errmsg": message]) }
            return Self.json(["access_token": token, "expires_in": await script.tokenExpiresIn])
        }
        router.post("/cgi-bin/message/subscribe/send") { request, context -> Response in
            let body = try await request.body.collect(upTo: 1024 * 1024)
            let token = request.uri.queryParameters["access_token"].map(String.init)
            await script.countSendAttempt()
            guard let object = Self.jsonObject(body) else {
                return Self.json(["errcode": 47001, "errmsg": "data format error hint: [fake]"])
            }
            let touser = object["touser"] as? String ?? ""
            guard await script.beginSend(touser) else {
                return Self.json(["errcode": 43108, "errmsg": "concurrent send to the same user"])
            }
            let reply = await Self.handleSend(object, raw: String(buffer: body), token: token, script: script)
            await script.endSend(touser)
            switch reply {
            case .response(let response):
                return response
            case .close:
                try await context.channel.close()
                throw FakeServerError.closedOnPurpose  // Never written: the connection is gone.
            }
        }
        return router
    }

    private enum SendReply {
        case response(Response)
        case close
    }

    /// A send, once its openid is marked in flight: the script first, then WeChat's own checks.
    private static func handleSend(
        _ object: [String: Any], raw: String, token: String?, script: FakeWeChatScript
    ) async -> SendReply {
        switch await script.nextStep() {
        case .errcode(let code, let message):
            return .response(json(["errcode": code, "errmsg": message ?? "scripted errcode \(code) rid: fake"]))
        case .httpStatus(let status):
            return .response(
                Response(
                    status: .init(code: status), headers: [.contentType: "text/plain"],
                    body: .init(byteBuffer: ByteBuffer(string: "scripted HTTP \(status)"))))
        case .closeConnection:
            return .close
        case .delay(let duration):
            try? await Task.sleep(for: duration)
        case nil:
            break
        }
        await script.passGate()
        let latency = await script.sendLatency
        if latency > .zero { try? await Task.sleep(for: latency) }
        if let touser = object["touser"] as? String, let hold = await script.holds[touser] { try? await Task.sleep(for: hold) }
        guard let token, !token.isEmpty else { return .response(json(["errcode": 41001, "errmsg": "access_token missing"])) }
        guard await script.isValid(token: token) else {
            return .response(json(["errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"]))
        }
        guard let touser = object["touser"] as? String, !touser.isEmpty else {
            return .response(json(["errcode": 40003, "errmsg": "invalid openid"]))
        }
        guard let templateID = object["template_id"] as? String, !templateID.isEmpty else {
            return .response(json(["errcode": 40037, "errmsg": "invalid template_id"]))
        }
        if let allowed = await script.templateIDs, !allowed.contains(templateID) {
            return .response(json(["errcode": 40037, "errmsg": "invalid template_id"]))
        }
        // `data` must be a nested object of {"value": "…"}.
        guard let data = object["data"] as? [String: Any], !data.isEmpty else {
            return .response(json(["errcode": 47003, "errmsg": "argument invalid! data is empty"]))
        }
        for (key, entry) in data {
            guard let entry = entry as? [String: Any], let value = entry["value"] as? String, !value.isEmpty else {
                return .response(json(["errcode": 47003, "errmsg": "argument invalid! data.\(key).value is empty"]))
            }
        }
        let msgid = await script.accept(body: raw, touser: touser, templateID: templateID)
        return .response(Response(
            status: .ok, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: #"{"errcode":0,"errmsg":"ok","msgid":\#(msgid)}"#))))
    }

    private static func jsonObject(_ buffer: ByteBuffer) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView))) as? [String: Any]
    }

    private static func json(_ object: [String: Any]) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// The fake's request context: Hummingbird's basics plus the channel, so a scripted step can
/// close the connection without answering.
public struct FakeWeChatContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }
}
