import NIOCore
import PostgresNIO

/// A value bound to a statement parameter (`$1`, `$2`, …). `nil` binds SQL NULL.
protocol PGArgument {
    func bind(into binds: inout PostgresBindings) throws
}

extension String: PGArgument {
    func bind(into binds: inout PostgresBindings) throws { binds.append(self) }
}

extension Int64: PGArgument {
    func bind(into binds: inout PostgresBindings) throws { binds.append(self) }
}

extension Int: PGArgument {
    func bind(into binds: inout PostgresBindings) throws { binds.append(Int64(self)) }
}

extension Double: PGArgument {
    func bind(into binds: inout PostgresBindings) throws { binds.append(self) }
}

extension Bool: PGArgument {
    func bind(into binds: inout PostgresBindings) throws { binds.append(self) }
}

extension Optional: PGArgument where Wrapped: PGArgument {
    func bind(into binds: inout PostgresBindings) throws {
        switch self {
        case .none: binds.appendNull()
        case .some(let value): try value.bind(into: &binds)
        }
    }
}

/// Arrays bind as PostgreSQL arrays, for `= ANY($1)`.
extension Array: PGArgument where Element: PostgresArrayEncodable {
    func bind(into binds: inout PostgresBindings) throws { try binds.append(self) }
}

/// The rows of one statement and how many rows it changed.
struct PGResult {
    var rows: [PGRow]
    var affected: Int
}

/// One result row, read by column name.
struct PGRow {
    let row: PostgresRandomAccessRow

    init(_ row: PostgresRandomAccessRow) { self.row = row }

    func decode<T: PostgresDecodable>(_ column: String, as: T.Type = T.self) throws -> T {
        do {
            return try row[column].decode(T.self, context: .default)
        } catch {
            throw PostgresStoreError(message: "column \(column) could not be read as \(T.self)")
        }
    }

    func string(_ c: String) throws -> String { try decode(c) }
    func stringOrNil(_ c: String) throws -> String? { try decode(c) }
    func int64(_ c: String) throws -> Int64 { try decode(c) }
    func int64OrNil(_ c: String) throws -> Int64? { try decode(c) }
    func bool(_ c: String) throws -> Bool { try decode(c) }
    func time(_ c: String) throws -> Timestamp { Timestamp(milliseconds: try int64(c)) }
    func timeOrNil(_ c: String) throws -> Timestamp? { try int64OrNil(c).map(Timestamp.init(milliseconds:)) }
}

/// A PostgreSQL error in words: the server's message and SQLSTATE, without the query text or
/// any connection detail (those may hold secrets or message text).
public struct PostgresStoreError: Error, Sendable, CustomStringConvertible, ExplainedStoreError {
    public let message: String
    /// The SQLSTATE code (`23505` unique violation, `40P01` deadlock, …), when the server sent one.
    public let sqlState: String?

    init(message: String, sqlState: String? = nil) {
        self.message = message
        self.sqlState = sqlState
    }

    init(_ error: PSQLError) {
        if let server = error.serverInfo {
            self.init(message: server[.message] ?? "the server refused the statement", sqlState: server[.sqlState])
        } else {
            self.init(message: PostgresStoreError.describe(error.code))
        }
    }

    static func describe(_ code: PSQLError.Code) -> String {
        if [.connectionError, .uncleanShutdown, .serverClosedConnection, .clientClosedConnection].contains(code) {
            return "the connection to PostgreSQL was lost"
        }
        if code == .sslUnsupported { return "the server does not support TLS, and sslmode requires it" }
        if code == .queryCancelled { return "the statement was cancelled" }
        return "PostgreSQL error \(code)"
    }

    /// A conflict that a retry of the whole transaction resolves: a deadlock between instances,
    /// a serialization failure, or a unique violation from a race on the same row.
    var isRetryable: Bool { sqlState == "40P01" || sqlState == "40001" }

    /// A lock another session holds was not granted within `lock_timeout`.
    var isLockTimeout: Bool { sqlState == "55P03" }

    public var description: String { message }
    var explanation: String { message }
}

/// PostgresNIO's errors print a deliberately generic text; logs and messages get the server's
/// message or what happened to the connection instead.
extension PSQLError: ExplainedStoreError {
    var explanation: String { PostgresStoreError(self).message }
}

/// The text of a statement run prepared (`PostgresTransaction.runPrepared`). After five runs
/// PostgreSQL may keep one generic plan for it, made without the values, so a text must find its
/// rows by key whatever its parameters and the table's statistics; a statement whose best plan
/// depends on its values is sent unprepared instead.
protocol PreparedText: SendableMetatype {
    static var sql: String { get }
}

/// A prepared statement named after its text's type: PostgresNIO prepares it on a connection the
/// first time it runs there and reuses it after, by name alone. The name is the type's full path
/// (`Roundup.PostgresBatch.Users`), so two texts whose types share a short name in different
/// places never run each other's SQL.
struct PreparedStatement<Text: PreparedText>: PostgresPreparedStatement {
    static var name: String { String(reflecting: Text.self) }
    static var sql: String { Text.sql }
    typealias Row = PostgresRow
    let bindings: PostgresBindings
    func makeBindings() -> PostgresBindings { bindings }
    func decodeRow(_ row: PostgresRow) -> PostgresRow { row }
}

/// Whether a transaction's connection must be closed rather than reused.
final class SpoiledFlag {
    var value = false
}
