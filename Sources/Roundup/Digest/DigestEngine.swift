import Foundation
import Logging
import ServiceLifecycle

/// Sends due digests (SPEC §5.7–5.9): binding, usable template, confirmed presence, render,
/// `sending` recorded before the single WeChat call, and every answer classified — sent,
/// held, retried with backoff, in doubt, paused, or dead. Runs as a `Service` that wakes at the
/// next due time (and at least once a second, to notice a CLI `flush` from another process).
public final class DigestEngine: Service, Sendable {
    let store: RoundupStore
    let presence: PresenceMap
    let config: LiveConfig
    let clock: any WallClock
    let metrics: RoundupMetrics
    let logger: Logger
    /// The send path's writes share transactions with each other and with ingest.
    let committer: GroupCommitter
    let imAPI: (any IMRestAPI)?
    /// The WeChat sender, or nil in dry-run mode.
    let sender: SubscribeSender?
    let bell = WakeSignal()

    /// Backoff of retryable failures: 30 s doubling, 6 tries (SPEC §5.8).
    static let retryBase: Int64 = 30_000
    static let maxAttempts = 6

    public init(store: RoundupStore, presence: PresenceMap, config: LiveConfig, clock: any WallClock, metrics: RoundupMetrics,
                logger: Logger, imAPI: (any IMRestAPI)?, sender: SubscribeSender?, committer: GroupCommitter? = nil) {
        self.store = store
        self.committer = committer ?? GroupCommitter(store: store)
        self.presence = presence
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.logger = logger
        self.imAPI = imAPI
        self.sender = sender
    }

    /// Wakes the engine now (a credit or binding arrived, a flush, a config reload).
    public func wake() { bell.signal() }

    public func run() async throws {
        let recovered = try store.recoverInterruptedSends(now: clock.timestamp)
        if !recovered.isEmpty {
            logger.warning("digests interrupted during sending are now in_doubt and will not be resent", metadata: ["count": "\(recovered.count)"])
        }
        await cancelWhenGracefulShutdown {
            var lastHousekeeping = Date.distantPast
            while !Task.isCancelled {
                if self.clock.now.timeIntervalSince(lastHousekeeping) >= 60 {
                    self.housekeeping()
                    lastHousekeeping = self.clock.now
                }
                await self.runOnce()
                let next = (try? self.store.nextDueAt()) ?? nil
                let untilNext = next.map { max(0, $0.date.timeIntervalSince(self.clock.now)) } ?? 1
                // At most a second, so that a flush from another process is seen within one.
                await self.bell.wait(timeout: .milliseconds(Int64(min(untilNext, 1) * 1000) + 1))
            }
        }
    }

    /// One pass: re-check held digests, then send everything due. Returns the digests handled.
    @discardableResult
    public func runOnce() async -> Int {
        let now = clock.timestamp
        try? store.clearSendPauses(now: now, templates: false)
        recheckHeld(now: now)
        let pauses = (try? store.sendPauses()) ?? [:]
        if pauses["quota"] != nil { return 0 }
        guard let due = try? store.dueDigests(now: now), !due.isEmpty else { return 0 }
        let cfg = config.snapshot
        // One query for the whole batch's credits instead of one per digest and template.
        let credits = (try? store.credits(openids: due.compactMap(\.openid))) ?? [:]
        var ready: [(DueDigest, TemplateConfig)] = []
        for d in due {
            if let t = prepare(d, cfg: cfg, pauses: pauses, credits: credits, now: now) { ready.append((d, t)) }
        }
        let confirmed = await confirmPresence(ready, cfg: cfg, now: now)
        await withTaskGroup(of: Void.self) { group in
            var inFlight = 0
            for (d, t) in confirmed {
                if inFlight >= cfg.digest.sendConcurrency {
                    await group.next()
                    inFlight -= 1
                }
                group.addTask { await self.send(d, template: t, cfg: cfg) }
                inFlight += 1
            }
        }
        return due.count
    }

    // MARK: - the checks before sending (SPEC §5.7)

    /// Quiet hours, binding and template; returns the template to use, or nil when the digest
    /// was re-timed or held.
    func prepare(_ d: DueDigest, cfg: RoundupConfig, pauses: [String: Timestamp?], credits: [String: [String: Credit]]? = nil,
                 now: Timestamp) -> TemplateConfig? {
        let policy = cfg.digest.policy(forProfile: d.profile)
        if !d.flushForce, DuePolicy.isQuiet(now, policy.quietHours, cfg.digest.timezone) {
            let end = DuePolicy.afterQuietHours(now, policy.quietHours, cfg.digest.timezone)
            try? store.write { tx in
                try tx.setDue(d.id, end, now: now)
                try tx.appendEvent(digest: d.id, at: now, kind: "retimed", detail: "quiet hours: due \(end.rfc3339)")
            }
            return nil
        }
        guard let openid = d.openid else {
            hold(d, .unbound, now: now, note: "no openid is bound to \(d.imUserID)")
            return nil
        }
        guard let template = usableTemplate(openid: openid, cfg: cfg, pauses: pauses, known: credits.map { $0[openid] ?? [:] }) else {
            let paused = cfg.templates.filter { pauses["template:\($0.id)"] != nil }
            if !paused.isEmpty && paused.count == cfg.templates.count {
                hold(d, .configError, now: now, note: "every template is paused after a configuration error")
            } else {
                hold(d, .noCredit, now: now, note: cfg.templates.isEmpty ? "no template is configured" : "no subscription credit for any template")
            }
            return nil
        }
        return template
    }

    /// The first template in config order this openid may be sent (SPEC §5.7). `known` is the
    /// openid's credits by template when the caller read them already.
    func usableTemplate(openid: String, cfg: RoundupConfig, pauses: [String: Timestamp?], skipping: Set<String> = [],
                        known: [String: Credit]? = nil) -> TemplateConfig? {
        for t in cfg.templates where pauses["template:\(t.id)"] == nil && !skipping.contains(t.id) {
            let found = known.map { $0[t.id] } ?? (try? store.credit(openid: openid, templateID: t.id))
            guard let credit = found else { continue }
            if t.kind == .oneTime ? credit.count > 0 : credit.subscribed { return t }
        }
        return nil
    }

    private func hold(_ d: DueDigest, _ reason: DigestReason, now: Timestamp, note: String) {
        if d.state == .held && d.reason == reason { return }
        _ = try? store.write { tx in try tx.moveDigest(d.id, from: d.state, to: .held, reason: reason, now: now, note: note) }
    }

    /// Presence confirmed with `query_online_status` in batches (SPEC §5.7); online users'
    /// digests are cancelled. Falls back to callback presence when IM fails.
    func confirmPresence(_ ready: [(DueDigest, TemplateConfig)], cfg: RoundupConfig, now: Timestamp) async -> [(DueDigest, TemplateConfig)] {
        guard !ready.isEmpty else { return [] }
        var online: Set<String> = []
        var source = "callbacks"
        if let imAPI {
            do {
                let statuses = try await imAPI.queryOnlineStatus(ready.map(\.0.imUserID))
                source = "query_online_status"
                for (user, status) in statuses {
                    presence.confirm(user: user, online: status == .online)
                    if status == .online { online.insert(user) }
                }
            } catch {
                logger.warning("query_online_status failed; using callback presence", metadata: ["error": "\(error)"])
                online = Set(ready.map(\.0.imUserID).filter { presence.state(of: $0) == .online })
            }
        } else {
            online = Set(ready.map(\.0.imUserID).filter { presence.state(of: $0) == .online })
        }
        let confirmedOnline = online
        let via = source
        // One transaction for the whole batch's presence notes and cancellations.
        let decided = transact { tx -> (out: [(DueDigest, TemplateConfig)], cancelled: Int) in
            var out: [(DueDigest, TemplateConfig)] = []
            var cancelled = 0
            for (d, t) in ready {
                let policy = cfg.digest.policy(forProfile: d.profile)
                if confirmedOnline.contains(d.imUserID) && policy.cancelOnOnline {
                    if try tx.moveDigest(d.id, from: d.state, to: .cancelled, reason: .userOnline, now: now,
                                         note: "presence confirmed online (\(via)); nothing sent") {
                        try tx.finishMessages(ofDigest: d.id, status: "seen", now: now)
                        cancelled += 1
                    }
                } else {
                    try tx.appendEvent(digest: d.id, at: now, kind: "presence",
                                       detail: "confirmed \(confirmedOnline.contains(d.imUserID) ? "online" : "offline") (\(via))")
                    out.append((d, t))
                }
            }
            return (out, cancelled)
        }
        guard let decided else { return [] }
        for _ in 0..<decided.cancelled { metrics.digestFinished("cancelled") }
        return decided.out
    }

    // MARK: - sending (SPEC §5.8, §5.9)

    func send(_ d: DueDigest, template first: TemplateConfig, cfg: RoundupConfig) async {
        guard let openid = d.openid else { return }
        let now = clock.timestamp
        let messages = (try? store.digestMessages(d.id)) ?? []
        guard !messages.isEmpty else {
            transact { tx in try tx.moveDigest(d.id, from: d.state, to: .expired, now: now, note: "no messages left") }
            metrics.digestFinished("expired")
            return
        }
        let input = RenderInput(
            recipientName: d.name,
            messages: messages.map {
                RenderMessage(sender: $0.sender, senderName: $0.senderName, senderNameCard: $0.senderNameCard, msgTime: $0.msgTime,
                              receivedOrder: $0.id, summary: $0.summary)
            },
            now: now.date, timeZone: cfg.digest.timezone)
        var template = first
        var tried: Set<String> = []
        var state = d.state
        while true {
            tried.insert(template.id)
            let rendered: RenderedMessage
            switch Renderer.render(input, template: template) {
            case .ok(let r): rendered = r
            case .unfit(let keyword):
                finish(d.id, from: state, to: .dead, errcode: "render:\(keyword)", errmsg: "no value or fallback fits \(keyword)", now: now)
                return
            }
            let body = rendered.body(touser: openid)
            guard let sender else {
                // Dry run: every rule applied, nothing spent, no WeChat call (SPEC §5.7).
                transact { tx in
                    guard try tx.markSending(d.id, template: template.id, body: body, now: now) else { return }
                    try tx.moveDigest(d.id, from: .sending, to: .dryRun, now: now, note: "dry run: rendered, not sent")
                    try tx.finishMessages(ofDigest: d.id, status: "delivered", now: now)
                }
                metrics.digestFinished("dry_run")
                metrics.digestMessages.record(Double(messages.count))
                return
            }
            let outcome: SendOutcome
            if state == .open, let refused = await sender.prepare() {
                // No token: WeChat was not called and nothing was committed, so the digest is
                // still open and the outcome below moves it from there.
                outcome = refused
            } else {
                if state == .open {
                    // Committed before the call (SPEC §5.9); concurrent senders share the transaction.
                    let id = d.id, templateID = template.id
                    guard await commit({ tx in try tx.markSending(id, template: templateID, body: body, now: now) }) == true else { return }
                    state = .sending
                }
                outcome = await sender.send(rendered.subscribeMessage(touser: openid))
            }
            let after = clock.timestamp
            switch outcome {
            case .sent(let msgid):
                let id = d.id, count = messages.count, used = template, from = state
                await commit { tx in
                    try tx.setResult(id, errcode: "0", errmsg: nil, msgid: msgid)
                    try tx.moveDigest(id, from: from, to: .sent, now: after, note: "errcode 0, msgid \(msgid ?? "-"), \(count) message(s)")
                    try tx.finishMessages(ofDigest: id, status: "delivered", now: after)
                    if used.kind == .oneTime {
                        _ = try tx.applyCredit(openid: openid, templateID: used.id, change: .spend, eventKey: nil, now: after)
                    }
                }
                metrics.digestFinished("sent")
                metrics.digestMessages.record(Double(messages.count))
                return
            case .noCredit:
                metrics.wechatError("43101")
                logger.info("43101: the user has no subscription for this template", metadata: ["template": "\(template.id)"])
                transact { tx in
                    _ = try tx.applyCredit(openid: openid, templateID: template.id, change: .revoke, eventKey: nil, now: after)
                    try tx.appendEvent(digest: d.id, at: after, kind: "wechat", detail: "errcode 43101 with template \(template.id): credits set to 0")
                }
                let pauses = (try? store.sendPauses()) ?? [:]
                if let next = usableTemplate(openid: openid, cfg: cfg, pauses: pauses, skipping: tried) {
                    template = next
                    continue
                }
                finish(d.id, from: state, to: .held, reason: .noCredit, errcode: "43101", errmsg: "user not subscribed", now: after)
                return
            case .tokenInvalid(let code):
                metrics.wechatError(String(code))
                retry(d, from: state, errcode: String(code), errmsg: "access token rejected twice", now: after)
                return
            case .retryable(let code, let msg):
                metrics.wechatError(code)
                retry(d, from: state, errcode: code, errmsg: msg, now: after)
                return
            case .inDoubt(let reason):
                finish(d.id, from: state, to: .inDoubt, errcode: nil, errmsg: reason, now: after)
                metrics.digestFinished("in_doubt")
                settleFromEarlierEvent(d.id, openid: openid, template: template.id, now: after)
                return
            case .quotaExhausted:
                metrics.wechatError("45009")
                let reset = DigestEngine.nextQuotaDay(after: after)
                try? store.setSendPause("quota", until: reset, reason: "45009 daily quota reached", now: after)
                logger.error("45009: the daily subscribe-message quota is used up; sending pauses", metadata: ["until": "\(reset.rfc3339)"])
                transact { [state] tx in
                    try tx.moveDigest(d.id, from: state, to: .open, now: after, note: "45009 daily quota reached; due again at \(reset.rfc3339)")
                    try tx.setDue(d.id, after, now: after)
                }
                return
            case .configError(let code, let msg):
                metrics.wechatError(String(code))
                let key = "template:\(template.id)"
                if ((try? store.sendPauses()) ?? [:])[key] == nil {
                    logger.error("configuration error from WeChat; sending with this template pauses until the config changes",
                                 metadata: ["template": "\(template.id)", "errcode": "\(code)", "errmsg": "\(msg)"])
                }
                try? store.setSendPause(key, until: nil, reason: "errcode \(code): \(msg)", now: after)
                finish(d.id, from: state, to: .held, reason: .configError, errcode: String(code), errmsg: msg, now: after)
                return
            case .contentError(let code, let msg):
                metrics.wechatError(String(code))
                finish(d.id, from: state, to: .dead, errcode: String(code), errmsg: msg, now: after)
                metrics.digestFinished("dead")
                return
            }
        }
    }

    /// A synchronous write (the send path's writes are small; keeping them synchronous lets
    /// them capture the loop's state).
    @discardableResult
    private func transact<T>(_ body: (StoreTransaction) throws -> T) -> T? {
        do {
            return try store.write(body)
        } catch {
            logger.error("digest state change failed", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// A write through the group committer (the send path's frequent writes: many senders run
    /// at once, and one transaction for all of them costs one WAL write).
    @discardableResult
    private func commit<T: Sendable>(_ work: @escaping @Sendable (StoreTransaction) throws -> T) async -> T? {
        do {
            return try await committer.perform(timeout: .seconds(60), work)
        } catch {
            logger.error("digest state change failed", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// Backoff retry, or dead after the last try. `from` is `sending` after a call to WeChat, or
    /// `open` when the send stopped before it (no token); that try counts all the same, so a
    /// long token outage ends in backoff and then `dead`, as failed sends do.
    private func retry(_ d: DueDigest, from: DigestState, errcode: String, errmsg: String, now: Timestamp) {
        // `markSending` counted a try that reached the call; one that stopped before it is counted here.
        let counted = from == .sending
        let stored = ((try? store.dueDigest(d.id))?.attempts) ?? d.attempts + (counted ? 1 : 0)
        let attempts = counted ? stored : stored + 1
        guard attempts < DigestEngine.maxAttempts else {
            finish(d.id, from: from, to: .dead, errcode: errcode, errmsg: "\(errmsg) (gave up after \(attempts) tries)", now: now)
            metrics.digestFinished("dead")
            return
        }
        let due = now + DigestEngine.retryBase << Int64(attempts - 1)
        _ = try? store.write { tx in
            try tx.setResult(d.id, errcode: errcode, errmsg: errmsg, msgid: nil)
            if !counted { try tx.countAttempt(d.id) }
            try tx.moveDigest(d.id, from: from, to: .open, now: now, note: "errcode \(errcode): try \(attempts + 1) at \(due.rfc3339)")
            try tx.setDue(d.id, due, now: now)
        }
    }

    private func finish(_ id: Int64, from: DigestState, to: DigestState, reason: DigestReason? = nil, errcode: String?, errmsg: String?, now: Timestamp) {
        _ = try? store.write { tx in
            try tx.setResult(id, errcode: errcode, errmsg: errmsg, msgid: nil)
            let note = [errcode.map { "errcode \($0)" }, errmsg].compactMap { $0 }.joined(separator: ": ")
            try tx.moveDigest(id, from: from, to: to, reason: reason, now: now, note: note)
        }
    }

    /// A sent event that arrived before the digest went in doubt settles it at once (SPEC §5.9).
    private func settleFromEarlierEvent(_ id: Int64, openid: String, template: String, now: Timestamp) {
        _ = try? store.write { tx in
            let s = now.milliseconds / 1000
            guard let event = try tx.sentEvent(openid: openid, templateID: template, createdBetween: s - 600, and: s + 600) else { return }
            try tx.setResult(id, errcode: String(event.errorCode), errmsg: nil, msgid: event.msgid)
            try tx.moveDigest(id, from: .inDoubt, to: .sent, now: now, note: "settled by subscribe_msg_sent_event MsgID \(event.msgid)")
            try tx.finishMessages(ofDigest: id, status: "delivered", now: now)
        }
    }

    /// 00:00 Asia/Shanghai after `t`: when WeChat's daily quotas reset.
    static func nextQuotaDay(after t: Timestamp) -> Timestamp {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "Asia/Shanghai")!
        let start = calendar.startOfDay(for: t.date)
        return Timestamp(calendar.date(byAdding: .day, value: 1, to: start) ?? t.date.addingTimeInterval(86_400))
    }

    /// Re-computes the due time of open digests (all, or one user's) under the policy in force
    /// now, logging each change (SPEC §2: "open digests are re-timed to the new window"; §5.6: "a
    /// changed profile re-times the user's open digest"). Flushed digests keep their due time.
    @discardableResult
    public func retimeOpenDigests(user: String? = nil, reason: String) -> Int {
        let changed = (try? DigestEngine.retime(store: store, config: config.snapshot, now: clock.timestamp, user: user, reason: reason)) ?? 0
        if changed > 0 { wake() }
        return changed
    }

    /// `retimeOpenDigests` without a running engine (the CLI uses it after `users bind --profile`).
    @discardableResult
    public static func retime(store: RoundupStore, config cfg: RoundupConfig, now: Timestamp, user: String?, reason: String) throws -> Int {
        try store.write { tx -> Int in
            var changed = 0
            for d in try tx.openDigestTimings(user: user) where d.flushRequested == 0 && d.pendingCount > 0 {
                let policy = cfg.digest.policy(forProfile: d.profile)
                var facts = DuePolicy.Facts(windowStart: d.windowStartAt, lastMessageAt: d.lastMessageAt ?? d.windowStartAt,
                                            pendingCount: d.pendingCount, urgent: d.urgent, lastSentAt: try tx.lastSentAt(user: d.imUserID))
                if DuePolicy.isEarly(facts, policy: policy) { facts.earlySince = d.dueAt }
                let due = DuePolicy.dueAt(facts, policy: policy, timeZone: cfg.digest.timezone)
                guard due != d.dueAt else { continue }
                try tx.setDue(d.id, due, now: now)
                try tx.appendEvent(digest: d.id, at: now, kind: "retimed", detail: "\(reason): due \(due.rfc3339) (was \(d.dueAt.rfc3339))")
                changed += 1
            }
            return changed
        }
    }

    // MARK: - held digests, retention, privacy

    /// Held digests whose reason went away (a binding, a credit, a config change) are due now.
    func recheckHeld(now: Timestamp) {
        guard let held = try? store.heldDigests(), !held.isEmpty else { return }
        let cfg = config.snapshot
        let pauses = (try? store.sendPauses()) ?? [:]
        for d in held {
            let lifted: Bool
            switch d.reason {
            case .unbound: lifted = d.openid != nil
            case .noCredit, .configError: lifted = d.openid.map { usableTemplate(openid: $0, cfg: cfg, pauses: pauses) != nil } ?? false
            default: lifted = false
            }
            guard lifted else { continue }
            _ = try? store.write { tx in
                guard try tx.moveDigest(d.id, from: .held, to: .open, now: now, note: "hold lifted (\(d.reason?.rawValue ?? "?")); due now") else { return }
                try tx.setDue(d.id, now, now: now)
            }
        }
    }

    /// Per-message retention (messages leave their digest as expired; an emptied digest is
    /// `expired`) and the `text_retention` purge (SPEC §5.7, §5.13).
    public func housekeeping() {
        let cfg = config.snapshot
        let now = clock.timestamp
        do {
            // The retentions of the default policy and every profile: the shortest bounds which
            // pending messages can be old enough, the longest which unjoined ones may be dropped.
            let retentions = ([cfg.digest.policy] + cfg.digest.profiles.keys.map { cfg.digest.policy(forProfile: $0) })
                .map(\.retention.milliseconds)
            let shortest = retentions.min() ?? cfg.digest.policy.retention.milliseconds
            let longest = retentions.max() ?? shortest
            try store.write { tx in
                try tx.dropUnjoined(receivedBefore: now - longest, now: now)
                for d in try tx.activeDigests(withPendingBefore: now - shortest) {
                    let policy = cfg.digest.policy(forProfile: try tx.user(d.user)?.profile)
                    let cutoff = now - policy.retention.milliseconds
                    guard d.oldest < cutoff else { continue }
                    let expired = try tx.expireMessages(ofDigest: d.id, receivedBefore: cutoff, now: now)
                    try tx.appendEvent(digest: d.id, at: now, kind: "message", detail: "\(expired) message(s) older than \(policy.retention) expired")
                    if try tx.pendingCount(digest: d.id) == 0 {
                        try tx.moveDigest(d.id, from: d.state, to: .expired, now: now, note: "every message outlived digest.retention")
                    }
                }
            }
            try store.purgeText(finishedBefore: now - cfg.storage.textRetention.milliseconds, now: now)
        } catch {
            logger.error("housekeeping failed", metadata: ["error": "\(error)"])
        }
    }
}
