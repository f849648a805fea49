import Foundation
import GRDB

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The SQLite engine: a WAL-mode `DatabasePool` shared by `roundup serve` and the CLI (each
/// with a busy timeout). The file is created 0600 in a 0700 folder, because it holds message
/// text. Transactions run on GRDB's queues: one writer at a time, readers beside it.
public final class SQLiteEngine: StoreEngine {
    let writer: any DatabaseWriter
    /// The database file, or nil for an in-memory database.
    public let path: String?
    /// What the writer keeps in memory for the ingest path (write transactions only).
    let cache = SQLiteWriterCache()

    init(writer: any DatabaseWriter, path: String?) {
        self.writer = writer
        self.path = path
    }

    public var kind: StorageKind { .sqlite }
    public var concurrentWriters: Int { 1 }

    public func read<T>(_ body: (any StoreTransaction) throws -> T) throws -> T {
        try writer.read { db in try body(SQLiteTransaction(db)) }
    }

    public func write<T>(_ body: (any StoreTransaction) throws -> T) throws -> T {
        try writer.writeWithoutTransaction { db in try self.writeTransaction(db, body) }
    }

    public func read<T: Sendable>(_ body: @escaping @Sendable (any StoreTransaction) throws -> T) async throws -> T {
        try await writer.read { db in try body(SQLiteTransaction(db)) }
    }

    public func write<T: Sendable>(_ body: @escaping @Sendable (any StoreTransaction) throws -> T) async throws -> T {
        try await writer.writeWithoutTransaction { db in try self.writeTransaction(db, body) }
    }

    public func schedule(_ work: @escaping @Sendable (TransactionRunner) -> Void) {
        writer.asyncWriteWithoutTransaction { db in
            work { body in try self.writeTransaction(db, body) }
        }
    }

    /// One write transaction on the writer connection, with the writer's cache: checked against
    /// other connections' commits first, and dropped when the transaction does not commit.
    private func writeTransaction<T>(_ db: Database, _ body: (any StoreTransaction) throws -> T) throws -> T {
        cache.enter()
        defer { cache.leave() }
        var value: T?
        do {
            try db.inTransaction {
                try cache.begin(db)
                value = try body(SQLiteTransaction(db, cache: cache))
                return .commit
            }
        } catch {
            cache.clear()
            throw error
        }
        cache.didCommit()
        return value!
    }

    public func idleWriterFacts(user: String) -> WriterFacts? { cache.idleFacts(user: user) }

    public func isHealthy() async -> Bool {
        (try? await writer.read { db in try Int.fetchOne(db, sql: "SELECT 1") }) == 1
    }

    /// The schema migrations applied to this database, oldest first.
    public func appliedMigrations() throws -> [String] {
        try writer.read { db in try Schema.migrator.appliedMigrations(db) }
    }

    /// Creates the folder (0700) and an empty file (0600) before SQLite does, since SQLite
    /// would create them world-readable (0644). Existing files are left as they are.
    fileprivate static func createFileIfNeeded(_ path: String) throws(StoreError) {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        let fm = FileManager.default
        if !fm.fileExists(atPath: folder) {
            do {
                try fm.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            } catch {
                throw .cannotOpen(path: path, reason: "cannot create its folder \(folder) (\(error.localizedDescription))")
            }
        }
        if !fm.fileExists(atPath: path) {
            let fd = posixOpen(path, O_CREAT | O_EXCL | O_WRONLY, 0o600)
            if fd < 0 {
                let err = errno
                if err != EEXIST {
                    throw .cannotOpen(path: path, reason: String(cString: strerror(err)))
                }
            } else {
                posixClose(fd)
            }
        }
    }
}

extension RoundupStore {
    /// Opens (creating if needed) the SQLite database at `path` and migrates it to the current
    /// schema. A file SQLite finds damaged or not a database is refused with what `PRAGMA
    /// quick_check` says and how to restore it; a sound file is never scanned.
    public static func open(
        path: String, synchronous: StorageSettings.Synchronous = .normal, busyTimeout: Double = 5
    ) throws(StoreError) -> RoundupStore {
        try SQLiteEngine.createFileIfNeeded(path)
        var config = GRDB.Configuration()
        config.busyMode = .timeout(busyTimeout)
        config.foreignKeysEnabled = true
        config.label = "roundup"
        let sync = synchronous == .full ? "FULL" : "NORMAL"
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(sync)")
            // Per connection: freed pages are zeroed, so erased message text leaves no trace in
            // the file's free pages (the WAL is truncated after each purge as well).
            try db.execute(sql: "PRAGMA secure_delete = ON")
        }
        do {
            let pool = try DatabasePool(path: path, configuration: config)
            try Schema.migrator.migrate(pool)
            // The writer touches index pages all over the file (MsgKeys are random): a 32 MB page
            // cache, instead of SQLite's 2 MB, keeps them in memory rather than re-read from the OS.
            // Readers keep the default: they are several, and each would hold its own cache.
            try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA cache_size = -32768") }
            return RoundupStore(engine: SQLiteEngine(writer: pool, path: path))
        } catch {
            if SQLiteEngine.isDamage(error) {
                throw .cannotOpen(path: path, reason: SQLiteEngine.damageReport(
                    path: path, SQLiteEngine.quickCheck(path: path, busyTimeout: busyTimeout), cause: RoundupStore.explain(error)))
            }
            throw .cannotOpen(path: path, reason: RoundupStore.explain(error))
        }
    }

    /// A private in-memory SQLite database with the full schema, for tests of code above the store.
    public static func inMemory() throws -> RoundupStore {
        let queue = try DatabaseQueue()
        try Schema.migrator.migrate(queue)
        return RoundupStore(engine: SQLiteEngine(writer: queue, path: nil))
    }
}

extension DatabaseError: ExplainedStoreError {
    var explanation: String { message ?? "\(resultCode)" }
}

/// `open(2)`, for the files SQLite must not create itself (the database, the lease lock).
func posixOpen(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 {
    #if canImport(Glibc)
    return Glibc.open(path, flags, mode)
    #else
    return Darwin.open(path, flags, mode)
    #endif
}

/// `close(2)`.
@discardableResult
func posixClose(_ fd: Int32) -> Int32 {
    #if canImport(Glibc)
    return Glibc.close(fd)
    #else
    return Darwin.close(fd)
    #endif
}
