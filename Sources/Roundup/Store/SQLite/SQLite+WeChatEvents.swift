import GRDB

/// WeChat's sent events, the access token and erasure on SQLite.
extension SQLiteTransaction {
    public func insertSentEvent(_ e: SentEventRecord, now: Timestamp) throws -> Bool {
        try db.executeCached(
            sql: """
                INSERT INTO wechat_sent_events (msgid, openid, template_id, error_code, error_status, create_time, received_at)
                VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (msgid, template_id) DO NOTHING
                """,
            arguments: [e.msgID, e.openid, e.templateID, e.errorCode, e.errorStatus, e.createTime, now.milliseconds])
        return db.changesCount > 0
    }

    public func digestID(msgid: String) throws -> Int64? {
        try Int64.cachedOne(db, sql: "SELECT id FROM digests WHERE msgid = ?", arguments: [msgid])
    }

    public func sentEvent(openid: String, templateID: String, createdBetween from: Int64, and to: Int64) throws -> (msgid: String, errorCode: Int64)? {
        try Row.cachedOne(
            db,
            sql: """
                SELECT msgid, error_code FROM wechat_sent_events WHERE openid = ? AND template_id = ? AND create_time BETWEEN ? AND ?
                ORDER BY create_time DESC LIMIT 1
                """,
            arguments: [openid, templateID, from, to]
        ).map { ($0["msgid"], $0["error_code"]) }
    }

    public func cachedAccessToken() throws -> (token: String, expiresAt: Timestamp)? {
        try Row.cachedOne(db, sql: "SELECT token, expires_at FROM access_token WHERE id = 1")
            .map { ($0["token"], Timestamp(milliseconds: $0["expires_at"])) }
    }

    public func saveAccessToken(_ token: String, expiresAt: Timestamp, now: Timestamp) throws {
        try db.executeCached(
            sql: """
                INSERT INTO access_token (id, token, expires_at, fetched_at) VALUES (1, ?, ?, ?)
                ON CONFLICT (id) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at, fetched_at = excluded.fetched_at
                """,
            arguments: [token, expiresAt.milliseconds, now.milliseconds])
    }

    public func eraseUser(_ id: String) throws -> Bool {
        cache?.clear()
        let openid = try String.cachedOne(db, sql: "SELECT openid FROM users WHERE im_user_id = ?", arguments: [id])
        let known = try isKnown(user: id)
        if let openid {
            try db.executeCached(sql: "DELETE FROM credits WHERE openid = ?", arguments: [openid])
            try db.executeCached(sql: "DELETE FROM wechat_sent_events WHERE openid = ?", arguments: [openid])
        }
        try db.executeCached(sql: "DELETE FROM messages WHERE recipient = ?", arguments: [id])
        try db.executeCached(sql: "DELETE FROM digests WHERE im_user_id = ?", arguments: [id])
        try db.executeCached(sql: "DELETE FROM read_marks WHERE recipient = ? OR peer = ?", arguments: [id, id])
        try db.executeCached(sql: "DELETE FROM recall_tombstones WHERE to_account = ?", arguments: [id])
        try db.executeCached(sql: "DELETE FROM users WHERE im_user_id = ?", arguments: [id])
        return known
    }
}
