import Dispatch
import Foundation
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import Synchronization

/// Who this process is among the instances sharing one PostgreSQL database, and how long an
/// instance may stay silent before the others take it for dead.
public struct InstanceLease: Sendable {
    /// A fresh id per process start.
    public let id: String
    public let timeoutSeconds: Double

    public init(id: String = UUID().uuidString.lowercased(), timeoutSeconds: Double) {
        self.id = id
        self.timeoutSeconds = timeoutSeconds
    }
}

/// The PostgreSQL engine: several `roundup serve` processes share one database.
///
/// Transactions are synchronous closures, as on SQLite, so the digest rules are shared by both
/// engines. Each runs on a thread this engine owns (`poolSize` threads, one connection each at a
/// time) and waits there for each statement; the cooperative pool only awaits the result.
/// A deadlock or serialization failure between instances rolls the transaction back and runs
/// it again (at most three times).
///
/// PostgresNIO's `PostgresClient` is not used: it lends a connection to an async closure, while
/// these transactions are synchronous and keep one connection for their whole length on a
/// blocking thread. A fixed pool that those threads check connections out of does exactly that,
/// with no task hop per statement.
public final class PostgresEngine: StoreEngine {
    public let lease: InstanceLease
    /// Where the database is, for messages: `host:port/database`, never the user or password.
    public let location: String
    let configuration: PostgresConnection.Configuration
    let logger: Logger
    let poolSize: Int
    private let connections: ConnectionPool
    private let threads: NIOThreadPool
    private let statements = Atomic<Int>(0)

    /// Statements sent so far, each one round trip (for the bench and tests).
    public var statementsSent: Int { statements.load(ordering: .relaxed) }

    func countStatement() { statements.add(1, ordering: .relaxed) }

    /// How long a statement waits for a lock another session holds (a user's advisory lock, a
    /// credit row) before it fails with SQLSTATE 55P03: well inside a callback's 1.5 s deadline.
    static let lockTimeoutMilliseconds = 1_000

    public var kind: StorageKind { .postgresql }
    /// Half the pool commits group batches; the rest is left for reads and the send path.
    public var concurrentWriters: Int { max(1, poolSize / 2) }

    /// Connects, migrates the schema under an advisory lock (one instance migrates at a time),
    /// and refuses a database that needs a newer Roundup. Throws `StoreError.cannotOpen` with one
    /// sentence when the server cannot be reached or refuses the login.
    public static func open(
        configuration: PostgresConnection.Configuration, location: String, poolSize: Int, lease: InstanceLease,
        logger: Logger = Logger(label: "roundup.postgres")
    ) throws(StoreError) -> PostgresEngine {
        let engine = PostgresEngine(configuration: configuration, location: location, poolSize: poolSize, lease: lease, logger: logger)
        do {
            try engine.migrate()
        } catch let error as StoreError {
            engine.shutdown()
            throw error
        } catch {
            engine.shutdown()
            throw .cannotOpen(path: location, reason: RoundupStore.explain(error))
        }
        return engine
    }

    private init(configuration: PostgresConnection.Configuration, location: String, poolSize: Int, lease: InstanceLease, logger: Logger) {
        self.configuration = configuration
        self.location = location
        self.lease = lease
        self.logger = logger
        self.poolSize = max(1, poolSize)
        self.connections = ConnectionPool(size: max(1, poolSize), configuration: configuration, location: location, logger: logger)
        self.threads = NIOThreadPool(numberOfThreads: max(1, poolSize))
        threads.start()
    }

    /// Closes every connection and stops the engine's threads.
    public func shutdown() {
        connections.closeAll()
        try? threads.syncShutdownGracefully()
    }

    // MARK: transactions

    public func read<T>(_ body: (any StoreTransaction) throws -> T) throws -> T {
        try transaction(readOnly: true, body)
    }

    public func write<T>(_ body: (any StoreTransaction) throws -> T) throws -> T {
        try transaction(readOnly: false, body)
    }

    public func read<T: Sendable>(_ body: @escaping @Sendable (any StoreTransaction) throws -> T) async throws -> T {
        try await threads.runIfActive { try self.transaction(readOnly: true, body) }
    }

    public func write<T: Sendable>(_ body: @escaping @Sendable (any StoreTransaction) throws -> T) async throws -> T {
        try await threads.runIfActive { try self.transaction(readOnly: false, body) }
    }

    public func schedule(_ work: @escaping @Sendable (TransactionRunner) -> Void) {
        threads.submit { state in
            guard case .active = state else { return }
            work { body in try self.transaction(readOnly: false) { tx in try body(tx) } }
        }
    }

    public func isHealthy() async -> Bool {
        (try? await read { tx in try (tx as? PostgresTransaction)?.one("SELECT 1 AS one")?.int64("one") }) == 1
    }

    /// Runs `body` in one transaction on a pooled connection of the calling thread.
    func transaction<T>(readOnly: Bool, _ body: (any StoreTransaction) throws -> T) throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            let connection = try connections.checkout()
            let tx = PostgresTransaction(connection: connection, logger: logger, instance: lease, readOnly: readOnly, engine: self)
            do {
                try tx.run(readOnly ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" : "BEGIN")
                let value = try body(tx)
                try tx.run("COMMIT")
                connections.checkin(connection, broken: tx.spoiled.value)
                return value
            } catch {
                tx.batch.reset()
                let rolledBack = (try? tx.run("ROLLBACK")) != nil
                connections.checkin(connection, broken: !rolledBack || tx.spoiled.value)
                if attempt < 3, let pg = error as? PostgresStoreError, pg.isRetryable { continue }
                throw error
            }
        }
    }

    // MARK: schema

    /// Applies the migrations this version knows and the database lacks, under an advisory lock,
    /// then checks that no applied migration needs a newer Roundup.
    func migrate() throws {
        try write { any in
            guard let tx = any as? PostgresTransaction else { return }
            // Another instance may be migrating, and an added index waits for running transactions.
            try tx.run("SET LOCAL lock_timeout = 0")
            try tx.run("SELECT pg_advisory_xact_lock($1)", PostgresSchema.migrationLock)
            try tx.run(PostgresSchema.bookkeeping)
            let applied = Set(try tx.run("SELECT id FROM roundup_migrations").rows.map { try $0.int64("id") })
            for m in PostgresSchema.migrations where !applied.contains(Int64(m.id)) {
                for statement in PostgresSchema.statements(m.sql) { try tx.run(statement) }
                try tx.run("INSERT INTO roundup_migrations (id, name, requires_version, applied_by_version) VALUES ($1, $2, $3, $4)",
                           m.id, m.name, m.requiresVersion, RoundupVersion.current)
            }
            let newest = try tx.run("SELECT name, requires_version FROM roundup_migrations").rows
            for r in newest {
                let needs = try r.string("requires_version")
                if RoundupVersion.compare(needs, RoundupVersion.current) == .orderedDescending {
                    throw StoreError.cannotOpen(
                        path: location,
                        reason: "the database schema (migration \(try r.string("name"))) needs Roundup \(needs) or newer; this is \(RoundupVersion.current)")
                }
            }
        }
    }

    /// The migrations applied to this database, oldest first (`roundup check`).
    public func appliedMigrations() throws -> [String] {
        try read { any in
            guard let tx = any as? PostgresTransaction else { return [] }
            return try tx.run("SELECT id, name FROM roundup_migrations ORDER BY id").rows.map { "\(try $0.int64("id"))-\(try $0.string("name"))" }
        }
    }
}

/// A fixed number of connections, each used by one thread at a time. A connection that broke
/// is dropped and replaced on the next checkout.
final class ConnectionPool: Sendable {
    private let size: Int
    private let configuration: PostgresConnection.Configuration
    private let location: String
    private let logger: Logger
    private let idle = Mutex<[PostgresConnection]>([])
    private let permits: DispatchSemaphore
    private let nextID = Atomic<Int>(1)
    /// How long connecting and logging in may take.
    static let loginTimeout: TimeAmount = .seconds(10)
    /// How long a transaction waits for a free connection before it fails.
    static let checkoutTimeout: DispatchTimeInterval = .seconds(10)

    init(size: Int, configuration: PostgresConnection.Configuration, location: String, logger: Logger) {
        self.size = size
        self.configuration = configuration
        self.location = location
        self.logger = logger
        self.permits = DispatchSemaphore(value: size)
    }

    func checkout() throws -> PostgresConnection {
        guard permits.wait(timeout: .now() + Self.checkoutTimeout) == .success else {
            throw PostgresStoreError(message: "no PostgreSQL connection of the \(size) in storage.pool_size came free within 10 s")
        }
        while let connection = idle.withLock({ $0.popLast() }) {
            if !connection.isClosed { return connection }
        }
        do {
            // The connect timeout covers TCP only; the login that follows gets a deadline too, so
            // a server that stops answering cannot hold this thread for ever.
            let loop = MultiThreadedEventLoopGroup.singleton.any()
            let connecting = PostgresConnection.connect(
                on: loop, configuration: configuration, id: nextID.add(1, ordering: .relaxed).oldValue, logger: logger)
            let promise = loop.makePromise(of: PostgresConnection.self)
            let late = Atomic<Bool>(false)
            let timer = loop.scheduleTask(in: Self.loginTimeout) {
                late.store(true, ordering: .relaxed)
                promise.fail(PostgresStoreError(message: "the server did not complete the login within \(Self.loginTimeout.nanoseconds / 1_000_000_000) s"))
            }
            connecting.whenComplete { result in
                timer.cancel()
                switch result {
                case .success(let c) where late.load(ordering: .relaxed): Self.close(c)
                case .success(let c): promise.succeed(c)
                case .failure(let e): promise.fail(e)
                }
            }
            return try promise.futureResult.wait()
        } catch {
            permits.signal()
            throw StoreError.cannotOpen(path: location, reason: Self.explainConnect(error))
        }
    }

    func checkin(_ connection: PostgresConnection, broken: Bool = false) {
        if broken || connection.isClosed {
            Self.close(connection)
        } else {
            idle.withLock { $0.append(connection) }
        }
        permits.signal()
    }

    func closeAll() {
        for c in idle.withLock({ pool -> [PostgresConnection] in defer { pool = [] }; return pool }) { Self.close(c) }
    }

    deinit { closeAll() }

    /// Closes a connection without waiting; the closure keeps it alive until its channel is
    /// closed (PostgresNIO requires a connection to be closed before it is released).
    static func close(_ connection: PostgresConnection) {
        let closed: EventLoopFuture<Void> = connection.close()
        closed.whenComplete { _ in withExtendedLifetime(connection) {} }
    }

    /// A connection failure in one sentence: refused, unknown host, login refused, TLS.
    static func explainConnect(_ error: any Error) -> String {
        if let psql = error as? PSQLError {
            if let message = psql.serverInfo?[.message] { return "the server refused the connection: \(message)" }
            return describe(psql.underlying.map { "\($0)" } ?? PostgresStoreError.describe(psql.code))
        }
        return describe("\(error)")
    }

    private static func describe(_ text: String) -> String {
        if text.contains("Connection refused") { return "the connection was refused (is the server running and listening there?)" }
        if text.contains("imeout") || text.contains("timed out") { return "the connection timed out" }
        if text.contains("NXDOMAIN") || text.contains("resolve") || text.contains("getaddrinfo") { return "the host name does not resolve" }
        return "cannot connect (\(text))"
    }
}
