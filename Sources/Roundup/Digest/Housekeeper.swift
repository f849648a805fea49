import Foundation
import Logging
import ServiceLifecycle

/// Retention and privacy, once a minute: pending messages older than `digest.retention` leave
/// their digest as expired (an emptied digest is `expired`), unjoined messages past every
/// retention are dropped, and message text and rendered bodies of digests finished more than
/// `storage.text_retention` ago are erased — then the database's write-ahead log is
/// checkpointed and truncated, so erased words do not linger in the files.
public final class Housekeeper: Service, Sendable {
    let store: RoundupStore
    let config: LiveConfig
    let clock: any WallClock
    let metrics: RoundupMetrics
    let logger: Logger
    let interval: Duration

    public init(store: RoundupStore, config: LiveConfig, clock: any WallClock, metrics: RoundupMetrics, logger: Logger,
                interval: Duration = .seconds(60)) {
        self.store = store
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.logger = logger
        self.interval = interval
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.runOnce()
                try? await Task.sleep(for: self.interval)
            }
        }
    }

    /// One round of retention and text purge. Returns what it did.
    @discardableResult
    public func runOnce() async -> (expiredDigests: Int, purgedDigests: Int) {
        let cfg = config.snapshot
        let now = clock.timestamp
        let lifecycle = DigestLifecycle(config: cfg, now: now)
        do {
            // One instance at a time: on PostgreSQL each step runs only where its lock was free.
            let expired = try await store.write { tx in try tx.tryExclusive(.housekeeping) ? try lifecycle.expireOld(tx) : 0 }
            for _ in 0..<expired { metrics.digestFinished("expired") }
            let cutoff = now - cfg.storage.textRetention.milliseconds
            let purged = try await store.write { tx in
                try tx.tryExclusive(.housekeeping) ? try tx.purgeText(finishedBefore: cutoff, now: now) : 0
            }
            await store.truncateWAL()
            return (expired, purged)
        } catch {
            metrics.storeError(.housekeeping)
            logger.error("housekeeping failed", metadata: ["error": "\(error)"])
            return (0, 0)
        }
    }
}
