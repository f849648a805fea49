import Logging
import NIOPosix
import PostgresNIO

/// Creating and dropping whole databases on a PostgreSQL server (the benchmark gives each
/// scenario a fresh one). Connects to the database `server` names, usually `postgres`.
public enum PostgresAdmin {
    public static func createDatabase(_ name: String, on server: PostgresURL) async throws {
        try await withConnection(server) { c in _ = try await c.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(try quoted(name))"), logger: logger) }
    }

    public static func dropDatabase(_ name: String, on server: PostgresURL) async throws {
        try await withConnection(server) { c in
            _ = try await c.query(PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(try quoted(name)) WITH (FORCE)"), logger: logger)
        }
    }

    static let logger = Logger(label: "roundup.postgres.admin")

    /// A database name as an SQL identifier; only letters, digits and `_` are accepted.
    static func quoted(_ name: String) throws -> String {
        guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
            throw PostgresStoreError(message: "a database name may hold only letters, digits and _")
        }
        return "\"\(name)\""
    }

    static func withConnection(_ server: PostgresURL, _ body: (PostgresConnection) async throws -> Void) async throws {
        let connection = try await PostgresConnection.connect(
            on: MultiThreadedEventLoopGroup.singleton.any(), configuration: try server.connectionConfiguration(), id: 0, logger: logger).get()
        do {
            try await body(connection)
        } catch {
            try? await connection.close()
            throw error
        }
        try await connection.close()
    }
}
