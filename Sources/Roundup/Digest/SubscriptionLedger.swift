import Logging

/// Keeps the exact count of what each openid may be sent: popup accepts grant
/// (one-time: +1; long-term: subscribed), change-event rejects revoke, sent events are
/// recorded, and admin grants add up — each push or idempotency key applied once.
public struct SubscriptionLedger: Sendable {
    let store: RoundupStore
    let config: LiveConfig
    let clock: any WallClock
    let logger: Logger
    /// Called with an openid whose credits grew, so held digests can be re-checked.
    let onCreditsGranted: @Sendable (String) -> Void

    public init(store: RoundupStore, config: LiveConfig, clock: any WallClock, logger: Logger,
                onCreditsGranted: @escaping @Sendable (String) -> Void = { _ in }) {
        self.store = store
        self.config = config
        self.clock = clock
        self.logger = logger
        self.onCreditsGranted = onCreditsGranted
    }

    /// Applies a verified push; returns how many items changed something.
    @discardableResult
    public func apply(_ event: WeChatEvent) async throws -> Int {
        let cfg = config.snapshot
        let now = clock.timestamp
        switch event {
        case .subscribePopup(let e):
            var granted = 0
            for item in e.items where item.isAccept {
                let kind = cfg.template(id: item.templateID)?.kind ?? .oneTime
                let key = event.eventKey(templateID: item.templateID)
                let (applied, _) = try await store.applyCreditAsync(
                    openid: e.openid, templateID: item.templateID, change: kind == .longTerm ? .subscribe : .add(1), eventKey: key, now: now)
                if applied { granted += 1 }
            }
            if granted > 0 { onCreditsGranted(e.openid) }
            return granted
        case .subscribeChange(let e):
            var revoked = 0
            for item in e.items where !item.isAccept {
                let (applied, _) = try await store.applyCreditAsync(
                    openid: e.openid, templateID: item.templateID, change: .revoke, eventKey: event.eventKey(templateID: item.templateID), now: now)
                if applied { revoked += 1 }
            }
            return revoked
        case .subscribeSent(let e):
            let records = e.items.map {
                SentEventRecord(msgID: $0.msgID, openid: e.openid, templateID: $0.templateID, errorCode: $0.errorCode,
                                errorStatus: $0.errorStatus, createTime: e.createTime)
            }
            let lifecycle = DigestLifecycle(config: cfg, now: now)
            return try await store.write { tx in
                var matched = 0
                for r in records {
                    if try tx.recordSentEvent(r, now: now) != nil {
                        matched += 1
                        continue
                    }
                    // No digest has this MsgID: it may settle an in-doubt attempt of the same openid
                    // and template within 10 minutes.
                    let at = Timestamp(seconds: r.createTime)
                    guard let id = try tx.inDoubtDigests(openid: r.openid, templateID: r.templateID,
                                                         sendingBetween: at - DigestLifecycle.settleWindow,
                                                         and: at + DigestLifecycle.settleWindow).first
                    else { continue }
                    if try lifecycle.settleInDoubt(tx, digest: id, openid: r.openid, templateID: r.templateID, msgid: r.msgID,
                                                   errorCode: r.errorCode, errorStatus: r.errorStatus) {
                        matched += 1
                    }
                }
                return matched
            }
        case .other:
            return 0
        }
    }

    /// `POST /admin/credits`: adds `count` one-time credits (or subscribes a long-term template),
    /// once per idempotency key. Returns whether it applied and the running total.
    public func grant(openid: String, templateID: String, count: Int, idempotencyKey: String?) async throws -> (applied: Bool, credit: Credit) {
        let kind = config.snapshot.template(id: templateID)?.kind ?? .oneTime
        let result = try await store.applyCreditAsync(
            openid: openid, templateID: templateID, change: kind == .longTerm ? .subscribe : .add(count),
            eventKey: idempotencyKey.map { "admin-credits:\($0)" }, now: clock.timestamp)
        if result.applied { onCreditsGranted(openid) }
        return result
    }
}
