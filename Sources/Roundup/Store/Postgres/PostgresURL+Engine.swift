import Logging
import NIOSSL
import PostgresNIO

extension PostgresURL {
    /// Where the database is, for messages and logs: `host:port/database`. It names no user or
    /// password: the whole URL is a secret.
    public var location: String {
        let shownHost = host.contains(":") ? "[\(host)]" : host
        return "PostgreSQL at \(shownHost):\(port)/\(database)"
    }

    /// The connection settings PostgresNIO takes, TLS included: `disable` (none), `prefer` (TLS
    /// when the server offers it, unverified), `require` (TLS, unverified), `verify-full` (TLS with
    /// the certificate checked against `sslrootcert`, else the system roots, and the host name).
    func connectionConfiguration(idleInTransactionTimeout: Double? = nil) throws(StoreError) -> PostgresConnection.Configuration {
        let tls: PostgresConnection.Configuration.TLS
        do {
            switch sslMode {
            case .disable:
                tls = .disable
            case .prefer, .require:
                var c = TLSConfiguration.makeClientConfiguration()
                c.certificateVerification = .none
                let context = try NIOSSLContext(configuration: c)
                tls = sslMode == .prefer ? .prefer(context) : .require(context)
            case .verifyFull:
                var c = TLSConfiguration.makeClientConfiguration()
                c.certificateVerification = .fullVerification
                if let sslRootCert { c.trustRoots = .file(sslRootCert) }
                tls = .require(try NIOSSLContext(configuration: c))
            }
        } catch {
            throw .cannotOpen(path: location, reason: "cannot set up TLS for sslmode=\(sslMode.rawValue) (\(error))")
        }
        var configuration = PostgresConnection.Configuration(
            host: host, port: port, username: user, password: password, database: database, tls: tls)
        configuration.options.connectTimeout = .seconds(5)
        // A statement that waits for a lock held by another session gives up after this (SQLSTATE
        // 55P03) instead of waiting as long as that session holds it: a stalled peer holding one
        // user's lock then fails the one job that needs that user, not a whole group commit whose
        // callers all have a 1.5 s deadline. Migrations and storage copy wait without a limit.
        configuration.options.additionalStartupParameters.append(("lock_timeout", "\(PostgresEngine.lockTimeoutMilliseconds)"))
        if let idleInTransactionTimeout {
            // A process stopped in the middle of a transaction (SIGSTOP, a frozen VM) would hold
            // its row locks for ever, and claims skip locked rows: the server ends such a session.
            configuration.options.additionalStartupParameters.append(
                ("idle_in_transaction_session_timeout", "\(Int(idleInTransactionTimeout * 1000))"))
        }
        return configuration
    }
}

extension RoundupStore {
    /// Opens the store `storage` names: PostgreSQL when `storage.url` is set (migrating it under a
    /// lock), else the SQLite file at `storage.path`.
    public static func open(_ storage: StorageSettings, lease: InstanceLease? = nil) throws(StoreError) -> RoundupStore {
        guard let url = storage.url else {
            return try open(path: storage.path, synchronous: storage.synchronous)
        }
        let engine = try PostgresEngine.open(
            configuration: try url.connectionConfiguration(idleInTransactionTimeout: storage.instanceTimeout.seconds / 2),
            location: url.location, poolSize: storage.poolSize,
            lease: lease ?? InstanceLease(timeoutSeconds: storage.instanceTimeout.seconds))
        return RoundupStore(engine: engine)
    }

    /// The engine when it is PostgreSQL, else nil.
    public var postgres: PostgresEngine? { engine as? PostgresEngine }
}
