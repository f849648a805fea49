import Foundation
import Logging
import ServiceLifecycle

/// This instance's heartbeat row in a shared PostgreSQL database, renewed every fifth of
/// `storage.instance_timeout`; each beat also turns the `sending` digests of instances that fell
/// silent into `in_doubt`. On graceful stop (it is the last service to stop) it releases the
/// claims on digests it has not started and removes its row, so a rolling restart delays nothing.
public struct InstanceHeartbeat: Service {
    let store: RoundupStore
    let engine: PostgresEngine
    let fingerprint: String
    let clock: any WallClock
    let logger: Logger

    public init(store: RoundupStore, engine: PostgresEngine, fingerprint: String, clock: any WallClock, logger: Logger) {
        self.store = store
        self.engine = engine
        self.fingerprint = fingerprint
        self.clock = clock
        self.logger = logger
    }

    /// Writes the heartbeat row now (before the first claim).
    public func beat() async throws {
        let host = ProcessInfo.processInfo.hostName, pid = Int(ProcessInfo.processInfo.processIdentifier)
        let fingerprint = self.fingerprint
        try await store.write { tx in
            try (tx as? PostgresTransaction)?.heartbeat(host: host, pid: pid, version: RoundupVersion.current, fingerprint: fingerprint)
        }
    }

    public func run() async throws {
        let interval = Duration.milliseconds(Int64(engine.lease.timeoutSeconds * 200))
        await withGracefulShutdownHandler {
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                do {
                    try await beat()
                    let reaped = try await store.recoverInterruptedSendsAsync(now: clock.timestamp)
                    if !reaped.isEmpty {
                        logger.warning("sends of a stopped instance are in doubt", metadata: ["digests": "\(reaped.count)"])
                    }
                } catch {
                    logger.error("heartbeat failed", metadata: ["error": "\(RoundupStore.explain(error))"])
                }
                try? await Task.sleep(for: interval)
            }
        } onGracefulShutdown: {}
        do {
            // Its own task: the stop must release the claims even when this one is cancelled.
            let store = self.store
            try await Task { try await store.write { tx in try (tx as? PostgresTransaction)?.resign() } }.value
            logger.info("left the instance list and released unstarted claims")
        } catch {
            logger.error("could not release claims on stop", metadata: ["error": "\(RoundupStore.explain(error))"])
        }
    }

    /// The live instances sharing the database (`roundup instances`).
    public static func liveInstances(_ store: RoundupStore) async throws -> [InstanceRow] {
        try await store.read { tx in try (tx as? PostgresTransaction)?.liveInstances() ?? [] }
    }

    /// Every digest an instance has claimed, with its claimer (empty on SQLite).
    public static func claimedDigests(_ store: RoundupStore) async throws -> [ClaimedDigest] {
        try await store.read { tx in try (tx as? PostgresTransaction)?.claimedDigests() ?? [] }
    }
}
