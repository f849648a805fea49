import GRDB

/// A digest whose due time has come, with what the send path needs about its user.
public struct DueDigest: Sendable, Equatable {
    public var id: Int64
    public var imUserID: String
    public var openid: String?
    public var name: String?
    public var profile: String?
    public var state: DigestState
    public var reason: DigestReason?
    public var dueAt: Timestamp?
    public var attempts: Int
    public var flushForce: Bool
    /// An operator's flush is pending (it skips `min_interval`).
    public var flushed: Bool = false
    /// An urgent message is in the digest (it skips `min_interval`).
    public var urgent: Bool = false
}

/// A pending message of a digest as the renderer needs it.
public struct DigestMessageRow: Sendable, Equatable {
    public var id: Int64
    public var sender: String
    public var senderName: String?
    public var senderNameCard: String?
    public var msgTime: Int64
    public var summary: String
}

extension RoundupStore {
    /// Open digests due at or before `now`, most overdue first.
    public func dueDigests(now: Timestamp, limit: Int = 1000) throws -> [DueDigest] {
        try writer.read { db in try Self.dueRows(db, where: "d.state = 'open' AND d.due_at <= ?", [now.milliseconds], limit: limit) }
    }

    /// `dueDigests` without blocking a thread of the cooperative pool.
    public func dueDigestsAsync(now: Timestamp, limit: Int = 1000) async throws -> [DueDigest] {
        try await writer.read { db in try Self.dueRows(db, where: "d.state = 'open' AND d.due_at <= ?", [now.milliseconds], limit: limit) }
    }

    /// The earliest due time of an open digest that is due after `now` (nil when none is).
    public func nextDueAt(after now: Timestamp) async throws -> Timestamp? {
        try await writer.read { db in
            try Int64.cachedOne(db, sql: "SELECT min(due_at) FROM digests WHERE state = 'open' AND due_at > ?", arguments: [now.milliseconds])
                .map(Timestamp.init(milliseconds:))
        }
    }

    /// Held digests (for re-checking bindings, credits and paused templates).
    public func heldDigests(limit: Int = 5000) throws -> [DueDigest] {
        try writer.read { db in try Self.dueRows(db, where: "d.state = 'held'", [], limit: limit) }
    }

    /// A digest as the send path sees it.
    public func dueDigest(_ id: Int64) throws -> DueDigest? {
        try writer.read { db in try Self.dueRows(db, where: "d.id = ?", [id], limit: 1).first }
    }

    static func dueRows(_ db: Database, where clause: String, _ args: [any DatabaseValueConvertible], limit: Int) throws -> [DueDigest] {
        try Row.cachedAll(
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

    /// The earliest due time of any open digest.
    public func nextDueAt() throws -> Timestamp? {
        try writer.read { db in
            try Int64.cachedOne(db, sql: "SELECT min(due_at) FROM digests WHERE state = 'open'").map(Timestamp.init(milliseconds:))
        }
    }

    /// The pending messages of a digest with their senders' bound names.
    public func digestMessages(_ id: Int64) throws -> [DigestMessageRow] {
        try writer.read { db in try Self.digestMessageRows(db, id) }
    }

    static func digestMessageRows(_ db: Database, _ id: Int64) throws -> [DigestMessageRow] {
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

    /// Digests left in `sending` by a crash become `in_doubt`; returns their ids.
    public func recoverInterruptedSends(now: Timestamp) throws -> [Int64] {
        try write { tx in try tx.recoverInterruptedSends(now: now) }
    }

    /// Sending pauses in force, each with its end (nil: until the config changes).
    public func sendPauses() throws -> SendPauses {
        try writer.read { db in try StoreTransaction(db).sendPauses() }
    }

    /// Starts or extends a pause.
    public func setSendPause(_ key: SendPauseKey, until: Timestamp?, reason: String, now: Timestamp) throws {
        try writer.write { db in try StoreTransaction(db).setSendPause(key, until: until, reason: reason, now: now) }
    }

    /// Erases message text and rendered bodies of digests finished before `cutoff`,
    /// and forgets tombstones that have expired. Returns how many digests were purged.
    @discardableResult
    public func purgeText(finishedBefore cutoff: Timestamp, now: Timestamp) throws -> Int {
        try writer.write { db in try Self.purgeText(db, finishedBefore: cutoff, now: now) }
    }

    static func purgeText(_ db: Database, finishedBefore cutoff: Timestamp, now: Timestamp) throws -> Int {
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

extension StoreTransaction {
    /// `open` → `sending` with the template and body about to be sent (recorded before the call).
    public func markSending(_ id: Int64, template: String, body: String, now: Timestamp) throws -> Bool {
        guard try moveDigest(id, from: .open, to: .sending, now: now, note: "template \(template)") else { return false }
        try db.executeCached(
            sql: "UPDATE digests SET template_id = ?, body = ?, sending_at = ?, attempts = attempts + 1 WHERE id = ?",
            arguments: [template, body, now.milliseconds, id])
        return true
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
        try db.executeCached(sql: "UPDATE digests SET due_at = ?, flush_requested = 0, updated_at = ? WHERE id = ?",
                       arguments: [due.milliseconds, now.milliseconds, id])
    }

    /// Marks the pending messages of a digest with a final status.
    public func finishMessages(ofDigest id: Int64, status: MessageStatus, now: Timestamp) throws {
        try setStatus(ofDigest: id, to: status, at: now)
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

    /// The newest sent event for an openid and template in a time range (settling in-doubt sends).
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
    @discardableResult
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
        try db.executeCached(
            sql: "UPDATE messages SET status = 'expired', status_at = ? WHERE digest_id = ? AND status = 'pending' AND received_at < ?",
            arguments: [now.milliseconds, id, cutoff.milliseconds])
        return db.changesCount
    }
}

extension RoundupStore {
    /// The cached WeChat access token and its expiry, if any.
    public func cachedAccessToken() throws -> (token: String, expiresAt: Timestamp)? {
        try writer.read { db in
            try Row.cachedOne(db, sql: "SELECT token, expires_at FROM access_token WHERE id = 1")
                .map { ($0["token"], Timestamp(milliseconds: $0["expires_at"])) }
        }
    }

    /// Stores the access token (one row).
    public func saveAccessToken(_ token: String, expiresAt: Timestamp, now: Timestamp) throws {
        try writer.write { db in
            try db.executeCached(
                sql: """
                    INSERT INTO access_token (id, token, expires_at, fetched_at) VALUES (1, ?, ?, ?)
                    ON CONFLICT (id) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at, fetched_at = excluded.fetched_at
                    """,
                arguments: [token, expiresAt.milliseconds, now.milliseconds])
        }
    }
}

/// What re-timing an open digest needs (after a config change or a profile change).
public struct OpenDigestTiming: Sendable, Equatable {
    public var id: Int64
    public var imUserID: String
    public var profile: String?
    public var windowStartAt: Timestamp
    public var lastMessageAt: Timestamp?
    public var dueAt: Timestamp
    public var urgent: Bool
    public var pendingCount: Int
    public var flushRequested: Int
}

extension StoreTransaction {
    /// Every open digest (or one user's) with its timing facts.
    public func openDigestTimings(user: String? = nil) throws -> [OpenDigestTiming] {
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
