import Foundation

/// Where the access token survives restarts (it is cached in memory and in the database). The store
/// implements it; `InMemoryAccessTokenCache` serves tests.
public protocol AccessTokenCache: Sendable {
    func load() async throws -> AccessToken?
    func save(_ token: AccessToken) async throws
    /// Asks to be the one process that fetches a new token now; false while another holds that
    /// right (it will `save` what it gets). A cache used by one process always says yes.
    func beginRefresh() async -> Bool
    /// Gives the right back after a fetch, whatever its outcome.
    func endRefresh() async
}

extension AccessTokenCache {
    public func beginRefresh() async -> Bool { true }
    public func endRefresh() async {}
}

/// An `AccessTokenCache` that keeps the token in memory, and every save, for tests.
public actor InMemoryAccessTokenCache: AccessTokenCache {
    public private(set) var token: AccessToken?
    public private(set) var saves = 0

    public init(_ token: AccessToken? = nil) { self.token = token }

    public func load() async throws -> AccessToken? { token }

    public func save(_ token: AccessToken) async throws {
        self.token = token
        saves += 1
    }
}

/// The one owner of the access token: cached in memory (and the injected cache), refreshed with
/// `stable_token` when less than `refreshMargin` remains, with exactly one fetch in flight that
/// every concurrent caller awaits.
public actor AccessTokenManager {
    private let api: any WeChatAPI
    private let appID: String
    private let secret: String
    private let cache: (any AccessTokenCache)?
    private let refreshMargin: TimeInterval
    private let now: @Sendable () -> Date
    private let onRefresh: @Sendable () -> Void
    private let onFailure: @Sendable () -> Void

    private var current: AccessToken?
    private var refreshing = false
    private var waiters: [CheckedContinuation<Result<AccessToken, WeChatAPIError>, Never>] = []
    private var lastFetch: Date?

    /// A fresh token is not fetched again sooner than this, even if WeChat gave a short lifetime.
    static let minimumFetchInterval: TimeInterval = 30

    /// `onRefresh` runs after every successful fetch from WeChat (`roundup_access_token_refreshes_total`),
    /// `onFailure` after every fetch that failed (`roundup_access_token_failures_total`).
    public init(
        api: any WeChatAPI, appID: String, secret: String, cache: (any AccessTokenCache)? = nil,
        refreshMargin: Duration = .seconds(300), now: @escaping @Sendable () -> Date = { Date() },
        onRefresh: @escaping @Sendable () -> Void = {}, onFailure: @escaping @Sendable () -> Void = {}
    ) {
        self.api = api
        self.appID = appID
        self.secret = secret
        self.cache = cache
        self.refreshMargin = TimeInterval(refreshMargin.components.seconds) + TimeInterval(refreshMargin.components.attoseconds) / 1e18
        self.now = now
        self.onRefresh = onRefresh
        self.onFailure = onFailure
    }

    /// The token in memory, if any (for reports and tests).
    public var cachedToken: AccessToken? { current }

    /// A usable token: the cached one while more than `refreshMargin` remains, else the result of
    /// the single refresh in flight. When a refresh fails, a token that has not yet expired is still returned.
    public func token() async throws(WeChatAPIError) -> AccessToken {
        if let current, isFresh(current) { return current }
        if refreshing {
            return try await withCheckedContinuation { waiters.append($0) }.get()
        }
        refreshing = true
        let result = await refresh()
        refreshing = false
        let waiting = waiters
        waiters = []
        for waiter in waiting { waiter.resume(returning: result) }
        return try result.get()
    }

    /// Drops the cached token after WeChat refused it (40001/40014/42001), but only if it is still
    /// the one that failed: a concurrent sender may already have replaced it.
    public func invalidate(ifStill token: String) {
        if current?.value == token {
            current = nil
            lastFetch = nil
        }
    }

    private func isFresh(_ token: AccessToken) -> Bool {
        token.expiresAt.timeIntervalSince(now()) > refreshMargin
    }

    private func isUnexpired(_ token: AccessToken) -> Bool {
        token.expiresAt > now()
    }

    /// How long to wait for the token another process is fetching before fetching one here.
    static let sharedRefreshWait: Duration = .seconds(5)

    private func refresh() async -> Result<AccessToken, WeChatAPIError> {
        // Another process sharing the cache (an instance on the same database) may have
        // refreshed already, or be refreshing now: use its token rather than fetch another.
        if let cache, let stored = try? await cache.load(), isFresh(stored) {
            current = stored
            return .success(stored)
        }
        if let cache, await !cache.beginRefresh() {
            let deadline = ContinuousClock.now + Self.sharedRefreshWait
            while ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(200))
                if let stored = try? await cache.load(), isFresh(stored) {
                    current = stored
                    return .success(stored)
                }
            }
            // The other process did not deliver in time: fetch here (stable_token without
            // force_refresh does not invalidate the token the other one may still get).
        }
        let result = await fetch()
        await cache?.endRefresh()
        return result
    }

    private func fetch() async -> Result<AccessToken, WeChatAPIError> {
        // WeChat's stable token can be short-lived near rotation; do not hammer it.
        if let current, isUnexpired(current), let lastFetch, now().timeIntervalSince(lastFetch) < Self.minimumFetchInterval {
            return .success(current)
        }
        do {
            let grant = try await api.stableToken(appID: appID, secret: secret)
            let fetchedAt = now()
            let token = AccessToken(value: grant.accessToken, expiresAt: fetchedAt.addingTimeInterval(TimeInterval(grant.expiresIn)))
            current = token
            lastFetch = fetchedAt
            onRefresh()
            if let cache { try? await cache.save(token) }
            return .success(token)
        } catch {
            onFailure()
            if let current, isUnexpired(current) { return .success(current) }
            return .failure(error)
        }
    }
}
