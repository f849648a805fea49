import Foundation
import Logging

/// What became of one callback, for the metric and the HTTP answer.
public enum IngestOutcome: Sendable, Equatable {
    case stored
    case applied
    case skipped(String)
    case shed
    case failed(String)

    /// The metric outcome label.
    public var metric: RoundupMetrics.CallbackOutcome {
        switch self {
        case .stored: return .stored
        case .applied: return .applied
        case .skipped: return .skipped
        case .shed: return .shed
        case .failed: return .failed
        }
    }
}

/// Turns IM callbacks into durable state: presence, pending messages joined to
/// digests or kept unjoined, read reports, recalls, and cancellations when a user comes online.
/// Every database change of a callback is committed (group commit) before it returns, within
/// 1.5 s or counted as shed. Message text never reaches a log line.
public final class Ingestor: Sendable {
    let committer: GroupCommitter
    let presence: PresenceMap
    let config: LiveConfig
    let clock: any WallClock
    let metrics: RoundupMetrics
    let logger: Logger
    let commitTimeout: Duration
    /// Called after a group message row is committed, to wake the fan-out.
    let onGroupMessage: @Sendable () -> Void

    /// How long a recall of an unseen message keeps its late ingest out.
    static let tombstoneLifetime: Int64 = 10 * 60 * 1000

    public init(
        committer: GroupCommitter, presence: PresenceMap, config: LiveConfig, clock: any WallClock, metrics: RoundupMetrics,
        logger: Logger, commitTimeout: Duration = .milliseconds(1500), onGroupMessage: @escaping @Sendable () -> Void = {}
    ) {
        self.committer = committer
        self.presence = presence
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.logger = logger
        self.commitTimeout = commitTimeout
        self.onGroupMessage = onGroupMessage
    }

    /// Handles a decoded callback. `optPlatform` is the query parameter of the same name.
    public func handle(_ callback: IMCallback, optPlatform: String?) async -> IngestOutcome {
        let cfg = config.snapshot
        switch callback {
        case .stateChange(let e):
            switch e.action {
            case .login: return await presenceEvent(user: e.userID, online: true, eventTime: e.eventTime)
            case .logout, .disconnect: return await presenceEvent(user: e.userID, online: false, eventTime: e.eventTime)
            case .other(let action): return .skipped("state action \(action)")
            }
        case .c2cAfterSend(let m):
            guard cfg.im.ingestFrom == .afterSend else { return .skipped("ingest_from is before_send") }
            return await c2cMessage(m, optPlatform: optPlatform)
        case .c2cBeforeSend(let m):
            guard cfg.im.ingestFrom == .beforeSend else { return .skipped("ingest_from is after_send") }
            return await c2cMessage(m, optPlatform: optPlatform)
        case .msgReport(let r):
            return await readReport(r)
        case .withdraw(let w):
            return await withdrawal(w)
        case .groupAfterSend(let g):
            return await groupMessage(g, optPlatform: optPlatform)
        case .unknown:
            return .skipped("unknown command")
        }
    }

    // MARK: - C2C messages

    func c2cMessage(_ m: IMC2CMessage, optPlatform: String?) async -> IngestOutcome {
        let senderActive = !Self.isRESTAPI(optPlatform)
        if let result = m.sendMsgResult, result != 0 {
            return await afterSenderActivity(m.from, m.msgTime, senderActive, outcome: .skipped("send failed"))
        }
        if m.onlineOnly { return await afterSenderActivity(m.from, m.msgTime, senderActive, outcome: .skipped("online-only message")) }
        let cfg = config.snapshot
        let now = clock.timestamp
        let summary = m.summary
        let urgentFlag = m.isUrgent
        let presence = self.presence
        let senderLogin = senderActive ? presence.apply(user: m.from, online: true, eventTime: m.msgTime * 1000) : nil
        let senderCameOnline = senderLogin.map { $0.applied && $0.previous != .online } ?? false
        let hints = WriteHints(users: senderCameOnline ? [m.to, m.from] : [m.to], msgKeys: [m.msgKey])
        return await commit(hints) { tx in
            // A sender already online had any digest cancelled when they came online, and none
            // opens while they stay online: only a change to online needs the check.
            if senderCameOnline {
                try DigestLifecycle(config: cfg, now: now).cameOnline(tx, user: m.from)
            }
            if try tx.isTombstoned(msgKey: m.msgKey, now: now) { return .skipped("recalled before it arrived") }
            let recipient = try tx.user(m.to)
            let policy = cfg.digest.policy(forProfile: recipient?.profile)
            if policy.ignoreSenders.contains(m.from) { return .skipped("ignored sender") }
            let urgent = urgentFlag || policy.urgentSenders.contains(m.from)
            let message = NewMessage(
                msgKey: m.msgKey, recipient: m.to, sender: m.from, msgTime: m.msgTime, receivedAt: now, summary: summary, urgent: urgent)
            guard let id = try tx.insertMessage(message) else { return .skipped("duplicate MsgKey") }
            if presence.state(of: m.to) == .online { return .stored }
            try DigestLifecycle(config: cfg, now: now).join(tx, user: m.to, messages: [id], from: m.from, windowStart: now, urgent: urgent, policy: policy)
            return .stored
        }
    }

    /// Applies "a message from X counts as a Login for X" when nothing else is stored.
    private func afterSenderActivity(_ sender: String, _ msgTime: Int64, _ active: Bool, outcome: IngestOutcome) async -> IngestOutcome {
        guard active else { return outcome }
        let change = presence.apply(user: sender, online: true, eventTime: msgTime * 1000)
        guard change.applied, change.previous != .online else { return outcome }
        let cfg = config.snapshot
        let now = clock.timestamp
        let result = await commit(WriteHints(users: [sender])) { tx in
            try DigestLifecycle(config: cfg, now: now).cameOnline(tx, user: sender)
            return outcome
        }
        return result
    }

    // MARK: - presence

    func presenceEvent(user: String, online: Bool, eventTime: Int64) async -> IngestOutcome {
        let change = presence.apply(user: user, online: online, eventTime: eventTime)
        guard change.applied else { return .skipped("older than the last event for this user") }
        // The facts are read after the change is in the map, so any transaction that could
        // still make them untrue sees the change (and the writer is idle, so none is running).
        if DigestLifecycle.presenceChangesNothing(online: online, wasOffline: change.previous == .offline,
                                                  facts: committer.idleFacts(user: user)) {
            return .applied
        }
        let cfg = config.snapshot
        let now = clock.timestamp
        return await commit(WriteHints(users: [user])) { tx in
            let lifecycle = DigestLifecycle(config: cfg, now: now)
            if online {
                try lifecycle.cameOnline(tx, user: user)
            } else {
                try lifecycle.wentOffline(tx, user: user)
            }
            return .applied
        }
    }

    // MARK: - read and recall

    func readReport(_ r: IMReadReport) async -> IngestOutcome {
        let cfg = config.snapshot
        let now = clock.timestamp
        return await commit { tx in
            if let mark = try tx.readMark(recipient: r.reportAccount, peer: r.peerAccount), r.lastReadTime < mark {
                return .skipped("older than the last read report for this pair")
            }
            try tx.setReadMark(recipient: r.reportAccount, peer: r.peerAccount, lastReadTime: r.lastReadTime)
            let read = try tx.pendingC2CMessages(recipient: r.reportAccount, sender: r.peerAccount, upToMsgTime: r.lastReadTime)
            guard !read.isEmpty else { return .applied }
            try tx.setStatus(of: read.map(\.id), to: .read, at: now)
            try DigestLifecycle(config: cfg, now: now).removed(tx, digests: read.compactMap(\.digestID), reason: .read,
                                                               detail: "read in the app (messages from \(r.peerAccount))")
            return .applied
        }
    }

    func withdrawal(_ w: IMWithdrawal) async -> IngestOutcome {
        let cfg = config.snapshot
        let now = clock.timestamp
        return await commit { tx in
            guard let m = try tx.message(msgKey: w.msgKey, recipient: w.to) else {
                try tx.addTombstone(msgKey: w.msgKey, to: w.to, expiresAt: now + Self.tombstoneLifetime)
                return .applied
            }
            if m.status == .pending {
                try tx.setStatus(of: [m.id], to: .recalled, at: now, eraseText: true)
                if let digest = m.digestID {
                    try DigestLifecycle(config: cfg, now: now).removed(tx, digests: [digest], reason: .recalled, detail: "recalled by \(w.from)")
                }
            } else {
                // Too late to unsend; the text is still erased (the sender asked for it gone).
                try tx.eraseText(messageID: m.id)
                if let digest = m.digestID {
                    try tx.appendEvent(digest: digest, at: now, kind: .message, detail: "recalled by \(w.from) after it was \(m.status.rawValue)")
                }
            }
            return .applied
        }
    }

    // MARK: - groups

    func groupMessage(_ g: IMGroupMessage, optPlatform: String?) async -> IngestOutcome {
        let senderActive = !Self.isRESTAPI(optPlatform)
        if g.isAVChatRoom { return await afterSenderActivity(g.from, g.msgTime, senderActive, outcome: .skipped("AVChatRoom group")) }
        if g.onlineOnly { return await afterSenderActivity(g.from, g.msgTime, senderActive, outcome: .skipped("online-only message")) }
        let cfg = config.snapshot
        let now = clock.timestamp
        let senderLogin = senderActive ? presence.apply(user: g.from, online: true, eventTime: g.msgTime * 1000) : nil
        let row = NewGroupMessage(
            groupID: g.groupID, msgSeq: g.msgSeq, groupType: g.groupType, sender: g.from, msgTime: g.msgTime, receivedAt: now,
            summary: g.summary, atAll: g.atAll, mentions: g.mentioned, urgent: g.isUrgent)
        let outcome = await commit { tx in
            if let senderLogin, senderLogin.applied, senderLogin.previous != .online {
                try DigestLifecycle(config: cfg, now: now).cameOnline(tx, user: g.from)
            }
            return try tx.insertGroupMessage(row) == nil ? .skipped("duplicate GroupId+MsgSeq") : .stored
        }
        if outcome == .stored { onGroupMessage() }
        return outcome
    }

    // MARK: - plumbing

    /// Runs a transaction through the group committer, mapping failures to outcomes.
    /// `hints`: the users and MsgKeys the work touches, which the engine may read for the whole batch.
    private func commit(
        _ hints: WriteHints? = nil, _ work: @escaping @Sendable (StoreTransaction) throws -> IngestOutcome
    ) async -> IngestOutcome {
        do {
            let outcome = try await committer.perform(timeout: commitTimeout, hints: hints, work)
            if outcome == .stored { metrics.messagesIngested.increment() }
            return outcome
        } catch CommitError.timedOut, CommitError.overloaded {
            return .shed
        } catch CommitError.failed(let why) {
            // The batch's transaction failed (the database is unreachable, or refused the
            // commit): nothing of it was stored, as when the deadline passes.
            logger.warning("ingest transaction failed", metadata: ["error": "\(why)"])
            return .shed
        } catch where RoundupStore.isLockContention(error) {
            // Another instance held this user's lock past lock_timeout (a stalled process, until
            // the server ends its session): this callback only is answered as shed.
            logger.warning("ingest waited too long for a lock", metadata: ["error": "\(RoundupStore.explain(error))"])
            return .shed
        } catch {
            metrics.storeError(.ingest)
            logger.error("ingest failed", metadata: ["error": "\(error)"])
            return .failed("\(error)")
        }
    }

    /// `OptPlatform=RESTAPI`: sent by a backend, not by the user in the app.
    static func isRESTAPI(_ optPlatform: String?) -> Bool {
        optPlatform?.caseInsensitiveCompare("RESTAPI") == .orderedSame
    }
}
