import GRDB

/// A stored message as the operator's views and the tests see it (no text).
public struct StoredMessage: Sendable, Equatable {
    public var id: Int64
    public var msgKey: String?
    public var groupMessageID: Int64?
    public var recipient: String
    public var sender: String
    public var msgTime: Int64
    public var receivedAt: Timestamp
    public var status: String
    public var digestID: Int64?
    public var urgent: Bool
    public var hasText: Bool
}

extension RoundupStore {
    /// The user's open or held digest.
    public func activeDigest(for user: String) throws -> ActiveDigest? {
        try writer.read { db in try StoreTransaction(db).activeDigest(for: user) }
    }

    /// Every digest of a user, newest first.
    public func digests(for user: String) throws -> [DigestRow] {
        try writer.read { db in
            try DigestRecord.filter(Column("im_user_id") == user).order(Column("id").desc).fetchAll(db).map(\.row)
        }
    }

    /// Messages kept for a recipient, oldest first.
    public func messages(recipient: String) throws -> [StoredMessage] {
        try writer.read { db in
            try Row.cachedAll(
                db,
                sql: """
                    SELECT id, msg_key, group_message_id, recipient, sender, msg_time, received_at, status, digest_id, urgent,
                           summary IS NOT NULL AS has_text
                    FROM messages WHERE recipient = ? ORDER BY received_at, id
                    """,
                arguments: [recipient]
            ).map { row in
                StoredMessage(
                    id: row["id"], msgKey: row["msg_key"], groupMessageID: row["group_message_id"], recipient: row["recipient"],
                    sender: row["sender"], msgTime: row["msg_time"], receivedAt: Timestamp(milliseconds: row["received_at"]),
                    status: row["status"], digestID: row["digest_id"], urgent: row["urgent"], hasText: row["has_text"])
            }
        }
    }

    /// The number of stored rows for a group message key (0 or 1) and its fan-out state.
    public func groupMessage(groupID: String, msgSeq: Int64) throws -> (id: Int64, fanoutState: String)? {
        try writer.read { db in
            try Row.cachedOne(
                db, sql: "SELECT id, fanout_state FROM group_messages WHERE group_id = ? AND msg_seq = ?", arguments: [groupID, msgSeq]
            ).map { ($0["id"], $0["fanout_state"]) }
        }
    }
}
