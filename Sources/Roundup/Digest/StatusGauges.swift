import Logging

/// Fills the metrics that describe state rather than events (pending messages, open and held
/// digests, the most overdue digest, credits, presence) just before `/metrics` is read.
public struct StatusGauges: Sendable {
    let store: RoundupStore
    let presence: PresenceMap
    let metrics: RoundupMetrics
    let config: LiveConfig
    let clock: any WallClock
    let logger: Logger

    public init(store: RoundupStore, presence: PresenceMap, metrics: RoundupMetrics, config: LiveConfig, clock: any WallClock, logger: Logger) {
        self.store = store
        self.presence = presence
        self.metrics = metrics
        self.config = config
        self.clock = clock
        self.logger = logger
    }

    /// The exposition text after refreshing the gauges.
    public func refreshedExposition() -> String {
        let counts = presence.counts
        metrics.setPresence(online: counts.online, offline: counts.offline)
        do {
            let s = try store.statusSnapshot(now: clock.timestamp)
            metrics.pendingMessages.set(Int64(s.pendingMessages))
            metrics.openDigests.set(Int64(s.openDigests))
            for reason in ["unbound", "no_credit", "config_error"] { metrics.setHeld(reason, s.held[reason] ?? 0) }
            metrics.oldestDueAge.set(s.oldestOverdueSeconds)
            for template in config.snapshot.templates where template.kind == .oneTime {
                metrics.setCredits(template.id, s.creditsByTemplate[template.id] ?? 0)
            }
        } catch {
            logger.error("cannot read status gauges", metadata: ["error": "\(error)"])
        }
        return metrics.exposition()
    }
}
