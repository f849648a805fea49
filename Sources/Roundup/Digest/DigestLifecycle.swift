import Foundation

/// Every rule about what happens to a digest, in one place: a message joins, the user comes
/// online or goes offline, messages are read or recalled, the digest is re-timed, held, lifted,
/// settled after an in-doubt send, or outlives its retention. Ingest, group fan-out, WeChat
/// pushes, the scheduler, the admin API and the CLI all call these, inside their own
/// transaction, so a rule cannot drift between two copies.
///
/// A lifecycle is made for one decision: the config in force and the instant it happens.
public struct DigestLifecycle: Sendable {
    public let config: RoundupConfig
    public let now: Timestamp

    public init(config: RoundupConfig, now: Timestamp) {
        self.config = config
        self.now = now
    }

    /// The digest policy for a user (their profile's overrides, else the defaults).
    func policy(_ tx: StoreTransaction, user: String) throws -> DigestPolicy {
        config.digest.policy(forProfile: try tx.user(user)?.profile)
    }

    // MARK: - joining

    /// Adds messages to the user's open or held digest, opening one when there is none, and
    /// re-times an open digest (fixed or sliding window, early at `max_messages` or urgent,
    /// not before `min_interval` after the user's last send started, out of quiet hours).
    public func join(
        _ tx: StoreTransaction, user: String, messages ids: [Int64], from sender: String?, windowStart: Timestamp, urgent: Bool,
        policy: DigestPolicy, why: String? = nil
    ) throws {
        let tz = config.digest.timezone
        // Only min_interval looks at the last send; skip the query when it is off.
        let lastSend = policy.minInterval.milliseconds > 0 ? try tx.lastSendStart(user: user) : nil
        let what = why ?? "message from \(sender ?? "?") added"
        if let d = try tx.activeDigest(for: user) {
            try tx.join(messages: ids, to: d.id)
            let count = d.pendingCount + ids.count
            guard d.state == .open, d.flushRequested == 0 else {
                try tx.updateDigestTiming(d.id, lastMessageAt: now, dueAt: nil, urgent: urgent, now: now)
                let state = d.state == .open ? "while flushed (due now)" : "while held (\(d.reason?.rawValue ?? "?"))"
                try tx.appendEvent(digest: d.id, at: now, kind: .message, detail: "\(what) \(state); \(count) pending")
                return
            }
            let before = DuePolicy.Facts(windowStart: d.windowStartAt, lastMessageAt: d.lastMessageAt ?? d.windowStartAt,
                                         pendingCount: d.pendingCount, urgent: d.urgent)
            let wasEarly = DuePolicy.isEarly(before, policy: policy)
            var facts = DuePolicy.Facts(windowStart: d.windowStartAt, lastMessageAt: now, pendingCount: count,
                                        urgent: d.urgent || urgent, lastSentAt: lastSend)
            facts.earlySince = wasEarly ? d.dueAt : (DuePolicy.isEarly(facts, policy: policy) ? now : nil)
            let due = DuePolicy.dueAt(facts, policy: policy, timeZone: tz)
            try tx.updateDigestTiming(d.id, lastMessageAt: now, dueAt: due, urgent: urgent, now: now)
            try tx.appendEvent(digest: d.id, at: now, kind: .message,
                               detail: "\(what); \(count) pending; due \(due.rfc3339)\(Self.dueReason(facts, policy: policy, wasEarly: wasEarly))")
            return
        }
        var facts = DuePolicy.Facts(windowStart: windowStart, lastMessageAt: now, pendingCount: ids.count, urgent: urgent, lastSentAt: lastSend)
        if DuePolicy.isEarly(facts, policy: policy) { facts.earlySince = now }
        let due = DuePolicy.dueAt(facts, policy: policy, timeZone: tz)
        let id = try tx.openDigest(
            for: user, windowStart: windowStart, dueAt: due, now: now,
            note: "\(policy.mode.rawValue) window of \(policy.window); due \(due.rfc3339)\(Self.dueReason(facts, policy: policy, wasEarly: false))")
        try tx.join(messages: ids, to: id)
        try tx.updateDigestTiming(id, lastMessageAt: now, dueAt: nil, urgent: urgent, now: now)
        try tx.appendEvent(digest: id, at: now, kind: .message, detail: "\(what); \(ids.count) pending")
    }

    private static func dueReason(_ f: DuePolicy.Facts, policy: DigestPolicy, wasEarly: Bool) -> String {
        if f.urgent { return " (urgent)" }
        if f.pendingCount >= policy.maxMessages && !wasEarly { return " (max_messages \(policy.maxMessages) reached)" }
        if let last = f.lastSentAt, last + policy.minInterval.milliseconds > f.windowStart + policy.window.milliseconds {
            return " (min_interval \(policy.minInterval) after the last send)"
        }
        return ""
    }

    // MARK: - presence

    /// Login: with `cancel_on_online`, the open or held digest is cancelled and its messages
    /// are marked seen, not sent. Returns whether a digest was cancelled.
    @discardableResult
    public func cameOnline(_ tx: StoreTransaction, user: String, note: String? = nil) throws -> Bool {
        guard let digest = try tx.activeDigest(for: user) else { return false }
        guard try policy(tx, user: user).cancelOnOnline else { return false }
        return try cancelOnline(tx, digest: digest.id, from: digest.state,
                                note: note ?? "the user came online; \(digest.pendingCount) message(s) seen in the app")
    }

    /// Whether a Login (`online`) or Logout/Disconnect would change nothing durable, decided
    /// without a transaction: a Logout of a user already offline (their messages joined a digest
    /// when they went offline or as they arrived), a Login with no open or held digest to cancel,
    /// a Logout with no message outside a digest to join or drop. Facts not known: it may.
    public static func presenceChangesNothing(online: Bool, wasOffline: Bool, facts: WriterFacts?) -> Bool {
        if !online && wasOffline { return true }
        guard let facts else { return false }
        return online ? facts.activeDigest == false : facts.unjoinedMessages == false
    }

    /// Cancels one digest because its user is online (a Login, or presence confirmed before sending).
    public func cancelOnline(_ tx: StoreTransaction, digest: Int64, from state: DigestState, note: String) throws -> Bool {
        guard try tx.moveDigest(digest, from: state, to: .cancelled, reason: .userOnline, now: now, note: note) else { return false }
        try tx.setStatus(ofDigest: digest, to: .seen, at: now)
        return true
    }

    /// Logout/Disconnect: unjoined messages from the last `offline_lookback` join a digest whose
    /// window starts now; older unjoined messages are dropped.
    public func wentOffline(_ tx: StoreTransaction, user: String) throws {
        let unjoined = try tx.unjoinedMessages(recipient: user)
        guard !unjoined.isEmpty else { return }
        let policy = try policy(tx, user: user)
        let cutoff = now - policy.offlineLookback.milliseconds
        let recent = unjoined.filter { $0.receivedAt >= cutoff }
        let old = unjoined.filter { $0.receivedAt < cutoff }
        if !old.isEmpty { try tx.setStatus(of: old.map(\.id), to: .dropped, at: now) }
        guard !recent.isEmpty else { return }
        try join(tx, user: user, messages: recent.map(\.id), from: nil, windowStart: now, urgent: false, policy: policy,
                 why: "the user went offline with \(recent.count) unread message(s) from the last \(policy.offlineLookback)")
    }

    // MARK: - removal

    /// Messages left their digests (read or recalled): logs each removal and cancels any open or
    /// held digest left empty, with `reason`.
    public func removed(_ tx: StoreTransaction, digests: [Int64], reason: DigestReason, detail: String) throws {
        for digest in Set(digests) {
            let count = digests.filter { $0 == digest }.count
            try tx.appendEvent(digest: digest, at: now, kind: .message, detail: "\(count) message(s) removed: \(detail)")
            guard let state = try tx.digestState(digest), DigestState.active.contains(state) else { continue }
            if try tx.pendingCount(digest: digest) == 0 {
                try tx.moveDigest(digest, from: state, to: .cancelled, reason: reason, now: now, note: "no messages left")
            }
        }
    }

    /// An operator cancels an open or held digest: nothing is sent, its messages are dropped (not
    /// `seen`, which means the user saw them in the app). False when it changed meanwhile.
    public func cancelByOperator(_ tx: StoreTransaction, digest: Int64, from state: DigestState, note: String) throws -> Bool {
        guard try tx.moveDigest(digest, from: state, to: .cancelled, reason: .operator, now: now, note: note) else { return false }
        try tx.setStatus(ofDigest: digest, to: .dropped, at: now)
        return true
    }

    // MARK: - timing

    /// Re-computes the due time of open digests (all, or one user's) under the policy in force,
    /// logging each change (a config reload re-times every open digest; a changed profile re-times
    /// the user's). Flushed digests keep their due time. Returns how many moved.
    public func retime(_ tx: StoreTransaction, user: String? = nil, reason: String) throws -> Int {
        var changed = 0
        for d in try tx.openDigestTimings(user: user) where d.flushRequested == 0 && d.pendingCount > 0 {
            let policy = config.digest.policy(forProfile: d.profile)
            let lastSend = policy.minInterval.milliseconds > 0 ? try tx.lastSendStart(user: d.imUserID, excluding: d.id) : nil
            var facts = DuePolicy.Facts(windowStart: d.windowStartAt, lastMessageAt: d.lastMessageAt ?? d.windowStartAt,
                                        pendingCount: d.pendingCount, urgent: d.urgent, lastSentAt: lastSend)
            if DuePolicy.isEarly(facts, policy: policy) { facts.earlySince = d.dueAt }
            let due = DuePolicy.dueAt(facts, policy: policy, timeZone: config.digest.timezone)
            guard due != d.dueAt else { continue }
            try tx.setDue(d.id, due, now: now)
            try tx.appendEvent(digest: d.id, at: now, kind: .retimed, detail: "\(reason): due \(due.rfc3339) (was \(d.dueAt.rfc3339))")
            changed += 1
        }
        return changed
    }

    /// Re-times the open digests of these users under `config` (their profile changed: a bind or
    /// an import), in one transaction.
    public static func retime(store: RoundupStore, config: RoundupConfig, now: Timestamp, users: [String], reason: String) throws {
        guard !users.isEmpty else { return }
        let lifecycle = DigestLifecycle(config: config, now: now)
        _ = try store.write { tx in try users.reduce(0) { $0 + (try lifecycle.retime(tx, user: $1, reason: reason)) } }
    }

    /// When a due digest picked for sending must wait instead: the end of the quiet hours it is in
    /// (unless flushed with `--force`), or `min_interval` after the start of the user's last send
    /// (unless flushed or urgent). Nil when it may go now.
    public func holdBack(_ tx: StoreTransaction, _ d: DueDigest) throws -> (until: Timestamp, why: String)? {
        let policy = config.digest.policy(forProfile: d.profile)
        let tz = config.digest.timezone
        if !d.flushForce, DuePolicy.isQuiet(now, policy.quietHours, tz) {
            let end = DuePolicy.afterQuietHours(now, policy.quietHours, tz)
            return (end, "quiet hours: due \(end.rfc3339)")
        }
        guard !d.flushed, !d.urgent, policy.minInterval.milliseconds > 0,
              let last = try tx.lastSendStart(user: d.imUserID, excluding: d.id) else { return nil }
        let earliest = last + policy.minInterval.milliseconds
        guard earliest > now else { return nil }
        let due = DuePolicy.afterQuietHours(earliest, policy.quietHours, tz)
        return (due, "min_interval \(policy.minInterval) after the send that started \(last.rfc3339): due \(due.rfc3339)")
    }

    /// Moves an open digest's due time (quiet hours, `min_interval`), logged.
    public func retimeDue(_ tx: StoreTransaction, digest: Int64, to due: Timestamp, why: String) throws {
        try tx.setDue(digest, due, now: now)
        try tx.appendEvent(digest: digest, at: now, kind: .retimed, detail: why)
    }

    // MARK: - holding

    /// What a due digest may be sent with: the first template in config order this openid holds
    /// a credit (one-time) or subscription (long-term) for and that is not paused, or why not.
    public enum TemplateChoice: Sendable, Equatable {
        case use(TemplateConfig)
        case hold(DigestReason, note: String)
    }

    /// Chooses the template for a due digest. With no openid the digest is held `unbound`; with no
    /// usable template it is held `no_credit`, or `config_error` when every template the openid
    /// holds a credit for is paused by a configuration error (the credit is there; the template is
    /// what blocks). `skipping` names templates already tried in this send (after a 43101).
    public func chooseTemplate(openid: String?, user: String, credits: [String: Credit], pauses: SendPauses,
                               skipping: Set<String> = []) -> TemplateChoice {
        guard openid != nil else { return .hold(.unbound, note: "no openid is bound to \(user)") }
        let candidates = config.templates.filter { !skipping.contains($0.id) }
        let withCredit = candidates.filter { t in
            guard let credit = credits[t.id] else { return false }
            return t.kind == .oneTime ? credit.count > 0 : credit.subscribed
        }
        if let usable = withCredit.first(where: { !pauses.isPaused(template: $0.id) }) { return .use(usable) }
        if !withCredit.isEmpty {
            let paused = withCredit.map(\.id).joined(separator: ", ")
            return .hold(.configError, note: "the only templates with a credit (\(paused)) are paused after a configuration error")
        }
        return .hold(.noCredit, note: config.templates.isEmpty ? "no template is configured" : "no subscription credit for any template")
    }

    /// Holds a digest with a reason (a compare-and-set; a digest already held for that reason is left alone).
    @discardableResult
    public func hold(_ tx: StoreTransaction, digest: Int64, from state: DigestState, current: DigestReason?, reason: DigestReason,
                     note: String) throws -> Bool {
        if state == .held && current == reason { return false }
        return try tx.moveDigest(digest, from: state, to: .held, reason: reason, now: now, note: note)
    }

    /// A held digest whose reason went away (a binding, a credit, a config change) is due now.
    @discardableResult
    public func liftHold(_ tx: StoreTransaction, digest: Int64, reason: DigestReason?) throws -> Bool {
        guard try tx.moveDigest(digest, from: .held, to: .open, now: now, note: "hold lifted (\(reason?.rawValue ?? "?")); due now") else {
            return false
        }
        try tx.setDue(digest, now, now: now)
        return true
    }

    // MARK: - settling

    /// WeChat's `subscribe_msg_sent_event` for an in-doubt attempt (same openid and template, within
    /// 10 minutes): the digest was delivered, so it becomes `sent` with that MsgID and its one-time
    /// credit is spent. Whichever comes first, the event or the in-doubt verdict, ends here.
    @discardableResult
    public func settleInDoubt(_ tx: StoreTransaction, digest: Int64, openid: String, templateID: String, msgid: String,
                              errorCode: Int64, errorStatus: String?) throws -> Bool {
        guard try tx.moveDigest(digest, from: .inDoubt, to: .sent, now: now, note: "settled by subscribe_msg_sent_event MsgID \(msgid)")
        else { return false }
        try tx.setResult(digest, errcode: String(errorCode), errmsg: errorStatus, msgid: msgid)
        try tx.finishMessages(ofDigest: digest, status: .delivered, now: now)
        // A template no longer in config was most likely one-time: spending is the safe side.
        if config.template(id: templateID)?.kind != .longTerm {
            _ = try tx.applyCredit(openid: openid, templateID: templateID, change: .spend, eventKey: nil, now: now)
        }
        return true
    }

    /// How far apart an in-doubt attempt and its sent event may be to settle it (10 minutes).
    public static let settleWindow: Int64 = 600_000

    // MARK: - retention

    /// Per-message retention: pending messages older than `digest.retention` (the user's) leave
    /// their digest as expired, and a digest left empty is `expired` (kept in history); unjoined
    /// messages older than the longest retention are dropped. Returns the digests that expired.
    public func expireOld(_ tx: StoreTransaction) throws -> Int {
        // The retentions of the default policy and every profile: the shortest bounds which
        // pending messages can be old enough, the longest which unjoined ones may be dropped.
        let retentions = ([config.digest.policy] + config.digest.profiles.keys.map { config.digest.policy(forProfile: $0) })
            .map(\.retention.milliseconds)
        let shortest = retentions.min() ?? config.digest.policy.retention.milliseconds
        let longest = retentions.max() ?? shortest
        _ = try tx.dropUnjoined(receivedBefore: now - longest, now: now)
        var emptied = 0
        for d in try tx.activeDigests(withPendingBefore: now - shortest) {
            let policy = try policy(tx, user: d.user)
            let cutoff = now - policy.retention.milliseconds
            guard d.oldest < cutoff else { continue }
            let expired = try tx.expireMessages(ofDigest: d.id, receivedBefore: cutoff, now: now)
            try tx.appendEvent(digest: d.id, at: now, kind: .message, detail: "\(expired) message(s) older than \(policy.retention) expired")
            if try tx.pendingCount(digest: d.id) == 0,
               try tx.moveDigest(d.id, from: d.state, to: .expired, now: now, note: "every message outlived digest.retention") {
                emptied += 1
            }
        }
        return emptied
    }
}
