import Foundation
import Logging

/// Sends one due digest: confirms presence (in batches), renders, records `sending` before the
/// single WeChat call, and moves the digest once per outcome — sent, held, retried with backoff,
/// in doubt, paused, or dead. A state change that fails after WeChat answered is logged with the
/// digest id and counted in `roundup_store_errors_total`, never dropped.
public final class DigestSender: Sendable {
    let store: RoundupStore
    let committer: GroupCommitter
    let presence: PresenceMap
    let config: LiveConfig
    let clock: any WallClock
    let metrics: RoundupMetrics
    let logger: Logger
    let imAPI: (any IMRestAPI)?
    /// The WeChat side, or nil in dry-run mode (render and record, never call WeChat).
    public let wechat: SubscribeSender?

    /// Backoff of retryable failures: 30 s doubling, 6 tries.
    public static let retryBase: Int64 = 30_000
    public static let maxAttempts = 6
    /// `query_online_status` takes at most 500 accounts per call.
    public static let presenceBatch = 500

    public init(store: RoundupStore, committer: GroupCommitter, presence: PresenceMap, config: LiveConfig, clock: any WallClock,
                metrics: RoundupMetrics, logger: Logger, imAPI: (any IMRestAPI)?, wechat: SubscribeSender?) {
        self.store = store
        self.committer = committer
        self.presence = presence
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.logger = logger
        self.imAPI = imAPI
        self.wechat = wechat
    }

    // MARK: - presence

    /// Confirms presence with `query_online_status` for one batch of due digests: online users'
    /// digests are cancelled (with `cancel_on_online`), the rest go on. When IM fails, callback
    /// presence is used and `unknown` counts as offline.
    public func confirmPresence(_ ready: [(DueDigest, TemplateConfig)], cfg: RoundupConfig) async -> [(DueDigest, TemplateConfig)] {
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
        let lifecycle = DigestLifecycle(config: cfg, now: clock.timestamp)
        let now = lifecycle.now
        // One transaction for the whole batch's presence notes and cancellations.
        let ids = ready.map(\.0.id)
        let decided = await write(.presence, digests: ids) { tx -> (keep: [Int64], cancelled: Int) in
            var keep: [Int64] = []
            var notes: [NewDigestEvent] = []
            var cancelled = 0
            // In id order: an ingest batch share-locks its users' digests in that order, so
            // neither can hold one digest while waiting for another the other holds (PostgreSQL
            // would break that cycle after a second by failing one of them).
            for (d, _) in ready.sorted(by: { $0.0.id < $1.0.id }) {
                let policy = cfg.digest.policy(forProfile: d.profile)
                if confirmedOnline.contains(d.imUserID) && policy.cancelOnOnline {
                    if try lifecycle.cancelOnline(tx, digest: d.id, from: d.state, note: "presence confirmed online (\(via)); nothing sent") {
                        cancelled += 1
                    }
                } else {
                    notes.append(NewDigestEvent(digest: d.id, at: now, kind: .presence,
                                                detail: "confirmed \(confirmedOnline.contains(d.imUserID) ? "online" : "offline") (\(via))"))
                    keep.append(d.id)
                }
            }
            try tx.appendEvents(notes)
            return (keep, cancelled)
        }
        guard let decided else { return [] }
        for _ in 0..<decided.cancelled { metrics.digestFinished("cancelled") }
        let keep = Set(decided.keep)
        return ready.filter { keep.contains($0.0.id) }
    }

    // MARK: - sending

    /// Renders and sends one digest, then records the outcome. `shouldStart` is asked just
    /// before `sending` is committed: false (the service is stopping) leaves the digest open.
    /// `answered` is called once WeChat has answered the last call this send makes, before the
    /// outcome is recorded: the send's slot is free for the next send from then on.
    ///
    /// `read` are the digest's messages when the pipeline read them with its batch's (read
    /// before the slot was taken, so perhaps no longer all of them: `markSending` then refuses
    /// and the next pass renders again). Without them, or when there were none, they are read now.
    public func send(_ d: DueDigest, template first: TemplateConfig, cfg: RoundupConfig, read: [DigestMessageRow]? = nil,
                     shouldStart: @Sendable () -> Bool = { true }, answered: @Sendable () -> Void = {}) async {
        guard let openid = d.openid else { return }
        let now = clock.timestamp
        let messages: [DigestMessageRow]
        do {
            if let read, !read.isEmpty {
                messages = read
            } else {
                messages = try await store.digestMessagesAsync(d.id)
            }
        } catch {
            logger.error("cannot read a due digest's messages; it stays due", metadata: ["digest": "\(d.id)", "error": "\(error)"])
            return
        }
        guard !messages.isEmpty else {
            if await write(.finish, digest: d.id, { tx in try tx.moveDigest(d.id, from: d.state, to: .expired, now: now, note: "no messages left") }) == true {
                metrics.digestFinished("expired")
            }
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
                if await finish(d.id, from: state, to: .dead, errcode: "render:\(keyword)", errmsg: "no value or fallback fits \(keyword)", now: now) {
                    metrics.digestFinished("dead")
                }
                return
            }
            let body = rendered.body(touser: openid)
            guard let wechat else {
                guard shouldStart() else { return }
                // Dry run: every rule applied, nothing spent, no WeChat call.
                let id = d.id, templateID = template.id, rendered = messages.map(\.id)
                let done = await write(.finish, digest: id) { tx -> Bool in
                    guard try tx.markSending(id, rendered: rendered, template: templateID, body: body, now: now) else { return false }
                    try tx.moveDigest(id, from: .sending, to: .dryRun, now: now, note: "dry run: rendered, not sent")
                    try tx.finishMessages(ofDigest: id, status: .delivered, now: now)
                    return true
                }
                if done == true {
                    metrics.digestFinished("dry_run")
                    metrics.digestMessages.record(Double(messages.count))
                }
                return
            }
            let outcome: SendOutcome
            if state == .open, let refused = await wechat.prepare() {
                // No token: WeChat was not called and nothing was committed, so the digest is
                // still open and the outcome below moves it from there.
                outcome = refused
            } else {
                if state == .open {
                    guard shouldStart() else { return }
                    // Committed before the call (at most once); concurrent senders share the transaction.
                    let id = d.id, templateID = template.id, rendered = messages.map(\.id)
                    guard await write(.markSending, digest: id, hints: WriteHints(users: [], sends: [id]), { tx in
                        try tx.markSending(id, rendered: rendered, template: templateID, body: body, now: now)
                    }) == true
                    else { return }
                    state = .sending
                }
                outcome = await wechat.send(rendered.subscribeMessage(touser: openid))
            }
            let after = clock.timestamp
            // Only a 43101 may lead to another call (the next template), in this same slot.
            if case .noCredit = outcome {} else { answered() }
            switch outcome {
            case .sent(let msgid):
                // WeChat answers only a send that started, so the digest is `sending` here.
                let id = d.id, count = messages.count
                let spend = template.kind == .oneTime ? CreditKey(openid: openid, templateID: template.id) : nil
                let done = await write(.finish, digest: id) { tx in
                    try tx.markSent(id, msgid: msgid, spend: spend, messages: count, now: after)
                }
                if done == true {
                    metrics.digestFinished("sent")
                    metrics.digestMessages.record(Double(messages.count))
                }
                return
            case .noCredit:
                metrics.wechatError("43101")
                logger.info("43101: the user has no subscription for this template", metadata: ["template": "\(template.id)", "digest": "\(d.id)"])
                let id = d.id, templateID = template.id
                await write(.credits, digest: id) { tx in
                    _ = try tx.applyCredit(openid: openid, templateID: templateID, change: .revoke, eventKey: nil, now: after)
                    try tx.appendEvent(digest: id, at: after, kind: .wechat, detail: "errcode 43101 with template \(templateID): credits set to 0")
                }
                // The next template in config order, in the same pass.
                if let next = await nextTemplate(openid: openid, user: d.imUserID, cfg: cfg, skipping: tried, at: after) {
                    template = next
                    continue
                }
                answered()
                await finish(d.id, from: state, to: .held, reason: .noCredit, errcode: "43101", errmsg: "user not subscribed", now: after)
                return
            case .tokenInvalid(let code):
                metrics.wechatError(String(code))
                await retry(d, from: state, errcode: String(code), errmsg: "access token rejected twice", now: after)
                return
            case .retryable(let code, let msg):
                metrics.wechatError(code)
                await retry(d, from: state, errcode: code, errmsg: msg, now: after)
                return
            case .inDoubt(let reason):
                if await finish(d.id, from: state, to: .inDoubt, errcode: nil, errmsg: reason, now: after) {
                    metrics.digestFinished("in_doubt")
                    await settleFromEarlierEvent(d.id, openid: openid, template: template.id, cfg: cfg, now: after)
                }
                return
            case .quotaExhausted:
                metrics.wechatError("45009")
                let reset = Self.nextQuotaDay(after: after)
                logger.error("45009: the daily subscribe-message quota is used up; sending pauses", metadata: ["until": "\(reset.rfc3339)"])
                let id = d.id, from = state
                await write(.pause, digest: id) { tx in
                    try tx.setSendPause(.quota, until: reset, reason: "45009 daily quota reached", now: after)
                    try tx.moveDigest(id, from: from, to: .open, now: after, note: "45009 daily quota reached; due again at \(reset.rfc3339)")
                    try tx.setDue(id, after, now: after)
                }
                return
            case .configError(let code, let msg):
                metrics.wechatError(String(code))
                let key = SendPauseKey.template(template.id)
                if (try? await store.hasSendPauseAsync(key)) != true {
                    logger.error("configuration error from WeChat; sending with this template pauses until the config changes",
                                 metadata: ["template": "\(template.id)", "errcode": "\(code)", "errmsg": "\(msg)", "digest": "\(d.id)"])
                }
                await write(.pause, digest: d.id) { tx in try tx.setSendPause(key, until: nil, reason: "errcode \(code): \(msg)", now: after) }
                await finish(d.id, from: state, to: .held, reason: .configError, errcode: String(code), errmsg: msg, now: after)
                return
            case .contentError(let code, let msg):
                metrics.wechatError(String(code))
                if await finish(d.id, from: state, to: .dead, errcode: String(code), errmsg: msg, now: after) {
                    metrics.digestFinished("dead")
                }
                return
            }
        }
    }

    /// The next usable template after a 43101, read fresh (the 43101 just revoked a credit).
    private func nextTemplate(openid: String, user: String, cfg: RoundupConfig, skipping: Set<String>, at now: Timestamp) async -> TemplateConfig? {
        do {
            let (credits, pauses) = try await store.creditsAndPauses(openid: openid)
            if case .use(let t) = DigestLifecycle(config: cfg, now: now)
                .chooseTemplate(openid: openid, user: user, credits: credits, pauses: pauses, skipping: skipping) {
                return t
            }
        } catch {
            logger.error("cannot read credits after a 43101", metadata: ["error": "\(error)"])
        }
        return nil
    }

    /// Backoff retry, or dead after the last try. `from` is `sending` after a call to WeChat, or
    /// `open` when the send stopped before it (no token); that try counts all the same, so a
    /// long token outage ends in backoff and then `dead`, as failed sends do.
    private func retry(_ d: DueDigest, from: DigestState, errcode: String, errmsg: String, now: Timestamp) async {
        // `markSending` counted a try that reached the call; one that stopped before it is counted here.
        let counted = from == .sending
        let id = d.id
        let result = await write(.finish, digest: id) { tx -> (attempts: Int, dead: Bool)? in
            if !counted { try tx.countAttempt(id) }
            let attempts = try tx.attempts(id)
            try tx.setResult(id, errcode: errcode, errmsg: errmsg, msgid: nil)
            guard attempts < Self.maxAttempts else {
                let moved = try tx.moveDigest(id, from: from, to: .dead, now: now,
                                              note: "errcode \(errcode): \(errmsg) (gave up after \(attempts) tries)")
                return moved ? (attempts, true) : nil
            }
            let due = now + Self.retryBase << Int64(attempts - 1)
            guard try tx.moveDigest(id, from: from, to: .open, now: now, note: "errcode \(errcode): try \(attempts + 1) at \(due.rfc3339)")
            else { return nil }
            try tx.setDue(id, due, now: now)
            return (attempts, false)
        }
        if let moved = result ?? nil, moved.dead { metrics.digestFinished("dead") }
    }

    /// Records the WeChat result and moves the digest; returns whether it moved.
    @discardableResult
    private func finish(_ id: Int64, from: DigestState, to: DigestState, reason: DigestReason? = nil, errcode: String?, errmsg: String?,
                        now: Timestamp) async -> Bool {
        let note = [errcode.map { "errcode \($0)" }, errmsg].compactMap { $0 }.joined(separator: ": ")
        return await write(to == .held ? .hold : .finish, digest: id) { tx -> Bool in
            guard try tx.moveDigest(id, from: from, to: to, reason: reason, now: now, note: note) else { return false }
            try tx.setResult(id, errcode: errcode, errmsg: errmsg, msgid: nil)
            return true
        } ?? false
    }

    /// A sent event that arrived before the digest went in doubt settles it at once.
    private func settleFromEarlierEvent(_ id: Int64, openid: String, template: String, cfg: RoundupConfig, now: Timestamp) async {
        let lifecycle = DigestLifecycle(config: cfg, now: now)
        await write(.settle, digest: id) { tx in
            guard let event = try tx.sentEvent(openid: openid, templateID: template,
                                               createdBetween: (now - DigestLifecycle.settleWindow).milliseconds / 1000,
                                               and: (now + DigestLifecycle.settleWindow).milliseconds / 1000)
            else { return }
            try lifecycle.settleInDoubt(tx, digest: id, openid: openid, templateID: template, msgid: event.msgid,
                                        errorCode: event.errorCode, errorStatus: nil)
        }
    }

    /// A write of the send path through the group committer (many senders share one
    /// transaction). A failure is logged with the digest id and counted, never dropped; nil then.
    @discardableResult
    func write<T: Sendable>(_ operation: StoreOperation, digest: Int64, hints: WriteHints? = nil,
                            _ work: @escaping @Sendable (StoreTransaction) throws -> T) async -> T? {
        await write(operation, digests: [digest], hints: hints, work)
    }

    @discardableResult
    func write<T: Sendable>(_ operation: StoreOperation, digests: [Int64], hints: WriteHints? = nil,
                            _ work: @escaping @Sendable (StoreTransaction) throws -> T) async -> T? {
        do {
            return try await committer.perform(timeout: .seconds(60), hints: hints, work)
        } catch {
            metrics.storeError(operation)
            logger.error("digest state change failed", metadata: [
                "operation": "\(operation.rawValue)", "digest": "\(digests.prefix(20).map(String.init).joined(separator: ","))",
                "error": "\(error)",
            ])
            return nil
        }
    }

    /// 00:00 Asia/Shanghai after `t`: when WeChat's daily quotas reset.
    public static func nextQuotaDay(after t: Timestamp) -> Timestamp {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "Asia/Shanghai")!
        let start = calendar.startOfDay(for: t.date)
        return Timestamp(calendar.date(byAdding: .day, value: 1, to: start) ?? t.date.addingTimeInterval(86_400))
    }
}
