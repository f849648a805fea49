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
}

/// A change to one (openid, template) credit row (SPEC §5.10).
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

    /// The credit row, if any.
    public func credit(openid: String, templateID: String) throws -> Credit? {
        try writer.read { db in try CreditRecord.fetchOne(db, key: ["openid": openid, "template_id": templateID])?.credit }
    }

    /// Whether an event key was applied before (without applying it).
    public func wasApplied(eventKey: String) throws -> Bool {
        try writer.read { db in
            try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM applied_events WHERE key = ?)", arguments: [eventKey]) ?? false
        }
    }
}

extension StoreTransaction {
    /// Records an event key; false when it was recorded before.
    public func markApplied(eventKey: String, now: Timestamp) throws -> Bool {
        try db.execute(sql: "INSERT INTO applied_events (key, applied_at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                       arguments: [eventKey, now.milliseconds])
        return db.changesCount > 0
    }

    /// See `RoundupStore.applyCredit`.
    public func applyCredit(
        openid: String, templateID: String, change: CreditChange, eventKey: String?, now: Timestamp
    ) throws -> (applied: Bool, credit: Credit) {
        var record = try CreditRecord.fetchOne(db, key: ["openid": openid, "template_id": templateID])
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
