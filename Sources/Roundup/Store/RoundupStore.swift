import Foundation
import NIOPosix

/// Roundup's database: the one way the rest of the library reads and writes state. It runs
/// typed operations (`StoreTransaction`) on an engine: SQLite (`SQLiteEngine`, the embedded
/// default, one `serve` per file) or PostgreSQL (`PostgresEngine`, several `serve` instances on
/// one database). No SQL exists outside the engines' folders.
public final class RoundupStore: Sendable {
    public let engine: any StoreEngine

    public init(engine: any StoreEngine) {
        self.engine = engine
    }

    /// The engine when it is SQLite (file maintenance, the serve lease), else nil.
    public var sqlite: SQLiteEngine? { engine as? SQLiteEngine }

    /// The SQLite database file, or nil (in memory, or PostgreSQL).
    public var path: String? { sqlite?.path }

    public var kind: StorageKind { engine.kind }

    /// Runs typed reads in one transaction, blocking the calling thread.
    public func read<T>(_ body: (any StoreTransaction) throws -> T) throws -> T {
        try engine.read(body)
    }

    /// Runs typed operations in one write transaction, blocking the calling thread.
    public func write<T>(_ body: (any StoreTransaction) throws -> T) throws -> T {
        try engine.write(body)
    }

    /// Runs typed reads in one transaction without blocking a thread of the cooperative pool.
    public func read<T: Sendable>(_ body: @escaping @Sendable (any StoreTransaction) throws -> T) async throws -> T {
        try await engine.read(body)
    }

    /// Runs typed operations in one write transaction without blocking a thread of the cooperative pool.
    public func write<T: Sendable>(_ body: @escaping @Sendable (any StoreTransaction) throws -> T) async throws -> T {
        try await engine.write(body)
    }

    /// Runs synchronous store work (several one-call operations, a CLI-style report) on a thread
    /// outside the cooperative pool, which must never wait on the database: with PostgreSQL each
    /// call is a network round trip. HTTP handlers call the store this way.
    public func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive(body)
    }

    /// Whether the database answers a trivial query (for `/healthz`).
    public func isHealthy() async -> Bool {
        await engine.isHealthy()
    }

    /// An error's message in words, without engine-specific decoration.
    static func explain(_ error: any Error) -> String {
        if let explained = error as? any ExplainedStoreError { return explained.explanation }
        return "\(error)"
    }

    /// Whether the error means "another session holds what this work needs, try later" (a
    /// PostgreSQL lock wait that hit `lock_timeout`): nothing was written, and the work may succeed
    /// when retried.
    public static func isLockContention(_ error: any Error) -> Bool {
        (error as? PostgresStoreError)?.isLockTimeout ?? false
    }
}

/// An engine error that knows its one-sentence explanation.
protocol ExplainedStoreError: Error {
    var explanation: String { get }
}
