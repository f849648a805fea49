import GRDB

/// What an operator's flush of one user's digest found (`roundup flush`,
/// `POST /admin/digests/{id}/flush`).
public enum FlushOutcome: Sendable, Equatable {
    /// The open digest is due now; its summary after the change.
    case flushed(DigestSummary)
    /// The user's digest is held: a flush never skips binding or credit.
    case held(DigestSummary)
    /// The user has no open or held digest.
    case noDigest
}

/// The timing facts of a digest that `roundup explain` reasons from.
public struct DigestTimingFacts: Sendable, Equatable {
    public var windowStartAt: Timestamp
    public var lastMessageAt: Timestamp?
    public var urgent: Bool
    /// 0 none, 1 flushed, 2 flushed with `--force` (quiet hours skipped too).
    public var flushRequested: Int
    /// WeChat calls made for this digest so far (backoff retries count).
    public var attempts: Int
    public var sendingAt: Timestamp?
    public var updatedAt: Timestamp
}

/// Whole-service counts for `roundup stats`.
public struct OperatorStats: Sendable, Equatable {
    /// Digests per state; every state is present.
    public var digestsByState: [DigestState: Int]
    /// Held digests per hold reason; every hold reason is present.
    public var heldByReason: [DigestReason: Int]
    /// Message rows ever stored: C2C messages plus per-member copies of group messages.
    public var messagesStored: Int
    public var c2cMessages: Int
    public var groupCopies: Int
    /// Messages still waiting (joined to a digest or kept unjoined while the user is online).
    public var pendingMessages: Int
    /// Sum of one-time credit counts.
    public var creditsOutstanding: Int
    /// One-time credits per template id.
    public var creditsByTemplate: [String: Int]
    /// Long-term subscriptions in force.
    public var subscriptions: Int

    /// Digests that produced a subscribe message (`sent`, and `dry_run` which was rendered).
    public var digestsSent: Int { digestsByState[.sent, default: 0] + digestsByState[.dryRun, default: 0] }
    /// Messages that did not need a send of their own (ingested − digests sent, dry_run included).
    public var sendsSaved: Int { messagesStored - digestsSent }
}

extension StoreTransaction {
    /// Makes an open digest due at `at` and records the flush (1, or 2 with `force`, which also
    /// skips quiet hours); a compare-and-set on `open`, logged. Returns false when it is not open.
    public func requestFlush(_ id: Int64, at: Timestamp, force: Bool, now: Timestamp, note: String) throws -> Bool {
        try db.execute(
            sql: "UPDATE digests SET due_at = ?, flush_requested = ?, updated_at = ? WHERE id = ? AND state = 'open'",
            arguments: [at.milliseconds, force ? 2 : 1, now.milliseconds, id])
        guard db.changesCount > 0 else { return false }
        try appendEvent(digest: id, at: now, kind: .flush, detail: note)
        return true
    }

    /// Moves a digest's pending messages into another digest (a retry merged into the open one);
    /// returns how many moved.
    public func movePendingMessages(from source: Int64, to target: Int64) throws -> Int {
        try db.execute(
            sql: "UPDATE messages SET digest_id = ? WHERE digest_id = ? AND status = 'pending'", arguments: [target, source])
        return db.changesCount
    }

    /// Starts a re-queued digest's backoff afresh (6 tries from the retry on).
    public func resetAttempts(_ id: Int64, now: Timestamp) throws {
        try db.execute(sql: "UPDATE digests SET attempts = 0, updated_at = ? WHERE id = ?", arguments: [now.milliseconds, id])
    }

    /// The template a digest was last tried with, if any.
    public func templateID(ofDigest id: Int64) throws -> String? {
        try String.fetchOne(db, sql: "SELECT template_id FROM digests WHERE id = ?", arguments: [id])
    }

    /// Ends one sending pause (`template:ID` after a configuration error); returns whether one existed.
    @discardableResult
    public func clearSendPause(_ key: SendPauseKey) throws -> Bool {
        try db.execute(sql: "DELETE FROM send_pauses WHERE key = ?", arguments: [key.rawValue])
        return db.changesCount > 0
    }
}

extension RoundupStore {
    /// Makes the user's open digest due at `at` (normally now) with a flush request, in one
    /// transaction; a held digest is reported, not changed.
    public func flushDigest(user: String, at: Timestamp, force: Bool, now: Timestamp, note: String) throws -> FlushOutcome {
        let changed: Int64? = try write { tx in
            guard let d = try tx.activeDigest(for: user), d.state == .open else { return nil }
            return try tx.requestFlush(d.id, at: at, force: force, now: now, note: note) ? d.id : nil
        }
        if let changed, let summary = try digestSummary(changed) { return .flushed(summary) }
        if let summary = try activeDigestSummary(for: user), summary.state == .held { return .held(summary) }
        return .noDigest
    }

    /// The timing facts of a digest, or nil.
    public func digestTimingFacts(_ id: Int64) throws -> DigestTimingFacts? {
        try writer.read { db in
            try Row.fetchOne(
                db,
                sql: """
                    SELECT window_start_at, last_message_at, urgent, flush_requested, attempts, sending_at, updated_at
                    FROM digests WHERE id = ?
                    """,
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
    }

    /// Digests in the given states (all users, or one), newest first: by when they finished, else
    /// when they last changed.
    public func recentDigestSummaries(states: [DigestState], user: String? = nil, limit: Int) throws -> [DigestSummary] {
        try writer.read { db in
            let marks = states.map { _ in "?" }.joined(separator: ",")
            var args: [any DatabaseValueConvertible] = states.map(\.rawValue)
            var clause = "state IN (\(marks))"
            if let user {
                clause += " AND im_user_id = ?"
                args.append(user)
            }
            args.append(limit)
            let ids = try Int64.fetchAll(
                db,
                sql: "SELECT id FROM digests WHERE \(clause) ORDER BY coalesce(finished_at, updated_at) DESC, id DESC LIMIT ?",
                arguments: StatementArguments(args))
            guard !ids.isEmpty else { return [] }
            let found = try Self.summaries(db, where: "d.id IN (\(ids.map { _ in "?" }.joined(separator: ",")))", ids)
            let byID = Dictionary(found.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            return ids.compactMap { byID[$0] }
        }
    }

    /// Whether a sending pause with this key (`quota`, `template:ID`) is recorded.
    public func hasSendPause(_ key: SendPauseKey) throws -> Bool {
        try writer.read { db in
            try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM send_pauses WHERE key = ?)", arguments: [key.rawValue]) ?? false
        }
    }

    /// How many of a recipient's messages are kept unjoined (the user was online when they came).
    public func unjoinedMessageCount(recipient: String) throws -> Int {
        try writer.read { db in
            try Int.fetchOne(
                db, sql: "SELECT COUNT(*) FROM messages WHERE recipient = ? AND status = 'pending' AND digest_id IS NULL",
                arguments: [recipient]) ?? 0
        }
    }

    /// One consistent read of the counts `roundup stats` prints.
    public func operatorStats() throws -> OperatorStats {
        try writer.read { db in
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
}
