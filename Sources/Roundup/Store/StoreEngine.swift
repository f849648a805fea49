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
    /// What the engine's writer knows about a user while no write transaction runs, without
    /// starting one; nil while one runs, or when the engine keeps no such facts.
    func idleWriterFacts(user: String) -> WriterFacts?
}

extension StoreEngine {
    public func idleWriterFacts(user: String) -> WriterFacts? { nil }
}

/// Facts about one user's rows that the writer keeps in memory, each nil when not known. They
/// are true of the last committed write transaction of this process; another process's commit
/// since then (the CLI) may have changed them, which a caller may treat as having come later.
public struct WriterFacts: Sendable, Equatable {
    /// The user has an open or held digest.
    public var activeDigest: Bool?
    /// The user has pending messages not joined to any digest.
    public var unjoinedMessages: Bool?

    public init(activeDigest: Bool? = nil, unjoinedMessages: Bool? = nil) {
        self.activeDigest = activeDigest
        self.unjoinedMessages = unjoinedMessages
    }
}

/// Runs a body in one transaction: commits when it returns, rolls back and rethrows when it throws.
public typealias TransactionRunner = ((any StoreTransaction) throws -> Void) throws -> Void

/// The database engines Roundup runs on.
public enum StorageKind: String, Sendable {
    case sqlite
    case postgresql
}
