import GRDB

// Roundup's statements are few and run constantly (every callback runs about seven), so each is
// compiled once per connection and reused: `cachedStatement` keeps SQLite's prepared statement.
// Compiling costs more than running one of these small indexed statements.

extension Database {
    /// Runs one statement, compiled once per connection.
    func executeCached(sql: String, arguments: StatementArguments = StatementArguments()) throws {
        try cachedStatement(sql: sql).execute(arguments: arguments)
    }
}

extension Row {
    /// `fetchOne` through the connection's statement cache.
    static func cachedOne(_ db: Database, sql: String, arguments: StatementArguments = StatementArguments()) throws -> Row? {
        try fetchOne(db.cachedStatement(sql: sql), arguments: arguments)
    }

    /// `fetchAll` through the connection's statement cache.
    static func cachedAll(_ db: Database, sql: String, arguments: StatementArguments = StatementArguments()) throws -> [Row] {
        try fetchAll(db.cachedStatement(sql: sql), arguments: arguments)
    }
}

extension DatabaseValueConvertible {
    /// `fetchOne` through the connection's statement cache.
    static func cachedOne(_ db: Database, sql: String, arguments: StatementArguments = StatementArguments()) throws -> Self? {
        try fetchOne(db.cachedStatement(sql: sql), arguments: arguments)
    }

    /// `fetchAll` through the connection's statement cache.
    static func cachedAll(_ db: Database, sql: String, arguments: StatementArguments = StatementArguments()) throws -> [Self] {
        try fetchAll(db.cachedStatement(sql: sql), arguments: arguments)
    }
}

extension FetchableRecord {
    /// `fetchOne` through the connection's statement cache.
    static func cachedOne(_ db: Database, sql: String, arguments: StatementArguments = StatementArguments()) throws -> Self? {
        try fetchOne(db.cachedStatement(sql: sql), arguments: arguments)
    }
}
