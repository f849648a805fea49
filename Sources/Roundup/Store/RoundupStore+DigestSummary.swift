import GRDB

/// The facts of one digest that every view shows (the "digest object" of docs/cli.md).
public struct DigestSummary: Sendable, Equatable {
    public var id: Int64
    public var imUserID: String
    public var name: String?
    public var openidBound: Bool
    public var state: DigestState
    public var reason: DigestReason?
    public var messages: Int
    /// Display names of the senders (bound name, else group NameCard, else IM id), first-appearance order.
    public var senders: [String]
    public var firstAt: Timestamp?
    public var dueAt: Timestamp?
    public var templateID: String?
    public var errcode: String?
    public var errmsg: String?
    public var msgid: String?
    public var heldSince: Timestamp?
    public var openedAt: Timestamp
    public var finishedAt: Timestamp?
}

extension RoundupStore {
    /// The summary of a digest by id.
    public func digestSummary(_ id: Int64) throws -> DigestSummary? {
        try writer.read { db in try Self.summaries(db, where: "d.id = ?", [id]).first }
    }

    /// The user's open or held digest, summarised.
    public func activeDigestSummary(for user: String) throws -> DigestSummary? {
        try writer.read { db in try Self.summaries(db, where: "d.im_user_id = ? AND d.state IN ('open', 'held')", [user]).first }
    }

    /// Digests in any of the given states, oldest due first.
    public func digestSummaries(states: [DigestState], user: String? = nil, limit: Int? = nil) throws -> [DigestSummary] {
        try writer.read { db in
            let marks = states.map { _ in "?" }.joined(separator: ",")
            var args: [any DatabaseValueConvertible] = states.map(\.rawValue)
            var clause = "d.state IN (\(marks))"
            if let user {
                clause += " AND d.im_user_id = ?"
                args.append(user)
            }
            return try Self.summaries(db, where: clause, args, limit: limit)
        }
    }

    static func summaries(_ db: Database, where clause: String, _ args: [any DatabaseValueConvertible], limit: Int? = nil) throws -> [DigestSummary] {
        let rows = try Row.cachedAll(
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

    /// Whether Roundup has ever seen this IM user (a binding, a message to them or a digest).
    public func isKnown(user id: String) throws -> Bool {
        try writer.read { db in
            try Bool.cachedOne(db, sql: """
                SELECT EXISTS (SELECT 1 FROM users WHERE im_user_id = ?) OR EXISTS (SELECT 1 FROM messages WHERE recipient = ?)
                    OR EXISTS (SELECT 1 FROM digests WHERE im_user_id = ?)
                """, arguments: [id, id, id]) ?? false
        }
    }
}
