import GRDB

/// The operator's and the tests' reads, and the rows they decode, on SQLite.
extension SQLiteTransaction {
    public func storeMessage(_ m: NewMessage, digest: Int64?) throws -> Bool {
        if let digest { cache?.forget(digest: digest) }
        try db.executeCached(
            sql: """
                INSERT INTO messages (msg_key, recipient, sender, msg_time, received_at, summary, urgent, digest_id)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (msg_key) DO NOTHING
                """,
            arguments: [m.msgKey, m.recipient, m.sender, m.msgTime, m.receivedAt.milliseconds, m.summary, m.urgent, digest])
        return db.changesCount > 0
    }

    public func messages(recipient: String) throws -> [StoredMessage] {
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

    public func messageCount(msgKey: String) throws -> Int {
        try Int.cachedOne(db, sql: "SELECT COUNT(*) FROM messages WHERE msg_key = ?", arguments: [msgKey]) ?? 0
    }

    public func messageCount(digest: Int64) throws -> Int {
        try Int.cachedOne(db, sql: "SELECT COUNT(*) FROM messages WHERE digest_id = ?", arguments: [digest]) ?? 0
    }

    public func unjoinedMessageCount(recipient: String) throws -> Int {
        try Int.cachedOne(
            db, sql: "SELECT COUNT(*) FROM messages WHERE recipient = ? AND status = 'pending' AND digest_id IS NULL",
            arguments: [recipient]) ?? 0
    }

    public func isKnown(user id: String) throws -> Bool {
        try Bool.cachedOne(db, sql: """
            SELECT EXISTS (SELECT 1 FROM users WHERE im_user_id = ?) OR EXISTS (SELECT 1 FROM messages WHERE recipient = ?)
                OR EXISTS (SELECT 1 FROM digests WHERE im_user_id = ?)
            """, arguments: [id, id, id]) ?? false
    }

    public func digest(_ id: Int64) throws -> DigestRow? {
        try Row.cachedOne(db, sql: "SELECT \(Self.digestRowColumns) FROM digests WHERE id = ?", arguments: [id]).map(Self.digestRow)
    }

    public func digests(for user: String) throws -> [DigestRow] {
        try Row.cachedAll(db, sql: "SELECT \(Self.digestRowColumns) FROM digests WHERE im_user_id = ? ORDER BY id DESC", arguments: [user])
            .map(Self.digestRow)
    }

    static let digestRowColumns = "id, im_user_id, state, reason, opened_at, window_start_at, due_at, updated_at"

    static func digestRow(_ row: Row) -> DigestRow {
        DigestRow(
            id: row["id"], imUserID: row["im_user_id"], state: DigestState(rawValue: row["state"]) ?? .dead,
            reason: (row["reason"] as String?).flatMap(DigestReason.init(rawValue:)), openedAt: Timestamp(milliseconds: row["opened_at"]),
            windowStartAt: Timestamp(milliseconds: row["window_start_at"]), dueAt: (row["due_at"] as Int64?).map(Timestamp.init(milliseconds:)),
            updatedAt: Timestamp(milliseconds: row["updated_at"]))
    }

    public func digestLog(_ id: Int64) throws -> [DigestLogLine] {
        try Row.cachedAll(db, sql: "SELECT at, kind, detail FROM digest_events WHERE digest_id = ? ORDER BY id", arguments: [id])
            .map { (Timestamp(milliseconds: $0["at"]), $0["kind"], $0["detail"]) }
    }

    public func digestSummaries(_ filter: DigestFilter, limit: Int?) throws -> [DigestSummary] {
        let clause: String
        var args: [any DatabaseValueConvertible]
        switch filter {
        case .id(let id):
            clause = "d.id = ?"
            args = [id]
        case .ids(let ids):
            guard !ids.isEmpty else { return [] }
            clause = "d.id IN (\(ids.map { _ in "?" }.joined(separator: ",")))"
            args = ids
        case .active(let user):
            clause = "d.im_user_id = ? AND d.state IN ('open', 'held')"
            args = [user]
        case .states(let states, let user):
            guard !states.isEmpty else { return [] }
            var c = "d.state IN (\(states.map { _ in "?" }.joined(separator: ",")))"
            args = states.map(\.rawValue)
            if let user {
                c += " AND d.im_user_id = ?"
                args.append(user)
            }
            clause = c
        }
        let rows = try Row.fetchAll(
            db,
            sql: """
                SELECT d.id, d.im_user_id, u.name, u.openid IS NOT NULL AS bound, d.state, d.reason, d.due_at, d.template_id,
                       d.errcode, d.errmsg, d.msgid, d.held_since, d.opened_at, d.finished_at,
                       (SELECT COUNT(*) FROM messages m WHERE m.digest_id = d.id
                          AND (m.status = 'pending' OR (d.state NOT IN ('open', 'held') AND m.status IN ('delivered', 'seen')))) AS messages,
                       (SELECT min(m.received_at) FROM messages m WHERE m.digest_id = d.id) AS first_at
                FROM digests d LEFT JOIN users u ON u.im_user_id = d.im_user_id
                WHERE \(clause)
                ORDER BY coalesce(d.due_at, d.updated_at), d.id
                \(limit.map { "LIMIT \($0)" } ?? "")
                """,
            arguments: StatementArguments(args))
        return try rows.map { row in
            let id: Int64 = row["id"]
            let senders = try String.cachedAll(
                db,
                sql: """
                    SELECT coalesce(u.name, m.sender_name_card, m.sender) FROM messages m
                    LEFT JOIN users u ON u.im_user_id = m.sender
                    WHERE m.digest_id = ? GROUP BY m.sender ORDER BY min(m.msg_time), min(m.id)
                    """,
                arguments: [id])
            return DigestSummary(
                id: id, imUserID: row["im_user_id"], name: row["name"], openidBound: row["bound"],
                state: DigestState(rawValue: row["state"]) ?? .dead, reason: (row["reason"] as String?).flatMap(DigestReason.init(rawValue:)),
                messages: row["messages"], senders: senders,
                firstAt: (row["first_at"] as Int64?).map(Timestamp.init(milliseconds:)),
                dueAt: (row["due_at"] as Int64?).map(Timestamp.init(milliseconds:)), templateID: row["template_id"],
                errcode: row["errcode"], errmsg: row["errmsg"], msgid: row["msgid"],
                heldSince: (row["held_since"] as Int64?).map(Timestamp.init(milliseconds:)),
                openedAt: Timestamp(milliseconds: row["opened_at"]),
                finishedAt: (row["finished_at"] as Int64?).map(Timestamp.init(milliseconds:)))
        }
    }

    public func recentDigestIDs(states: [DigestState], user: String?, limit: Int) throws -> [Int64] {
        guard !states.isEmpty else { return [] }
        var args: [any DatabaseValueConvertible] = states.map(\.rawValue)
        var clause = "state IN (\(states.map { _ in "?" }.joined(separator: ",")))"
        if let user {
            clause += " AND im_user_id = ?"
            args.append(user)
        }
        args.append(limit)
        return try Int64.fetchAll(
            db, sql: "SELECT id FROM digests WHERE \(clause) ORDER BY coalesce(finished_at, updated_at) DESC, id DESC LIMIT ?",
            arguments: StatementArguments(args))
    }

    public func digestTimingFacts(_ id: Int64) throws -> DigestTimingFacts? {
        try Row.fetchOne(
            db,
            sql: "SELECT window_start_at, last_message_at, urgent, flush_requested, attempts, sending_at, updated_at FROM digests WHERE id = ?",
            arguments: [id]
        ).map { row in
            DigestTimingFacts(
                windowStartAt: Timestamp(milliseconds: row["window_start_at"]),
                lastMessageAt: (row["last_message_at"] as Int64?).map(Timestamp.init(milliseconds:)),
                urgent: row["urgent"], flushRequested: row["flush_requested"], attempts: row["attempts"],
                sendingAt: (row["sending_at"] as Int64?).map(Timestamp.init(milliseconds:)),
                updatedAt: Timestamp(milliseconds: row["updated_at"]))
        }
    }

    public func statusSnapshot(now: Timestamp) throws -> StatusSnapshot {
        let pending = try Int.cachedOne(db, sql: "SELECT COUNT(*) FROM messages WHERE status = 'pending'") ?? 0
        let open = try Int.cachedOne(db, sql: "SELECT COUNT(*) FROM digests WHERE state = 'open'") ?? 0
        var held: [String: Int] = [:]
        for row in try Row.cachedAll(db, sql: "SELECT reason, COUNT(*) AS n FROM digests WHERE state = 'held' GROUP BY reason") {
            held[row["reason"]] = row["n"]
        }
        let oldest = try Int64.cachedOne(db, sql: "SELECT min(due_at) FROM digests WHERE state = 'open'")
        let overdue = oldest.map { max(0, Double(now.milliseconds - $0) / 1000) } ?? 0
        var credits: [String: Int] = [:]
        for row in try Row.cachedAll(db, sql: "SELECT template_id, SUM(count) AS n FROM credits GROUP BY template_id") {
            credits[row["template_id"]] = row["n"]
        }
        return StatusSnapshot(pendingMessages: pending, openDigests: open, held: held, oldestOverdueSeconds: overdue, creditsByTemplate: credits)
    }

    public func operatorStats() throws -> OperatorStats {
        var byState = Dictionary(uniqueKeysWithValues: DigestState.allCases.map { ($0, 0) })
        for row in try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM digests GROUP BY state") {
            if let state = DigestState(rawValue: row["state"]) { byState[state] = row["n"] }
        }
        var held: [DigestReason: Int] = [.unbound: 0, .noCredit: 0, .configError: 0]
        for row in try Row.fetchAll(db, sql: "SELECT reason, COUNT(*) AS n FROM digests WHERE state = 'held' GROUP BY reason") {
            if let reason = (row["reason"] as String?).flatMap(DigestReason.init(rawValue:)) { held[reason] = row["n"] }
        }
        let counts = try Row.fetchOne(db, sql: """
            SELECT COUNT(*) AS total, COUNT(msg_key) AS c2c, COUNT(group_message_id) AS copies,
                   COALESCE(SUM(status = 'pending'), 0) AS pending
            FROM messages
            """)
        var byTemplate: [String: Int] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT template_id, SUM(count) AS n FROM credits GROUP BY template_id") {
            byTemplate[row["template_id"]] = row["n"]
        }
        let subscriptions = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM credits WHERE subscribed = 1") ?? 0
        return OperatorStats(
            digestsByState: byState, heldByReason: held, messagesStored: counts?["total"] ?? 0, c2cMessages: counts?["c2c"] ?? 0,
            groupCopies: counts?["copies"] ?? 0, pendingMessages: counts?["pending"] ?? 0,
            creditsOutstanding: byTemplate.values.reduce(0, +), creditsByTemplate: byTemplate, subscriptions: subscriptions)
    }
}
