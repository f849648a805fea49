import Logging

/// The access token cached in the database, so a restart does not fetch a new one. A failed
/// save is logged and counted (the token still works from memory).
struct StoreAccessTokenCache: AccessTokenCache {
    let store: RoundupStore
    let clock: any WallClock
    let metrics: RoundupMetrics
    let logger: Logger

    func load() async throws -> AccessToken? {
        try await store.cachedAccessTokenAsync().map { AccessToken(value: $0.token, expiresAt: $0.expiresAt.date) }
    }

    func save(_ token: AccessToken) async throws {
        do {
            try await store.saveAccessTokenAsync(token.value, expiresAt: Timestamp(token.expiresAt), now: clock.timestamp)
        } catch {
            metrics.storeError(.tokenCache)
            logger.error("cannot save the access token in the database; it is kept in memory", metadata: ["error": "\(error)"])
            throw error
        }
    }

    /// On PostgreSQL a lease row by the database's clock: one instance fetches, the others read
    /// the token it saves. The lease outlives a hung fetch by at most `leaseSeconds`.
    func beginRefresh() async -> Bool {
        (try? await store.write { tx in try tx.takeTokenRefreshLease(seconds: Self.leaseSeconds) }) ?? true
    }

    func endRefresh() async {
        _ = try? await store.write { tx in try tx.releaseTokenRefreshLease() }
    }

    static let leaseSeconds = 30.0
}
