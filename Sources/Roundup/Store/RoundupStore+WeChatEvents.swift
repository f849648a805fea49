import GRDB

/// One `subscribe_msg_sent_event` item: WeChat's final word on a message it accepted.
public struct SentEventRecord: Sendable, Equatable {
    public var msgID: String
    public var openid: String
    public var templateID: String
    public var errorCode: Int64
    public var errorStatus: String?
    /// `CreateTime`, Unix seconds.
    public var createTime: Int64

    public init(msgID: String, openid: String, templateID: String, errorCode: Int64, errorStatus: String?, createTime: Int64) {
        self.msgID = msgID
        self.openid = openid
        self.templateID = templateID
        self.errorCode = errorCode
        self.errorStatus = errorStatus
        self.createTime = createTime
    }
}

extension StoreTransaction {
    /// Stores a sent-event item once (by MsgID and template) and notes it in the log of the
    /// digest that was sent with that MsgID. Returns that digest's id, if one matches.
    @discardableResult
    public func recordSentEvent(_ e: SentEventRecord, now: Timestamp) throws -> Int64? {
        try db.executeCached(
            sql: """
                INSERT INTO wechat_sent_events (msgid, openid, template_id, error_code, error_status, create_time, received_at)
                VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (msgid, template_id) DO NOTHING
                """,
            arguments: [e.msgID, e.openid, e.templateID, e.errorCode, e.errorStatus, e.createTime, now.milliseconds])
        guard db.changesCount > 0 else { return nil }
        guard let digest = try Int64.cachedOne(db, sql: "SELECT id FROM digests WHERE msgid = ?", arguments: [e.msgID]) else {
            return nil
        }
        try appendEvent(digest: digest, at: now, kind: .delivery,
                        detail: "WeChat reported ErrorCode \(e.errorCode)\(e.errorStatus.map { " (\($0))" } ?? "") for MsgID \(e.msgID)")
        return digest
    }
}

extension RoundupStore {
    /// Removes everything Roundup holds about a user (`DELETE …?erase=true`):
    /// their binding, credits, digests with their logs, messages to them, read marks and
    /// tombstones. Returns false when the user was unknown.
    public func eraseUser(_ id: String) throws -> Bool {
        try writer.write { db in
            let openid = try String.cachedOne(db, sql: "SELECT openid FROM users WHERE im_user_id = ?", arguments: [id])
            let known = try Bool.cachedOne(db, sql: """
                SELECT EXISTS (SELECT 1 FROM users WHERE im_user_id = ?) OR EXISTS (SELECT 1 FROM messages WHERE recipient = ?)
                    OR EXISTS (SELECT 1 FROM digests WHERE im_user_id = ?)
                """, arguments: [id, id, id]) ?? false
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
}
