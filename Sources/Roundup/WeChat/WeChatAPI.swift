import Foundation

/// The two WeChat server APIs Roundup calls; a protocol because the real thing is remote, so tests
/// can stand in for it. `WeChatAPIClient` is the real one; tests and the demo point it at
/// `FakeWeChatServer`, or substitute their own.
public protocol WeChatAPI: Sendable {
    /// `POST /cgi-bin/stable_token` in normal mode, never `force_refresh`.
    func stableToken(appID: String, secret: String) async throws(WeChatAPIError) -> AccessTokenGrant
    /// `POST /cgi-bin/message/subscribe/send`, classified by what Roundup does next. Never throws: every failure is an outcome.
    func sendSubscribeMessage(_ message: SubscribeMessage, accessToken: String) async -> SendOutcome
}

/// A token as `stable_token` returns it: the value and its remaining lifetime in seconds.
public struct AccessTokenGrant: Sendable, Equatable {
    public var accessToken: String
    /// Seconds left; stable tokens always have at least 300.
    public var expiresIn: Int64

    public init(accessToken: String, expiresIn: Int64) {
        self.accessToken = accessToken
        self.expiresIn = expiresIn
    }
}

/// A cached access token with the instant it stops working.
public struct AccessToken: Sendable, Equatable, Codable {
    public var value: String
    public var expiresAt: Date

    public init(value: String, expiresAt: Date) {
        self.value = value
        self.expiresAt = expiresAt
    }
}

/// Why a token could not be had.
public enum WeChatAPIError: Error, Sendable, Equatable, CustomStringConvertible {
    /// WeChat answered with an errcode (e.g. 40013 appid, 40125 secret, 40164 IP whitelist, …).
    case errcode(Int64, String)
    /// The request did not complete (connection, timeout, HTTP status).
    case transport(String)
    /// The answer was not the JSON expected.
    case badResponse(String)

    /// Transient failures worth trying again later: -1 busy, 45011 minute limit, 89503 awaiting the admin, transport.
    public var isTransient: Bool {
        switch self {
        case .errcode(let code, _): return [-1, 45011, 89503].contains(code)
        case .transport: return true
        case .badResponse: return false
        }
    }

    public var description: String {
        switch self {
        case .errcode(let code, let message): return "WeChat error \(code): \(message)"
        case .transport(let why): return "WeChat could not be reached: \(why)"
        case .badResponse(let why): return "WeChat answered unexpectedly: \(why)"
        }
    }
}
