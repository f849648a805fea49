import GRDB

/// `StoreTransaction` on SQLite: the statements of one transaction on a GRDB connection.
public struct SQLiteTransaction: StoreTransaction {
    let db: Database
    /// The writer's cache, in write transactions on the writer connection only (see
    /// `SQLiteWriterCache` for the rules every write primitive here follows).
    let cache: SQLiteWriterCache?

    init(_ db: Database, cache: SQLiteWriterCache? = nil) {
        self.db = db
        self.cache = cache
    }

    public func inSavepoint<T>(_ body: () throws -> T) throws -> T {
        // Through cached statements: GRDB's `inSavepoint` compiles its statements on every call,
        // which costs more than a small job itself.
        try db.executeCached(sql: "SAVEPOINT job")
        let value: T
        do {
            value = try body()
        } catch {
            cache?.clear()
            try db.executeCached(sql: "ROLLBACK TO SAVEPOINT job")
            try db.executeCached(sql: "RELEASE SAVEPOINT job")
            throw error
        }
        try db.executeCached(sql: "RELEASE SAVEPOINT job")
        return value
    }

    // MARK: users

    /// The user, or nil.
    public func user(_ id: String) throws -> User? {
        if let cached = cache?.user(id) { return cached }
        let user = try Row.cachedOne(db, sql: "SELECT \(Self.userColumns) FROM users WHERE im_user_id = ?", arguments: [id]).map(Self.user)
        cache?.remember(user: id, user)
        return user
    }

    // MARK: messages

    /// Inserts a C2C message unless its `MsgKey` is stored already; returns the new row id.
    public func insertMessage(_ m: NewMessage, senderNameCard: String?, groupMessageID: Int64?) throws -> Int64? {
        // Stored outside any digest until it joins one.
        cache?.insertedMessage(to: m.recipient)
        if let groupMessageID {
            // Group copies are keyed by (group message, recipient); they carry no MsgKey.
            try db.executeCached(
                sql: """
                    INSERT INTO messages (group_message_id, recipient, sender, sender_name_card, msg_time, received_at, summary, urgent)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING
                    """,
                arguments: [groupMessageID, m.recipient, m.sender, senderNameCard, m.msgTime, m.receivedAt.milliseconds, m.summary, m.urgent])
        } else {
            try db.executeCached(
                sql: """
                    INSERT INTO messages (msg_key, recipient, sender, sender_name_card, msg_time, received_at, summary, urgent)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING
                    """,
                arguments: [m.msgKey, m.recipient, m.sender, senderNameCard, m.msgTime, m.receivedAt.milliseconds, m.summary, m.urgent])
        }
        return db.changesCount > 0 ? db.lastInsertedRowID : nil
    }

    /// Whether a row with this `MsgKey` exists (any status).
    public func messageExists(msgKey: String) throws -> Bool {
        try Bool.cachedOne(db, sql: "SELECT EXISTS (SELECT 1 FROM messages WHERE msg_key = ?)", arguments: [msgKey]) ?? false
    }

    /// The C2C message with this key and recipient.
    public func message(msgKey: String, recipient: String) throws -> PendingMessageRef? {
        try Row.cachedOne(
            db, sql: "SELECT id, recipient, digest_id, received_at, status FROM messages WHERE msg_key = ? AND recipient = ?",
            arguments: [msgKey, recipient]
        ).map(Self.ref)
    }

    /// Pending messages of a recipient not joined to any digest, oldest first.
    public func unjoinedMessages(recipient: String) throws -> [PendingMessageRef] {
        let found = try Row.cachedAll(
            db,
            sql: """
                SELECT id, recipient, digest_id, received_at, status FROM messages
                WHERE recipient = ? AND status = 'pending' AND digest_id IS NULL ORDER BY received_at, id
                """,
            arguments: [recipient]
        ).map(Self.ref)
        if found.isEmpty { cache?.remember(noUnjoinedOf: recipient) }
        return found
    }

    /// Pending C2C messages from `sender` to `recipient` sent at or before `msgTime` (a read report).
    public func pendingC2CMessages(recipient: String, sender: String, upToMsgTime msgTime: Int64) throws -> [PendingMessageRef] {
        try Row.cachedAll(
            db,
            sql: """
                SELECT id, recipient, digest_id, received_at, status FROM messages
                WHERE recipient = ? AND sender = ? AND status = 'pending' AND msg_time <= ? AND group_message_id IS NULL
                """,
            arguments: [recipient, sender, msgTime]
        ).map(Self.ref)
    }

    /// Moves messages into a digest.
    public func join(messages ids: [Int64], to digest: Int64) throws {
        for id in ids {
            try db.executeCached(sql: "UPDATE messages SET digest_id = ? WHERE id = ?", arguments: [digest, id])
        }
        // Only pending messages join a digest (new ones, or those kept while the user was online).
        cache?.joined(ids.count, to: digest)
    }

    /// Ends messages' pending life with a status (`read`, `recalled`, `seen`, `dropped`, …);
    /// `eraseText` removes the summary at once (recalls).
    public func setStatus(of ids: [Int64], to status: MessageStatus, at: Timestamp, eraseText: Bool) throws {
        // Pending counts of digests it does not know change.
        cache?.clear()
        let sql = eraseText
            ? "UPDATE messages SET status = ?, status_at = ?, summary = NULL WHERE id = ?"
            : "UPDATE messages SET status = ?, status_at = ? WHERE id = ?"
        for id in ids {
            try db.executeCached(sql: sql, arguments: [status.rawValue, at.milliseconds, id])
        }
    }

    /// Erases a message's text (a recall after its digest was sent).
    public func eraseText(messageID: Int64) throws {
        try db.executeCached(sql: "UPDATE messages SET summary = NULL WHERE id = ?", arguments: [messageID])
    }

    /// Marks every pending message of a digest with a final status.
    public func setStatus(ofDigest digest: Int64, to status: MessageStatus, at: Timestamp) throws {
        cache?.forget(digest: digest)
        try db.executeCached(
            sql: "UPDATE messages SET status = ?, status_at = ? WHERE digest_id = ? AND status = 'pending'",
            arguments: [status.rawValue, at.milliseconds, digest])
    }

    // MARK: read marks and tombstones

    /// The newest `LastReadTime` applied for a (reader, peer) pair.
    public func readMark(recipient: String, peer: String) throws -> Int64? {
        try Int64.cachedOne(db, sql: "SELECT last_read_time FROM read_marks WHERE recipient = ? AND peer = ?", arguments: [recipient, peer])
    }

    public func setReadMark(recipient: String, peer: String, lastReadTime: Int64) throws {
        try db.executeCached(
            sql: """
                INSERT INTO read_marks (recipient, peer, last_read_time) VALUES (?, ?, ?)
                ON CONFLICT (recipient, peer) DO UPDATE SET last_read_time = excluded.last_read_time
                """,
            arguments: [recipient, peer, lastReadTime])
    }

    /// Whether a live recall tombstone exists for the key.
    public func isTombstoned(msgKey: String, now: Timestamp) throws -> Bool {
        if let cache {
            // Recalls of messages not yet seen are rare: while no tombstone exists at all, the
            // lookup is skipped.
            if cache.anyTombstone == nil {
                cache.remember(anyTombstone: try Bool.cachedOne(db, sql: "SELECT EXISTS (SELECT 1 FROM recall_tombstones)") ?? true)
            }
            if cache.anyTombstone == false { return false }
        }
        return try Bool.cachedOne(
            db, sql: "SELECT EXISTS (SELECT 1 FROM recall_tombstones WHERE msg_key = ? AND expires_at > ?)",
            arguments: [msgKey, now.milliseconds]) ?? false
    }

    public func addTombstone(msgKey: String, to: String, expiresAt: Timestamp) throws {
        cache?.remember(anyTombstone: true)
        try db.executeCached(
            sql: """
                INSERT INTO recall_tombstones (msg_key, to_account, expires_at) VALUES (?, ?, ?)
                ON CONFLICT (msg_key) DO UPDATE SET expires_at = excluded.expires_at
                """,
            arguments: [msgKey, to, expiresAt.milliseconds])
    }

    // MARK: digests

    /// The user's open or held digest with its pending message count.
    public func activeDigest(for user: String) throws -> ActiveDigest? {
        if let cached = cache?.activeDigest(of: user) { return cached }
        let digest = try readActiveDigest(for: user)
        cache?.remember(activeDigestOf: user, digest)
        return digest
    }

    private func readActiveDigest(for user: String) throws -> ActiveDigest? {
        guard let row = try Row.cachedOne(
            db,
            sql: """
                SELECT id, state, reason, window_start_at, last_message_at, due_at, urgent, flush_requested,
                       (SELECT COUNT(*) FROM messages m WHERE m.digest_id = d.id AND m.status = 'pending') AS pending
                FROM digests d WHERE im_user_id = ? AND state IN ('open', 'held')
                """,
            arguments: [user])
        else { return nil }
        return ActiveDigest(
            id: row["id"], state: DigestState(rawValue: row["state"]) ?? .open,
            reason: (row["reason"] as String?).flatMap(DigestReason.init(rawValue:)),
            windowStartAt: Timestamp(milliseconds: row["window_start_at"]),
            lastMessageAt: (row["last_message_at"] as Int64?).map(Timestamp.init(milliseconds:)),
            dueAt: (row["due_at"] as Int64?).map(Timestamp.init(milliseconds:)),
            urgent: row["urgent"], pendingCount: row["pending"], flushRequested: row["flush_requested"])
    }

    /// When the user's last send started: the newest `sending_at` of a `sending`, `sent`,
    /// `dry_run` or `in_doubt` digest other than `excluding` (`min_interval` counts from there, so
    /// a digest that comes due while the previous one is still being sent waits).
    public func lastSendStart(user: String, excluding digest: Int64?) throws -> Timestamp? {
        try Int64.cachedOne(
            db, sql: """
                SELECT max(sending_at) FROM digests
                WHERE im_user_id = ? AND state IN ('sending', 'sent', 'dry_run', 'in_doubt') AND id <> ?
                """,
            arguments: [user, digest ?? -1]
        ).map(Timestamp.init(milliseconds:))
    }

    /// A digest's current state.
    public func digestState(_ id: Int64) throws -> DigestState? {
        try String.cachedOne(db, sql: "SELECT state FROM digests WHERE id = ?", arguments: [id]).flatMap(DigestState.init(rawValue:))
    }

    /// Pending messages left in a digest.
    public func pendingCount(digest: Int64) throws -> Int {
        try Int.cachedOne(db, sql: "SELECT COUNT(*) FROM messages WHERE digest_id = ? AND status = 'pending'", arguments: [digest]) ?? 0
    }

    public func insertDigest(for user: String, windowStart: Timestamp, dueAt: Timestamp, now: Timestamp) throws -> Int64 {
        cache?.forget(activeDigestOf: user)
        do {
            try db.executeCached(
                sql: """
                    INSERT INTO digests (im_user_id, state, opened_at, window_start_at, due_at, updated_at)
                    VALUES (?, 'open', ?, ?, ?, ?)
                    """,
                arguments: [user, now.milliseconds, windowStart.milliseconds, dueAt.milliseconds, now.milliseconds])
        } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
            throw StoreError.activeDigestExists(user: user)
        }
        let id = db.lastInsertedRowID
        // The row as inserted (the other columns' defaults, no message yet), so that the user's
        // next message finds it here instead of reading the table.
        cache?.remember(activeDigestOf: user, ActiveDigest(id: id, state: .open, reason: nil, windowStartAt: windowStart, lastMessageAt: nil,
                                                           dueAt: dueAt, urgent: false, pendingCount: 0, flushRequested: 0))
        return id
    }

    /// Records a new last message, the urgency flag and (for open digests) a new due time.
    public func updateDigestTiming(_ id: Int64, lastMessageAt: Timestamp?, dueAt: Timestamp?, urgent: Bool, now: Timestamp) throws {
        try db.executeCached(
            sql: """
                UPDATE digests SET last_message_at = coalesce(?, last_message_at),
                    due_at = CASE WHEN state = 'open' THEN coalesce(?, due_at) ELSE due_at END,
                    urgent = urgent OR ?, updated_at = ?
                WHERE id = ?
                """,
            arguments: [lastMessageAt?.milliseconds, dueAt?.milliseconds, urgent, now.milliseconds, id])
        cache?.retimed(id, lastMessageAt: lastMessageAt, dueAt: dueAt, urgent: urgent)
    }

    public func setDigestState(_ id: Int64, from: DigestState, to: DigestState, reason: DigestReason?, now: Timestamp) throws -> Bool {
        // A digest that becomes open or held again (an operator's retry) may be a user's active
        // one that the cache has as "none".
        if DigestState.active.contains(to) && !DigestState.active.contains(from) { cache?.clear() } else { cache?.forget(digest: id) }
        do {
            try db.executeCached(
                sql: """
                    UPDATE digests SET state = ?, reason = ?, updated_at = ?,
                        held_since = CASE WHEN ? = 'held' THEN coalesce(held_since, ?) ELSE NULL END,
                        finished_at = CASE WHEN ? IN ('sent', 'dry_run', 'cancelled', 'expired') THEN ? ELSE finished_at END
                    WHERE id = ? AND state = ?
                    """,
                arguments: [to.rawValue, reason?.rawValue, now.milliseconds, to.rawValue, now.milliseconds,
                            to.rawValue, now.milliseconds, id, from.rawValue])
        } catch let error as DatabaseError where error.message?.contains(StoreError.illegalTransitionMessage) == true {
            throw StoreError.illegalTransition(from: from, to: to)
        }
        return db.changesCount > 0
    }

    /// Appends to a digest's decision log.
    public func appendEvent(digest: Int64, at: Timestamp, kind: DigestEventKind, detail: String) throws {
        try db.executeCached(
            sql: "INSERT INTO digest_events (digest_id, at, kind, detail) VALUES (?, ?, ?, ?)",
            arguments: [digest, at.milliseconds, kind.rawValue, detail])
    }

    // MARK: group messages

    /// Stores a group message once per GroupId+MsgSeq; returns its row id, or nil for a duplicate.
    public func insertGroupMessage(_ g: NewGroupMessage) throws -> Int64? {
        try db.executeCached(
            sql: """
                INSERT INTO group_messages (group_id, msg_seq, group_type, sender, msg_time, received_at, summary, at_all, mentions, urgent)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (group_id, msg_seq) DO NOTHING
                """,
            arguments: [g.groupID, g.msgSeq, g.groupType, g.sender, g.msgTime, g.receivedAt.milliseconds, g.summary, g.atAll,
                        g.mentions.joined(separator: "\n"), g.urgent])
        return db.changesCount > 0 ? db.lastInsertedRowID : nil
    }

    /// Records that a group message's fan-out finished.
    public func finishFanout(_ id: Int64, state: String, at: Timestamp) throws {
        try db.executeCached(
            sql: "UPDATE group_messages SET fanout_state = ?, fanout_done_at = ? WHERE id = ?",
            arguments: [state, at.milliseconds, id])
    }

    static func ref(_ row: Row) -> PendingMessageRef {
        PendingMessageRef(
            id: row["id"], recipient: row["recipient"], digestID: row["digest_id"],
            receivedAt: Timestamp(milliseconds: row["received_at"]), status: MessageStatus(rawValue: row["status"]) ?? .pending)
    }
}

extension SQLiteTransaction {
    public func pendingGroupMessages(limit: Int) throws -> [PendingGroupMessage] {
        try Row.cachedAll(
            db,
            sql: """
                SELECT id, group_id, msg_seq, sender, msg_time, received_at, summary, at_all, mentions, urgent
                FROM group_messages WHERE fanout_state = 'pending' ORDER BY id LIMIT ?
                """,
            arguments: [limit]
        ).map { row in
            let mentions: String = row["mentions"]
            return PendingGroupMessage(
                id: row["id"], groupID: row["group_id"], msgSeq: row["msg_seq"], sender: row["sender"], msgTime: row["msg_time"],
                receivedAt: Timestamp(milliseconds: row["received_at"]), summary: row["summary"] ?? "", atAll: row["at_all"],
                mentions: mentions.split(separator: "\n").map(String.init), urgent: row["urgent"])
        }
    }

    public func groupMessage(groupID: String, msgSeq: Int64) throws -> (id: Int64, fanoutState: String)? {
        try Row.cachedOne(
            db, sql: "SELECT id, fanout_state FROM group_messages WHERE group_id = ? AND msg_seq = ?", arguments: [groupID, msgSeq]
        ).map { ($0["id"], $0["fanout_state"]) }
    }
}
