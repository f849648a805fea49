import GRDB

/// Users and credits on SQLite.
extension SQLiteTransaction {
    public func user(openid: String) throws -> User? {
        try Row.cachedOne(db, sql: "SELECT \(Self.userColumns) FROM users WHERE openid = ?", arguments: [openid]).map(Self.user)
    }

    public func users() throws -> [User] {
        try Row.fetchAll(db, sql: "SELECT \(Self.userColumns) FROM users ORDER BY im_user_id").map(Self.user)
    }

    public func saveUser(_ user: User) throws {
        cache?.forget(user: user.imUserID)
        try db.executeCached(
            sql: """
                INSERT INTO users (im_user_id, openid, name, profile, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (im_user_id) DO UPDATE SET openid = excluded.openid, name = excluded.name, profile = excluded.profile,
                    updated_at = excluded.updated_at
                """,
            arguments: [user.imUserID, user.openid, user.name, user.profile, user.createdAt.milliseconds, user.updatedAt.milliseconds])
    }

    public func clearOpenid(of user: String) throws {
        cache?.forget(user: user)
        try db.executeCached(sql: "UPDATE users SET openid = NULL WHERE im_user_id = ?", arguments: [user])
    }

    static let userColumns = "im_user_id, openid, name, profile, created_at, updated_at"

    static func user(_ row: Row) -> User {
        User(imUserID: row["im_user_id"], openid: row["openid"], name: row["name"], profile: row["profile"],
             createdAt: Timestamp(milliseconds: row["created_at"]), updatedAt: Timestamp(milliseconds: row["updated_at"]))
    }

    public func credits(openid: String?) throws -> [Credit] {
        if let openid {
            return try Row.fetchAll(
                db, sql: "SELECT \(Self.creditColumns) FROM credits WHERE openid = ? ORDER BY openid, template_id", arguments: [openid]
            ).map(Self.credit)
        }
        return try Row.fetchAll(db, sql: "SELECT \(Self.creditColumns) FROM credits ORDER BY openid, template_id").map(Self.credit)
    }

    public func credits(openids: [String]) throws -> [String: [String: Credit]] {
        var out: [String: [String: Credit]] = [:]
        // SQLite's default limit on bound parameters is 32,766; stay well below it.
        for start in stride(from: 0, to: openids.count, by: 500) {
            let chunk = Array(openids[start..<min(start + 500, openids.count)])
            let marks = Array(repeating: "?", count: chunk.count).joined(separator: ",")
            for row in try Row.fetchAll(db, sql: "SELECT \(Self.creditColumns) FROM credits WHERE openid IN (\(marks))",
                                        arguments: StatementArguments(chunk)) {
                let credit = Self.credit(row)
                out[credit.openid, default: [:]][credit.templateID] = credit
            }
        }
        return out
    }

    public func credit(openid: String, templateID: String) throws -> Credit? {
        try Row.cachedOne(
            db, sql: "SELECT \(Self.creditColumns) FROM credits WHERE openid = ? AND template_id = ?", arguments: [openid, templateID]
        ).map(Self.credit)
    }

    public func saveCredit(_ credit: Credit) throws {
        try db.executeCached(
            sql: """
                INSERT INTO credits (openid, template_id, count, subscribed, updated_at) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (openid, template_id) DO UPDATE SET count = excluded.count, subscribed = excluded.subscribed,
                    updated_at = excluded.updated_at
                """,
            arguments: [credit.openid, credit.templateID, credit.count, credit.subscribed, credit.updatedAt.milliseconds])
    }

    public func markApplied(eventKey: String, now: Timestamp) throws -> Bool {
        try db.executeCached(sql: "INSERT INTO applied_events (key, applied_at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                             arguments: [eventKey, now.milliseconds])
        return db.changesCount > 0
    }

    public func wasApplied(eventKey: String) throws -> Bool {
        try Bool.cachedOne(db, sql: "SELECT EXISTS (SELECT 1 FROM applied_events WHERE key = ?)", arguments: [eventKey]) ?? false
    }

    static let creditColumns = "openid, template_id, count, subscribed, updated_at"

    static func credit(_ row: Row) -> Credit {
        Credit(openid: row["openid"], templateID: row["template_id"], count: row["count"], subscribed: row["subscribed"],
               updatedAt: Timestamp(milliseconds: row["updated_at"]))
    }
}
