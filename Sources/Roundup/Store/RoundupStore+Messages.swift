import GRDB

/// A one-to-one message to keep for its recipient.
public struct NewMessage: Sendable, Equatable {
    public var msgKey: String
    public var recipient: String
    public var sender: String
    /// IM `MsgTime`, seconds: shown in renders and used for ordering only.
    public var msgTime: Int64
    /// Roundup's receipt time: windows, retention and lookback use this.
    public var receivedAt: Timestamp
    /// The one-line summary; erased after `storage.text_retention`.
    public var summary: String
    public var urgent: Bool

    public init(msgKey: String, recipient: String, sender: String, msgTime: Int64, receivedAt: Timestamp, summary: String, urgent: Bool = false) {
        self.msgKey = msgKey
        self.recipient = recipient
        self.sender = sender
        self.msgTime = msgTime
        self.receivedAt = receivedAt
        self.summary = summary
        self.urgent = urgent
    }
}

extension RoundupStore {
    /// Stores a message unjoined unless it was seen before; the unique `msg_key` column decides,
    /// so concurrent writers store each `MsgKey` exactly once. Returns false for a duplicate.
    @discardableResult
    public func storeMessage(_ m: NewMessage, digest: Int64? = nil) throws -> Bool {
        try writer.write { db in
            try db.executeCached(
                sql: """
                    INSERT INTO messages (msg_key, recipient, sender, msg_time, received_at, summary, urgent, digest_id)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (msg_key) DO NOTHING
                    """,
                arguments: [m.msgKey, m.recipient, m.sender, m.msgTime, m.receivedAt.milliseconds, m.summary, m.urgent, digest])
            return db.changesCount > 0
        }
    }

    /// How many message rows are stored for a `MsgKey` (0 or 1).
    public func messageCount(msgKey: String) throws -> Int {
        try writer.read { db in
            try Int.cachedOne(db, sql: "SELECT COUNT(*) FROM messages WHERE msg_key = ?", arguments: [msgKey]) ?? 0
        }
    }

    /// Pending messages of a digest.
    public func messageCount(digest: Int64) throws -> Int {
        try writer.read { db in
            try Int.cachedOne(db, sql: "SELECT COUNT(*) FROM messages WHERE digest_id = ?", arguments: [digest]) ?? 0
        }
    }
}
