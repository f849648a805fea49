import AsyncHTTPClient
import Foundation
import NIOCore
import Synchronization

/// The real WeChat API client over AsyncHTTPClient: every request has a deadline and every body is
/// collected or drained.
///
/// ## Configuration keys
/// - `wechat.api_base_url`: `baseURL` (default `https://api.weixin.qq.com`; the demo and tests use the fake).
public struct WeChatAPIClient: WeChatAPI {
    /// Scheme, host and port, no trailing slash.
    public let baseURL: String
    /// Each request's deadline, connection included.
    public let timeout: Duration
    private let httpClient: HTTPClient

    /// One client for the process, sized for `digest.send_concurrency` (at most 1,000): the
    /// default `HTTPClient.shared` keeps at most 8 connections per host, which would cap sends in
    /// flight at 8 whatever the config says. WeChat's API never redirects; a redirect is refused.
    public static let sharedHTTPClient: HTTPClient = {
        var configuration = HTTPClient.Configuration(
            certificateVerification: .fullVerification, redirectConfiguration: .disallow,
            timeout: .init(connect: .seconds(10), read: .seconds(30)), proxy: nil, ignoreUncleanSSLShutdown: false,
            decompression: .disabled)
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 1000)
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()

    /// Largest response body read; WeChat's answers are a few hundred bytes.
    static let maxResponseBytes = 64 * 1024

    public init(baseURL: String = "https://api.weixin.qq.com", timeout: Duration = .seconds(10),
                httpClient: HTTPClient = WeChatAPIClient.sharedHTTPClient) {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        self.baseURL = base
        self.timeout = timeout
        self.httpClient = httpClient
    }

    public func stableToken(appID: String, secret: String) async throws(WeChatAPIError) -> AccessTokenGrant {
        let body = JSONValue.object([
            ("grant_type", .string("client_credential")), ("appid", .string(appID)), ("secret", .string(secret)),
            ("force_refresh", .bool(false)),
        ])
        var request = HTTPClientRequest(url: baseURL + "/cgi-bin/stable_token")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: body.serialized))
        let status: UInt
        let bytes: ByteBuffer
        do {
            let response = try await httpClient.execute(request, deadline: .now() + TimeAmount(timeout))
            status = response.status.code
            bytes = try await response.body.collect(upTo: Self.maxResponseBytes)
        } catch {
            throw .transport(Self.describe(error))
        }
        guard status == 200 else { throw .transport("HTTP \(status)") }
        guard let object = Self.jsonObject(bytes) else { throw .badResponse("not a JSON object") }
        if let code = Self.int64(object["errcode"]), code != 0 {
            throw .errcode(code, object["errmsg"] as? String ?? "")
        }
        guard let token = object["access_token"] as? String, !token.isEmpty,
            let expiresIn = Self.int64(object["expires_in"]), expiresIn > 0
        else { throw .badResponse("no access_token or expires_in") }
        return AccessTokenGrant(accessToken: token, expiresIn: expiresIn)
    }

    public func sendSubscribeMessage(_ message: SubscribeMessage, accessToken: String) async -> SendOutcome {
        let token = accessToken.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? accessToken
        var request = HTTPClientRequest(url: baseURL + "/cgi-bin/message/subscribe/send?access_token=" + token)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        let payload = ByteBuffer(bytes: message.body)
        let marker = RequestWriteMarker()
        request.body = .stream(MarkedBody(buffer: payload, marker: marker), length: .known(Int64(payload.readableBytes)))
        let status: UInt
        let bytes: ByteBuffer
        do {
            let response = try await httpClient.execute(request, deadline: .now() + TimeAmount(timeout))
            status = response.status.code
            bytes = try await response.body.collect(upTo: Self.maxResponseBytes)
        } catch {
            return Self.transportOutcome(error, requestWritten: marker.written)
        }
        if status >= 500 { return .inDoubt(reason: "HTTP \(status)") }
        if status == 429 { return .retryable(errcode: "http_429", errmsg: "HTTP 429") }
        guard status == 200 else {
            return .contentError(errcode: Int64(status), errmsg: "unexpected HTTP status \(status)")
        }
        guard let object = Self.jsonObject(bytes), let errcode = Self.int64(object["errcode"]) else {
            // WeChat took the request and said something we cannot read: it may have sent the message.
            return .inDoubt(reason: "unreadable answer to a send")
        }
        let msgid: String? =
            switch object["msgid"] {
            case let number as NSNumber: PushDocument.numberText(number)
            case let text as String where !text.isEmpty: text
            default: nil
            }
        return SendOutcome.classify(errcode: errcode, errmsg: object["errmsg"] as? String ?? "", msgid: msgid)
    }

    /// A failed exchange: before the request head was written WeChat cannot have acted, so it is
    /// retryable (connect timeout, refused, pool timeout, deadline while queued); after, it is in
    /// doubt (read timeout, reset, deadline while waiting for the answer).
    static func transportOutcome(_ error: any Error, requestWritten: Bool) -> SendOutcome {
        let description = describe(error)
        guard requestWritten else {
            let word: String
            switch error as? HTTPClientError {
            case .some(.connectTimeout): word = "connect_timeout"
            case .some(.getConnectionFromPoolTimeout): word = "pool_timeout"
            case .some(.deadlineExceeded): word = "deadline_before_send"
            default: word = "connect_failed"
            }
            return .retryable(errcode: word, errmsg: description)
        }
        return .inDoubt(reason: description)
    }

    /// A short, log-safe description of a transport error.
    static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            switch error {
            case .connectTimeout: return "connect timeout"
            case .readTimeout: return "read timeout"
            case .remoteConnectionClosed: return "connection closed by WeChat"
            case .deadlineExceeded: return "deadline exceeded"
            case .getConnectionFromPoolTimeout: return "connection pool timeout"
            default: return String(describing: error)
            }
        }
        return String(describing: error)
    }

    private static func jsonObject(_ buffer: ByteBuffer) -> [String: Any]? {
        let data = Data(buffer.readableBytesView)
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }

    /// An integer sent as a JSON number or a decimal string.
    static func int64(_ any: Any?) -> Int64? {
        switch any {
        case let number as NSNumber: return Int64(PushDocument.numberText(number))
        case let text as String: return Int64(text.trimmingCharacters(in: .whitespaces))
        default: return nil
        }
    }
}

/// Records whether AsyncHTTPClient has asked for the request body, which it does only after
/// writing the request head: the line between "surely not sent" and "maybe sent".
final class RequestWriteMarker: Sendable {
    private let state = Mutex(false)

    var written: Bool { state.withLock { $0 } }

    func markWritten() { state.withLock { $0 = true } }
}

/// A request body of one buffer that tells its marker when it is first read.
struct MarkedBody: AsyncSequence, Sendable {
    typealias Element = ByteBuffer

    let buffer: ByteBuffer
    let marker: RequestWriteMarker

    struct AsyncIterator: AsyncIteratorProtocol {
        var buffer: ByteBuffer?
        let marker: RequestWriteMarker

        mutating func next() async -> ByteBuffer? {
            marker.markWritten()
            defer { buffer = nil }
            return buffer
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(buffer: buffer, marker: marker) }
}
