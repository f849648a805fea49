import Foundation
import GRDB

/// The reads and writes of the send pipeline and housekeeping, through GRDB's async API: they
/// suspend instead of holding a thread of the cooperative pool while SQLite works or waits
/// for the write lock.
extension RoundupStore {
    /// `dueDigests`, for held ones.
    public func heldDigestsAsync(limit: Int = 5000) async throws -> [DueDigest] {
        try await writer.read { db in try Self.dueRows(db, where: "d.state = 'held'", [], limit: limit) }
    }

    /// The pending messages of a digest with their senders' bound names.
    public func digestMessagesAsync(_ id: Int64) async throws -> [DigestMessageRow] {
        try await writer.read { db in try Self.digestMessageRows(db, id) }
    }

    /// The sending pauses in force.
    public func sendPausesAsync() async throws -> SendPauses {
        try await writer.read { db in try StoreTransaction(db).sendPauses() }
    }

    /// Whether a pause with this key is in force.
    public func hasSendPauseAsync(_ key: SendPauseKey) async throws -> Bool {
        try await writer.read { db in try StoreTransaction(db).sendPauses().contains(key) }
    }

    /// Ends pauses whose time is up (the quota day passed).
    public func clearExpiredSendPauses(now: Timestamp) async throws {
        try await writer.write { db in
            try db.executeCached(sql: "DELETE FROM send_pauses WHERE until_at IS NOT NULL AND until_at <= ?", arguments: [now.milliseconds])
        }
    }

    /// Ends every template pause (the templates in config changed).
    public func clearTemplatePauses() async throws {
        try await writer.write { db in try db.executeCached(sql: "DELETE FROM send_pauses WHERE key LIKE 'template:%'") }
    }

    /// The credits of many openids at once, by openid then template id.
    public func creditsAsync(openids: [String]) async throws -> [String: [String: Credit]] {
        guard !openids.isEmpty else { return [:] }
        return try await writer.read { db in try Self.credits(db, openids: openids) }
    }

    /// One openid's credits by template, and the pauses in force, read together.
    public func creditsAndPauses(openid: String) async throws -> (credits: [String: Credit], pauses: SendPauses) {
        try await writer.read { db in
            (try Self.credits(db, openids: [openid])[openid] ?? [:], try StoreTransaction(db).sendPauses())
        }
    }

    /// Digests left in `sending` by a crash become `in_doubt`; returns their ids.
    public func recoverInterruptedSendsAsync(now: Timestamp) async throws -> [Int64] {
        try await write { tx in try tx.recoverInterruptedSends(now: now) }
    }

    /// `purgeText`, suspending instead of blocking.
    public func purgeTextAsync(finishedBefore cutoff: Timestamp, now: Timestamp) async throws -> Int {
        try await writer.write { db in try Self.purgeText(db, finishedBefore: cutoff, now: now) }
    }

    /// Copies the write-ahead log into the database file and truncates it to zero bytes, so that
    /// erased text (purged, recalled, a user erased) is no longer in the WAL; with
    /// `secure_delete` on every connection, freed pages are zeroed too. Readers holding an old
    /// snapshot block the truncation: it is retried a few times, then left to the next round.
    /// Returns whether the log was truncated.
    @discardableResult
    public func truncateWAL(tries: Int = 10) async -> Bool {
        guard path != nil else { return true }
        for attempt in 0..<tries {
            let busy = try? await writer.writeWithoutTransaction { db -> Bool in
                let row = try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)")
                return (row?[0] as Int?) != 0
            }
            if busy == false { return true }
            if attempt < tries - 1 { try? await Task.sleep(for: .milliseconds(50)) }
        }
        return false
    }
}

extension RoundupStore {
    /// When the user's last send started (`min_interval` counts from there); see `StoreTransaction.lastSendStart`.
    public func lastSendStart(user: String, excluding digest: Int64? = nil) throws -> Timestamp? {
        try writer.read { db in try StoreTransaction(db).lastSendStart(user: user, excluding: digest) }
    }
}

extension RoundupStore {
    /// The cached WeChat access token and its expiry, if any.
    public func cachedAccessTokenAsync() async throws -> (token: String, expiresAt: Timestamp)? {
        try await writer.read { db in
            try Row.cachedOne(db, sql: "SELECT token, expires_at FROM access_token WHERE id = 1")
                .map { ($0["token"], Timestamp(milliseconds: $0["expires_at"])) }
        }
    }

    /// Stores the access token (one row).
    public func saveAccessTokenAsync(_ token: String, expiresAt: Timestamp, now: Timestamp) async throws {
        try await writer.write { db in
            try db.executeCached(
                sql: """
                    INSERT INTO access_token (id, token, expires_at, fetched_at) VALUES (1, ?, ?, ?)
                    ON CONFLICT (id) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at, fetched_at = excluded.fetched_at
                    """,
                arguments: [token, expiresAt.milliseconds, now.milliseconds])
        }
    }
}

extension StoreTransaction {
    /// How many tries a digest has had (backoff counts them).
    public func attempts(_ id: Int64) throws -> Int {
        try Int.cachedOne(db, sql: "SELECT attempts FROM digests WHERE id = ?", arguments: [id]) ?? 0
    }

    /// Digests left in `sending` by a crash become `in_doubt`; returns their ids.
    public func recoverInterruptedSends(now: Timestamp) throws -> [Int64] {
        let ids = try Int64.cachedAll(db, sql: "SELECT id FROM digests WHERE state = 'sending'")
        for id in ids {
            try moveDigest(id, from: .sending, to: .inDoubt, now: now,
                           note: "Roundup stopped during the WeChat call; WeChat may have delivered it, so it is not resent")
        }
        return ids
    }
}
