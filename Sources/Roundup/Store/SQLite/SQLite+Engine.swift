import GRDB

/// The send pipeline's and housekeeping's statements on SQLite.
extension SQLiteTransaction {
    public func dueDigests(_ filter: DueFilter, limit: Int) throws -> [DueDigest] {
        let clause: String
        let args: [any DatabaseValueConvertible]
        switch filter {
        case .dueBy(let now):
            clause = "d.state = 'open' AND d.due_at <= ?"
            args = [now.milliseconds]
        case .held:
            clause = "d.state = 'held'"
            args = []
        case .id(let id):
            clause = "d.id = ?"
            args = [id]
        }
        return try Row.cachedAll(
            db,
            sql: """
                SELECT d.id, d.im_user_id, u.openid, u.name, u.profile, d.state, d.reason, d.due_at, d.attempts, d.flush_requested, d.urgent
                FROM digests d LEFT JOIN users u ON u.im_user_id = d.im_user_id
                WHERE \(clause) ORDER BY coalesce(d.due_at, 0), d.id LIMIT \(limit)
                """,
            arguments: StatementArguments(args)
        ).map { row in
            DueDigest(
                id: row["id"], imUserID: row["im_user_id"], openid: row["openid"], name: row["name"], profile: row["profile"],
                state: DigestState(rawValue: row["state"]) ?? .open, reason: (row["reason"] as String?).flatMap(DigestReason.init(rawValue:)),
                dueAt: (row["due_at"] as Int64?).map(Timestamp.init(milliseconds:)), attempts: row["attempts"],
                flushForce: (row["flush_requested"] as Int) == 2, flushed: (row["flush_requested"] as Int) != 0, urgent: row["urgent"])
        }
    }

    public func nextDueAt(after: Timestamp?) throws -> Timestamp? {
        if let after {
            return try Int64.cachedOne(db, sql: "SELECT min(due_at) FROM digests WHERE state = 'open' AND due_at > ?", arguments: [after.milliseconds])
                .map(Timestamp.init(milliseconds:))
        }
        return try Int64.cachedOne(db, sql: "SELECT min(due_at) FROM digests WHERE state = 'open'").map(Timestamp.init(milliseconds:))
    }

    public func digestMessages(_ id: Int64) throws -> [DigestMessageRow] {
        try Row.cachedAll(
            db,
            sql: """
                SELECT m.id, m.sender, u.name, m.sender_name_card, m.msg_time, coalesce(m.summary, '') AS summary
                FROM messages m LEFT JOIN users u ON u.im_user_id = m.sender
                WHERE m.digest_id = ? AND m.status = 'pending' ORDER BY m.msg_time, m.id
                """,
            arguments: [id]
        ).map {
            DigestMessageRow(id: $0["id"], sender: $0["sender"], senderName: $0["name"], senderNameCard: $0["sender_name_card"],
                             msgTime: $0["msg_time"], summary: $0["summary"])
        }
    }

    public func purgeText(finishedBefore cutoff: Timestamp, now: Timestamp) throws -> Int {
        cache?.remember(anyTombstone: nil)
        // Every status change sets status_at, so the partial index messages_text_to_purge
        // holds exactly the rows this can change.
        try db.executeCached(sql: """
            UPDATE messages SET summary = NULL WHERE summary IS NOT NULL AND status <> 'pending' AND status_at < ?
            """, arguments: [cutoff.milliseconds])
        try db.executeCached(sql: """
            UPDATE digests SET body = NULL WHERE body IS NOT NULL AND finished_at IS NOT NULL AND finished_at < ?
            """, arguments: [cutoff.milliseconds])
        let purged = db.changesCount
        try db.executeCached(sql: "DELETE FROM recall_tombstones WHERE expires_at <= ?", arguments: [now.milliseconds])
        return purged
    }
}

extension SQLiteTransaction {
    public func recordSendStart(_ id: Int64, template: String, body: String, now: Timestamp) throws {
        try db.executeCached(
            sql: "UPDATE digests SET template_id = ?, body = ?, sending_at = ?, attempts = attempts + 1 WHERE id = ?",
            arguments: [template, body, now.milliseconds, id])
    }

    /// Counts a try that stopped before WeChat was called (`markSending` counts the others).
    public func countAttempt(_ id: Int64) throws {
        try db.executeCached(sql: "UPDATE digests SET attempts = attempts + 1 WHERE id = ?", arguments: [id])
    }

    /// Records the WeChat result fields on a digest.
    public func setResult(_ id: Int64, errcode: String?, errmsg: String?, msgid: String?) throws {
        try db.executeCached(sql: "UPDATE digests SET errcode = ?, errmsg = ?, msgid = coalesce(?, msgid) WHERE id = ?",
                       arguments: [errcode, errmsg, msgid, id])
    }

    /// Sets an open digest's due time and clears any flush request.
    public func setDue(_ id: Int64, _ due: Timestamp, now: Timestamp) throws {
        cache?.forget(digest: id)
        try db.executeCached(sql: "UPDATE digests SET due_at = ?, flush_requested = 0, updated_at = ? WHERE id = ?",
                       arguments: [due.milliseconds, now.milliseconds, id])
    }

    /// Sending pauses in force, each with its end (nil: until the config changes).
    public func sendPauses() throws -> SendPauses {
        var out = SendPauses()
        for row in try Row.cachedAll(db, sql: "SELECT key, until_at FROM send_pauses") {
            guard let key = SendPauseKey(rawValue: row["key"]) else { continue }
            // updateValue: assigning a nil `until` through the subscript would drop the key.
            out.entries.updateValue((row["until_at"] as Int64?).map(Timestamp.init(milliseconds:)), forKey: key)
        }
        return out
    }

    /// Starts or extends a pause.
    public func setSendPause(_ key: SendPauseKey, until: Timestamp?, reason: String, now: Timestamp) throws {
        try db.executeCached(
            sql: """
                INSERT INTO send_pauses (key, until_at, reason, since_at) VALUES (?, ?, ?, ?)
                ON CONFLICT (key) DO UPDATE SET until_at = excluded.until_at, reason = excluded.reason
                """,
            arguments: [key.rawValue, until?.milliseconds, reason, now.milliseconds])
    }

    /// In-doubt digests of the user bound to `openid` with this template, attempted in a time range.
    public func inDoubtDigests(openid: String, templateID: String, sendingBetween from: Timestamp, and to: Timestamp) throws -> [Int64] {
        try Int64.cachedAll(
            db,
            sql: """
                SELECT d.id FROM digests d JOIN users u ON u.im_user_id = d.im_user_id
                WHERE u.openid = ? AND d.template_id = ? AND d.state = 'in_doubt' AND d.sending_at BETWEEN ? AND ?
                ORDER BY d.sending_at
                """,
            arguments: [openid, templateID, from.milliseconds, to.milliseconds])
    }

    /// Active digests holding a pending message received before `cutoff`, with their oldest
    /// pending message's receipt (for retention). Visits only the old pending messages.
    public func activeDigests(withPendingBefore cutoff: Timestamp) throws -> [(id: Int64, user: String, state: DigestState, oldest: Timestamp)] {
        try Row.cachedAll(
            db,
            sql: """
                SELECT d.id, d.im_user_id, d.state, min(m.received_at) AS oldest
                FROM messages m INDEXED BY messages_pending_by_received JOIN digests d ON d.id = m.digest_id
                WHERE m.status = 'pending' AND m.received_at < ? AND d.state IN ('open', 'held') GROUP BY d.id
                """,
            arguments: [cutoff.milliseconds]
        ).map { ($0["id"], $0["im_user_id"], DigestState(rawValue: $0["state"]) ?? .open, Timestamp(milliseconds: $0["oldest"])) }
    }

    /// Unjoined messages (kept while their recipient was online) received before `cutoff` are
    /// dropped: the recipient never went offline to need them. Returns how many.
    public func dropUnjoined(receivedBefore cutoff: Timestamp, now: Timestamp) throws -> Int {
        try db.executeCached(
            sql: """
                UPDATE messages INDEXED BY messages_pending_by_received SET status = 'dropped', status_at = ?
                WHERE status = 'pending' AND received_at < ? AND digest_id IS NULL
                """,
            arguments: [now.milliseconds, cutoff.milliseconds])
        return db.changesCount
    }

    /// Marks a digest's pending messages received before `cutoff` as expired; returns how many.
    public func expireMessages(ofDigest id: Int64, receivedBefore cutoff: Timestamp, now: Timestamp) throws -> Int {
        cache?.forget(digest: id)
        try db.executeCached(
            sql: "UPDATE messages SET status = 'expired', status_at = ? WHERE digest_id = ? AND status = 'pending' AND received_at < ?",
            arguments: [now.milliseconds, id, cutoff.milliseconds])
        return db.changesCount
    }
}

extension SQLiteTransaction {
    /// Every open digest (or one user's) with its timing facts.
    public func openDigestTimings(user: String?) throws -> [OpenDigestTiming] {
        try Row.cachedAll(
            db,
            sql: """
                SELECT d.id, d.im_user_id, u.profile, d.window_start_at, d.last_message_at, d.due_at, d.urgent, d.flush_requested,
                       (SELECT COUNT(*) FROM messages m WHERE m.digest_id = d.id AND m.status = 'pending') AS pending
                FROM digests d LEFT JOIN users u ON u.im_user_id = d.im_user_id
                WHERE d.state = 'open' \(user == nil ? "" : "AND d.im_user_id = ?")
                """,
            arguments: StatementArguments(user.map { [$0] } ?? [])
        ).map { row in
            OpenDigestTiming(
                id: row["id"], imUserID: row["im_user_id"], profile: row["profile"],
                windowStartAt: Timestamp(milliseconds: row["window_start_at"]),
                lastMessageAt: (row["last_message_at"] as Int64?).map(Timestamp.init(milliseconds:)),
                dueAt: Timestamp(milliseconds: row["due_at"]), urgent: row["urgent"], pendingCount: row["pending"],
                flushRequested: row["flush_requested"])
        }
    }
}
