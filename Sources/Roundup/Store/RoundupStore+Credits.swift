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
