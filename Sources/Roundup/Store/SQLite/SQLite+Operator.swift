import GRDB

/// The operator's writes on SQLite.
extension SQLiteTransaction {
    public func setFlushRequest(_ id: Int64, at: Timestamp, force: Bool, now: Timestamp) throws -> Bool {
        cache?.forget(digest: id)
        try db.execute(
            sql: "UPDATE digests SET due_at = ?, flush_requested = ?, updated_at = ? WHERE id = ? AND state = 'open'",
            arguments: [at.milliseconds, force ? 2 : 1, now.milliseconds, id])
        return db.changesCount > 0
    }

    public func movePendingMessages(from source: Int64, to target: Int64) throws -> Int {
        cache?.clear()
        try db.execute(
            sql: "UPDATE messages SET digest_id = ? WHERE digest_id = ? AND status = 'pending'", arguments: [target, source])
        return db.changesCount
    }

    public func resetAttempts(_ id: Int64, now: Timestamp) throws {
        try db.execute(sql: "UPDATE digests SET attempts = 0, updated_at = ? WHERE id = ?", arguments: [now.milliseconds, id])
    }

    public func templateID(ofDigest id: Int64) throws -> String? {
        try String.fetchOne(db, sql: "SELECT template_id FROM digests WHERE id = ?", arguments: [id])
    }

    public func clearSendPause(_ key: SendPauseKey) throws -> Bool {
        try db.execute(sql: "DELETE FROM send_pauses WHERE key = ?", arguments: [key.rawValue])
        return db.changesCount > 0
    }

    public func clearExpiredSendPauses(now: Timestamp) throws {
        try db.executeCached(sql: "DELETE FROM send_pauses WHERE until_at IS NOT NULL AND until_at <= ?", arguments: [now.milliseconds])
    }

    public func clearTemplatePauses() throws {
        try db.executeCached(sql: "DELETE FROM send_pauses WHERE key LIKE 'template:%'")
    }

    public func attempts(_ id: Int64) throws -> Int {
        try Int.cachedOne(db, sql: "SELECT attempts FROM digests WHERE id = ?", arguments: [id]) ?? 0
    }

    public func digestIDs(in state: DigestState) throws -> [Int64] {
        try Int64.cachedAll(db, sql: "SELECT id FROM digests WHERE state = ? ORDER BY id", arguments: [state.rawValue])
    }

    public func claimDueDigests(now: Timestamp, limit: Int, excluding: Set<Int64>) throws -> [DueDigest] {
        Array(try dueDigests(.dueBy(now), limit: limit + excluding.count).lazy.filter { !excluding.contains($0.id) }.prefix(limit))
    }

    public func holdsSendRight(_ id: Int64) throws -> Bool { true }

    public func releaseClaims() throws {}

    public func orphanedSends() throws -> [Int64] { try digestIDs(in: .sending) }

    public func notifyInstances() throws {}

    public func tryExclusive(_ job: ExclusiveJob) throws -> Bool { true }

    public func lockPendingFanout(_ id: Int64) throws -> Bool {
        try String.cachedOne(db, sql: "SELECT fanout_state FROM group_messages WHERE id = ?", arguments: [id]) == "pending"
    }

    public func takeTokenRefreshLease(seconds: Double) throws -> Bool { true }

    public func releaseTokenRefreshLease() throws {}
}
