/// Where transactions run: one implementation per database engine. An engine runs each
/// transaction's synchronous body on a thread it owns and commits it, or rolls it back when the
/// body throws.
public protocol StoreEngine: Sendable {
    /// Runs `body` in a read transaction, blocking the calling thread (the CLI's reads).
    func read<T>(_ body: (any StoreTransaction) throws -> T) throws -> T
    /// Runs `body` in a write transaction, blocking the calling thread.
    func write<T>(_ body: (any StoreTransaction) throws -> T) throws -> T
    /// Runs `body` in a read transaction on the engine's thread; the caller suspends.
    func read<T: Sendable>(_ body: @escaping @Sendable (any StoreTransaction) throws -> T) async throws -> T
    /// Runs `body` in a write transaction on the engine's thread; the caller suspends.
    func write<T: Sendable>(_ body: @escaping @Sendable (any StoreTransaction) throws -> T) async throws -> T
    /// Runs `work` later on the engine's writer, not on the caller's thread (group commit).
    /// `work` gets a function that runs a body in one transaction and commits it.
    func schedule(_ work: @escaping @Sendable (_ inTransaction: TransactionRunner) -> Void)
    /// How many write transactions may usefully run at once (SQLite has one writer).
    var concurrentWriters: Int { get }
    /// Whether the database answers a trivial query now.
    func isHealthy() async -> Bool
    /// A short name for logs and `roundup check`: `sqlite` or `postgresql`.
    var kind: StorageKind { get }
}

/// Runs a body in one transaction: commits when it returns, rolls back and rethrows when it throws.
public typealias TransactionRunner = ((any StoreTransaction) throws -> Void) throws -> Void

/// The database engines Roundup runs on.
public enum StorageKind: String, Sendable {
    case sqlite
    case postgresql
}
