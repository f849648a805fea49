/// The access token cached in SQLite, so a restart does not fetch a new one (SPEC §5.11).
struct SQLiteAccessTokenCache: AccessTokenCache {
    let store: RoundupStore
    let clock: any WallClock

    func load() async throws -> AccessToken? {
        try store.cachedAccessToken().map { AccessToken(value: $0.token, expiresAt: $0.expiresAt.date) }
    }

    func save(_ token: AccessToken) async throws {
        try store.saveAccessToken(token.value, expiresAt: Timestamp(token.expiresAt), now: clock.timestamp)
    }
}
