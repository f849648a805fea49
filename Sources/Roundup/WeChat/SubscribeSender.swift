/// Sends subscribe messages as docs/operations.md describes: with the shared token, retrying once
/// after a stale-token answer, and never two sends to one openid at the same time (43108).
public struct SubscribeSender: Sendable {
    public let api: any WeChatAPI
    public let tokens: AccessTokenManager
    private let serializer: OpenIDSerializer

    public init(api: any WeChatAPI, tokens: AccessTokenManager, serializer: OpenIDSerializer = OpenIDSerializer()) {
        self.api = api
        self.tokens = tokens
        self.serializer = serializer
    }

    /// Makes sure a token is at hand before a digest is committed as `sending`. Nil when one is;
    /// otherwise the outcome a send would have had, reached without calling WeChat. Fetching the
    /// token first means a failed fetch, or a crash during it, leaves the digest `open` to be
    /// retried instead of `in_doubt` (only a send that may have reached WeChat is in doubt).
    public func prepare() async -> SendOutcome? {
        do {
            _ = try await tokens.token()
            return nil
        } catch {
            return Self.outcome(forTokenError: error)
        }
    }

    /// Sends one message and classifies the result. On 40001/40014/42001 it invalidates the failing
    /// token if it is still cached, gets a token again and retries exactly once.
    public func send(_ message: SubscribeMessage) async -> SendOutcome {
        await serializer.acquire(message.touser)
        let outcome = await sendSerialized(message)
        await serializer.release(message.touser)
        return outcome
    }

    private func sendSerialized(_ message: SubscribeMessage) async -> SendOutcome {
        var outcome = SendOutcome.inDoubt(reason: "not attempted")
        for attempt in 0..<2 {
            let token: AccessToken
            do {
                token = try await tokens.token()
            } catch {
                return Self.outcome(forTokenError: error)
            }
            outcome = await api.sendSubscribeMessage(message, accessToken: token.value)
            guard case .tokenInvalid = outcome, attempt == 0 else { return outcome }
            await tokens.invalidate(ifStill: token.value)
        }
        return outcome
    }

    /// A token that cannot be had stops the send before WeChat sees it: transient failures are
    /// retryable, 45009 (token quota) pauses sending, the rest (bad secret, IP whitelist) need the config fixed.
    static func outcome(forTokenError error: WeChatAPIError) -> SendOutcome {
        switch error {
        case .errcode(45009, _):
            return .quotaExhausted
        case .errcode(let code, let message) where error.isTransient:
            return .retryable(errcode: String(code), errmsg: "access token: \(message)")
        case .errcode(let code, let message):
            return .configError(errcode: code, errmsg: "access token: \(message)")
        case .transport(let why), .badResponse(let why):
            return .retryable(errcode: "token_unavailable", errmsg: why)
        }
    }
}

/// Per-openid mutual exclusion with a FIFO wait queue: WeChat answers 43108 to concurrent sends
/// to one user, so a second send to an openid waits for the first to finish.
public actor OpenIDSerializer {
    private var waiting: [String: [CheckedContinuation<Void, Never>]] = [:]

    public init() {}

    /// Returns when the caller holds `openid`; pair every call with `release`.
    public func acquire(_ openid: String) async {
        guard waiting[openid] != nil else {
            waiting[openid] = []
            return
        }
        await withCheckedContinuation { continuation in
            waiting[openid, default: []].append(continuation)
        }
    }

    /// Hands `openid` to the next waiter, or frees it.
    public func release(_ openid: String) {
        guard var queue = waiting[openid] else { return }
        if queue.isEmpty {
            waiting[openid] = nil
        } else {
            let next = queue.removeFirst()
            waiting[openid] = queue
            next.resume()
        }
    }

    /// How many openids are held right now (for tests and the benchmark).
    public var heldCount: Int { waiting.count }
}
