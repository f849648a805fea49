import GRDB

/// A row of `credits`.
struct CreditRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "credits"
    var openid: String
    var template_id: String
    var count: Int
    var subscribed: Bool
    var updated_at: Int64

    var credit: Credit {
        Credit(openid: openid, templateID: template_id, count: count, subscribed: subscribed,
               updatedAt: Timestamp(milliseconds: updated_at))
    }
}

extension RoundupStore {
    /// Credits, for one openid or for everyone, ordered by openid then template.
    public func credits(openid: String? = nil) throws -> [Credit] {
        try writer.read { db in
            var request = CreditRecord.order(Column("openid"), Column("template_id"))
            if let openid { request = request.filter(Column("openid") == openid) }
            return try request.fetchAll(db).map(\.credit)
        }
    }

    /// The credits of many openids at once, by openid then template id (the send path reads
    /// a whole due batch's credits in one query).
    public func credits(openids: [String]) throws -> [String: [String: Credit]] {
        try writer.read { db in try Self.credits(db, openids: openids) }
    }

    static func credits(_ db: Database, openids: [String]) throws -> [String: [String: Credit]] {
        var out: [String: [String: Credit]] = [:]
        // SQLite's default limit on bound parameters is 32,766; stay well below it.
        for chunk in stride(from: 0, to: openids.count, by: 500).map({ Array(openids[$0..<min($0 + 500, openids.count)]) }) {
            let marks = Array(repeating: "?", count: chunk.count).joined(separator: ",")
            for record in try CreditRecord.fetchAll(db, sql: "SELECT * FROM credits WHERE openid IN (\(marks))",
                                                     arguments: StatementArguments(chunk)) {
                out[record.openid, default: [:]][record.template_id] = record.credit
            }
        }
        return out
    }
}

/// A change to one (openid, template) credit row.
public enum CreditChange: Sendable, Equatable {
    /// One-time accepts or an admin grant: add to the count.
    case add(Int)
    /// Long-term accept: subscribed from now on.
    case subscribe
    /// A reject, or a 43101: count 0 and unsubscribed.
    case revoke
    /// A one-time credit spent on a sent digest.
    case spend
}

extension RoundupStore {
    /// Applies a credit change, once per `eventKey` when one is given (a re-sent push or a
    /// repeated idempotency key changes nothing). Returns whether it applied and the row after.
    @discardableResult
    public func applyCredit(
        openid: String, templateID: String, change: CreditChange, eventKey: String?, now: Timestamp
    ) throws -> (applied: Bool, credit: Credit) {
        try write { tx in try tx.applyCredit(openid: openid, templateID: templateID, change: change, eventKey: eventKey, now: now) }
    }

    /// `applyCredit` without blocking a thread of the cooperative pool.
    @discardableResult
    public func applyCreditAsync(
        openid: String, templateID: String, change: CreditChange, eventKey: String?, now: Timestamp
    ) async throws -> (applied: Bool, credit: Credit) {
        try await write { tx in try tx.applyCredit(openid: openid, templateID: templateID, change: change, eventKey: eventKey, now: now) }
    }

    /// The credit row, if any.
    public func credit(openid: String, templateID: String) throws -> Credit? {
        try writer.read { db in try CreditRecord.cachedOne(db, sql: "SELECT * FROM credits WHERE openid = ? AND template_id = ?", arguments: [openid, templateID])?.credit }
    }

    /// Whether an event key was applied before (without applying it).
    public func wasApplied(eventKey: String) throws -> Bool {
        try writer.read { db in
            try Bool.cachedOne(db, sql: "SELECT EXISTS (SELECT 1 FROM applied_events WHERE key = ?)", arguments: [eventKey]) ?? false
        }
    }
}

extension StoreTransaction {
    /// Records an event key; false when it was recorded before.
    public func markApplied(eventKey: String, now: Timestamp) throws -> Bool {
        try db.executeCached(sql: "INSERT INTO applied_events (key, applied_at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                       arguments: [eventKey, now.milliseconds])
        return db.changesCount > 0
    }

    /// See `RoundupStore.applyCredit`.
    public func applyCredit(
        openid: String, templateID: String, change: CreditChange, eventKey: String?, now: Timestamp
    ) throws -> (applied: Bool, credit: Credit) {
        var record = try CreditRecord.cachedOne(db, sql: "SELECT * FROM credits WHERE openid = ? AND template_id = ?", arguments: [openid, templateID])
            ?? CreditRecord(openid: openid, template_id: templateID, count: 0, subscribed: false, updated_at: now.milliseconds)
        if let eventKey, try !markApplied(eventKey: eventKey, now: now) {
            return (false, record.credit)
        }
        switch change {
        case .add(let n): record.count += n
        case .subscribe: record.subscribed = true
        case .revoke:
            record.count = 0
            record.subscribed = false
        case .spend: record.count = max(0, record.count - 1)
        }
        record.updated_at = now.milliseconds
        try record.save(db)
        return (true, record.credit)
    }
}
