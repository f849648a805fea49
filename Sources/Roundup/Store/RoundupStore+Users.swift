import GRDB

/// A row of `users`.
struct UserRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "users"
    var im_user_id: String
    var openid: String?
    var name: String?
    var profile: String?
    var created_at: Int64
    var updated_at: Int64

    var user: User {
        User(imUserID: im_user_id, openid: openid, name: name, profile: profile,
             createdAt: Timestamp(milliseconds: created_at), updatedAt: Timestamp(milliseconds: updated_at))
    }
}

/// One row of a roster import: the whole binding of one user (empty values clear).
public struct RosterEntry: Sendable, Equatable {
    public var imUserID: String
    public var openid: String?
    public var name: String?
    public var profile: String?

    public init(imUserID: String, openid: String?, name: String?, profile: String?) {
        self.imUserID = imUserID
        self.openid = openid
        self.name = name
        self.profile = profile
    }
}

/// The outcome of a roster import.
public struct RosterImportResult: Sendable, Equatable {
    public var created: Int
    public var updated: Int
    public var unchanged: Int
}

extension RoundupStore {
    /// The user, or nil when Roundup has never seen them.
    public func user(_ imUserID: String) throws -> User? {
        try writer.read { db in try UserRecord.cachedOne(db, sql: "SELECT * FROM users WHERE im_user_id = ?", arguments: [imUserID])?.user }
    }

    /// The user bound to an openid, if any.
    public func user(openid: String) throws -> User? {
        try writer.read { db in
            try UserRecord.filter(Column("openid") == openid).fetchOne(db)?.user
        }
    }

    /// All users ordered by IM id.
    public func users() throws -> [User] {
        try writer.read { db in try UserRecord.order(Column("im_user_id")).fetchAll(db).map(\.user) }
    }

    /// Creates the user if needed and merges the update into their binding (`PUT /admin/users/{id}`).
    /// Throws `openidBoundElsewhere` when the openid belongs to another user.
    @discardableResult
    public func updateUser(_ imUserID: String, _ update: UserUpdate, now: Timestamp) throws -> User {
        try writer.write { db in try Self.updateUser(db, imUserID, update, now: now) }
    }

    /// Clears a user's openid; their pending messages stay (`DELETE /admin/users/{id}`). Nil if unknown.
    @discardableResult
    public func unbindUser(_ imUserID: String, now: Timestamp) throws -> User? {
        try writer.write { db in
            guard try UserRecord.cachedOne(db, sql: "SELECT * FROM users WHERE im_user_id = ?", arguments: [imUserID]) != nil else { return nil }
            return try Self.updateUser(db, imUserID, UserUpdate(openid: .clear), now: now)
        }
    }

    /// Applies a whole roster in one transaction: each entry's binding is replaced (created or
    /// updated); openids may move between users listed in the same roster.
    public func importRoster(_ entries: [RosterEntry], now: Timestamp) throws -> RosterImportResult {
        try writer.write { db in
            var result = RosterImportResult(created: 0, updated: 0, unchanged: 0)
            var existing: [String: UserRecord] = [:]
            for e in entries {
                existing[e.imUserID] = try UserRecord.cachedOne(db, sql: "SELECT * FROM users WHERE im_user_id = ?", arguments: [e.imUserID])
            }
            // Release openids that move, so that a swap inside one roster does not collide.
            for e in entries {
                if let old = existing[e.imUserID], old.openid != nil, old.openid != e.openid {
                    try db.executeCached(sql: "UPDATE users SET openid = NULL WHERE im_user_id = ?", arguments: [e.imUserID])
                }
            }
            for e in entries {
                if let holder = try e.openid.flatMap({ try UserRecord.filter(Column("openid") == $0).fetchOne(db) }),
                   holder.im_user_id != e.imUserID {
                    throw StoreError.openidBoundElsewhere(openid: e.openid!, boundTo: holder.im_user_id)
                }
                if var record = existing[e.imUserID] {
                    if record.openid == e.openid && record.name == e.name && record.profile == e.profile {
                        result.unchanged += 1
                        continue
                    }
                    record.openid = e.openid
                    record.name = e.name
                    record.profile = e.profile
                    record.updated_at = now.milliseconds
                    try record.update(db)
                    result.updated += 1
                } else {
                    try UserRecord(im_user_id: e.imUserID, openid: e.openid, name: e.name, profile: e.profile,
                                   created_at: now.milliseconds, updated_at: now.milliseconds).insert(db)
                    result.created += 1
                }
            }
            return result
        }
    }

    static func updateUser(_ db: Database, _ imUserID: String, _ update: UserUpdate, now: Timestamp) throws -> User {
        var record = try UserRecord.cachedOne(db, sql: "SELECT * FROM users WHERE im_user_id = ?", arguments: [imUserID])
            ?? UserRecord(im_user_id: imUserID, created_at: now.milliseconds, updated_at: now.milliseconds)
        let newOpenid = update.openid.applied(to: record.openid)
        if let newOpenid, newOpenid != record.openid,
           let holder = try UserRecord.filter(Column("openid") == newOpenid).fetchOne(db), holder.im_user_id != imUserID {
            throw StoreError.openidBoundElsewhere(openid: newOpenid, boundTo: holder.im_user_id)
        }
        record.openid = newOpenid
        record.name = update.name.applied(to: record.name)
        record.profile = update.profile.applied(to: record.profile)
        record.updated_at = now.milliseconds
        try record.save(db)
        return record.user
    }
}

extension UserRecord {
    init(im_user_id: String, created_at: Int64, updated_at: Int64) {
        self.init(im_user_id: im_user_id, openid: nil, name: nil, profile: nil, created_at: created_at, updated_at: updated_at)
    }
}
