/// The typed operations of one database transaction: the store's contract, implemented once per
/// engine (`SQLiteTransaction`, `PostgresTransaction`) with that engine's SQL. Nothing above the
/// store sees SQL; the digest rules compose these operations.
///
/// A transaction runs synchronously on a thread the engine owns (GRDB's writer queue for SQLite,
/// a connection thread for PostgreSQL), so the rules are ordinary functions shared by both
/// engines. The methods here are primitives; rules that combine them (a checked state change
/// with its log line, a credit change applied once per event) live in the extension below, once.
public protocol StoreTransaction {
    /// Runs `body` in a savepoint: when it throws, its changes are undone and the error
    /// rethrown, and the transaction goes on.
    func inSavepoint<T>(_ body: () throws -> T) throws -> T

    // MARK: group commit

    /// Called once at the start of a group-commit batch with what its jobs will touch, before
    /// any job runs: an engine may read those facts for the whole batch at once and hold the
    /// batch's writes until `flushBatch`. PostgreSQL does (a round trip per batch, not per
    /// statement); SQLite does nothing (its statements cost no round trip).
    func prepareBatch(_ hints: [WriteHints]) throws
    /// Writes what `prepareBatch` held back. Throws `BatchWriteFailed` when that fails: the
    /// failure belongs to the batch, not to one job.
    func flushBatch() throws

    // MARK: users

    func user(_ id: String) throws -> User?
    func user(openid: String) throws -> User?
    /// Every user, ordered by IM id.
    func users() throws -> [User]
    /// Inserts the user's row or replaces every field of it.
    func saveUser(_ user: User) throws
    /// Clears a user's openid (frees it for another user).
    func clearOpenid(of user: String) throws

    // MARK: messages

    /// Inserts a C2C message (or a group copy, keyed by group message and recipient) unless it
    /// is stored already; returns the new row id, or nil for a duplicate.
    func insertMessage(_ m: NewMessage, senderNameCard: String?, groupMessageID: Int64?) throws -> Int64?
    /// Stores a message (unjoined, or in `digest`) unless its MsgKey is stored; false for a duplicate.
    func storeMessage(_ m: NewMessage, digest: Int64?) throws -> Bool
    func messageExists(msgKey: String) throws -> Bool
    func message(msgKey: String, recipient: String) throws -> PendingMessageRef?
    /// Pending messages of a recipient not joined to any digest, oldest first.
    func unjoinedMessages(recipient: String) throws -> [PendingMessageRef]
    /// Pending C2C messages from `sender` to `recipient` sent at or before `msgTime` (a read report).
    func pendingC2CMessages(recipient: String, sender: String, upToMsgTime msgTime: Int64) throws -> [PendingMessageRef]
    func join(messages ids: [Int64], to digest: Int64) throws
    /// Ends messages' pending life with a status; `eraseText` removes the summary at once.
    func setStatus(of ids: [Int64], to status: MessageStatus, at: Timestamp, eraseText: Bool) throws
    func eraseText(messageID: Int64) throws
    /// Marks every pending message of a digest with a final status.
    func setStatus(ofDigest digest: Int64, to status: MessageStatus, at: Timestamp) throws
    func readMark(recipient: String, peer: String) throws -> Int64?
    func setReadMark(recipient: String, peer: String, lastReadTime: Int64) throws
    func isTombstoned(msgKey: String, now: Timestamp) throws -> Bool
    func addTombstone(msgKey: String, to: String, expiresAt: Timestamp) throws
    /// Messages kept for a recipient, oldest first (no text).
    func messages(recipient: String) throws -> [StoredMessage]
    func messageCount(msgKey: String) throws -> Int
    func messageCount(digest: Int64) throws -> Int
    func unjoinedMessageCount(recipient: String) throws -> Int
    /// Whether Roundup has ever seen this IM user (a binding, a message to them or a digest).
    func isKnown(user id: String) throws -> Bool
    /// Moves a digest's pending messages into another digest; returns how many moved.
    func movePendingMessages(from source: Int64, to target: Int64) throws -> Int
    /// Unjoined pending messages received before `cutoff` become `dropped`; returns how many.
    func dropUnjoined(receivedBefore cutoff: Timestamp, now: Timestamp) throws -> Int
    /// A digest's pending messages received before `cutoff` become `expired`; returns how many.
    func expireMessages(ofDigest id: Int64, receivedBefore cutoff: Timestamp, now: Timestamp) throws -> Int
    /// Erases message text and rendered bodies finished before `cutoff`, and forgets expired
    /// tombstones. Returns how many digests lost their body.
    func purgeText(finishedBefore cutoff: Timestamp, now: Timestamp) throws -> Int

    // MARK: digests

    /// The user's open or held digest with its pending message count.
    func activeDigest(for user: String) throws -> ActiveDigest?
    /// The newest `sending_at` of the user's `sending`, `sent`, `dry_run` or `in_doubt` digests
    /// other than `excluding`.
    func lastSendStart(user: String, excluding digest: Int64?) throws -> Timestamp?
    func digestState(_ id: Int64) throws -> DigestState?
    func pendingCount(digest: Int64) throws -> Int
    /// Inserts an open digest; throws `StoreError.activeDigestExists` when the user has an open
    /// or held one (the schema's unique index decides, whatever writers race).
    func insertDigest(for user: String, windowStart: Timestamp, dueAt: Timestamp, now: Timestamp) throws -> Int64
    /// Records a new last message, the urgency flag and (for open digests) a new due time.
    func updateDigestTiming(_ id: Int64, lastMessageAt: Timestamp?, dueAt: Timestamp?, urgent: Bool, now: Timestamp) throws
    /// Compare-and-set of the state column alone (no check, no log: see `moveDigest`). Throws
    /// `illegalTransition` when the schema refuses the change.
    func setDigestState(_ id: Int64, from: DigestState, to: DigestState, reason: DigestReason?, now: Timestamp) throws -> Bool
    func appendEvent(digest: Int64, at: Timestamp, kind: DigestEventKind, detail: String) throws
    /// Appends many log lines at once, in order (one statement on PostgreSQL).
    func appendEvents(_ events: [NewDigestEvent]) throws
    /// The second half of `markSending`, after `holdsSendRight` locked the digest: when its
    /// pending messages are exactly `rendered`, moves it `open` → `sending`, records the template,
    /// body, start time and one more attempt, and logs `line`. Otherwise changes nothing and
    /// returns false.
    func startSending(_ id: Int64, rendered: [Int64], template: String, body: String, now: Timestamp, line: String) throws -> Bool
    /// A send WeChat accepted: `sending` → `sent` with errcode 0 and the msgid, logged with `line`;
    /// its pending messages delivered; one credit of `spend` used (a one-time template). Returns
    /// false, changing nothing, when the digest was no longer `sending`.
    func recordSent(_ id: Int64, msgid: String?, spend: CreditKey?, now: Timestamp, line: String) throws -> Bool
    /// Records the template and body of a send about to start, its start time, and one attempt.
    func recordSendStart(_ id: Int64, template: String, body: String, now: Timestamp) throws
    /// Counts a try that stopped before WeChat was called.
    func countAttempt(_ id: Int64) throws
    func setResult(_ id: Int64, errcode: String?, errmsg: String?, msgid: String?) throws
    /// Sets an open digest's due time and clears any flush request.
    func setDue(_ id: Int64, _ due: Timestamp, now: Timestamp) throws
    /// Makes an open digest due at `at` with a flush request (1, or 2 with `force`); false when
    /// it is not open.
    func setFlushRequest(_ id: Int64, at: Timestamp, force: Bool, now: Timestamp) throws -> Bool
    func resetAttempts(_ id: Int64, now: Timestamp) throws
    func templateID(ofDigest id: Int64) throws -> String?
    func attempts(_ id: Int64) throws -> Int
    func digestIDs(in state: DigestState) throws -> [Int64]
    /// The digest sent with this WeChat msgid, if any.
    func digestID(msgid: String) throws -> Int64?
    func digest(_ id: Int64) throws -> DigestRow?
    /// Every digest of a user, newest first.
    func digests(for user: String) throws -> [DigestRow]
    /// The decision log of a digest, oldest first.
    func digestLog(_ id: Int64) throws -> [DigestLogLine]
    /// Digests as the send path sees them, most overdue first.
    func dueDigests(_ filter: DueFilter, limit: Int) throws -> [DueDigest]
    /// The earliest due time of an open digest (after `after`, when given).
    func nextDueAt(after: Timestamp?) throws -> Timestamp?
    /// The pending messages of a digest with their senders' bound names.
    func digestMessages(_ id: Int64) throws -> [DigestMessageRow]
    /// `digestMessages` of many digests at once (one statement on PostgreSQL); a digest with no
    /// pending message has no entry.
    func digestMessages(ofDigests ids: [Int64]) throws -> [Int64: [DigestMessageRow]]
    /// Digest summaries, oldest due first (for `.ids`, in no particular order).
    func digestSummaries(_ filter: DigestFilter, limit: Int?) throws -> [DigestSummary]
    /// Ids of digests in the given states, newest first (by finish, else last change).
    func recentDigestIDs(states: [DigestState], user: String?, limit: Int) throws -> [Int64]
    func digestTimingFacts(_ id: Int64) throws -> DigestTimingFacts?
    /// Every open digest (or one user's) with its timing facts.
    func openDigestTimings(user: String?) throws -> [OpenDigestTiming]
    /// In-doubt digests of the user bound to `openid` with this template, attempted in a range.
    func inDoubtDigests(openid: String, templateID: String, sendingBetween from: Timestamp, and to: Timestamp) throws -> [Int64]
    /// Active digests holding a pending message received before `cutoff`, with the oldest receipt.
    func activeDigests(withPendingBefore cutoff: Timestamp) throws -> [(id: Int64, user: String, state: DigestState, oldest: Timestamp)]

    // MARK: claims (several instances)

    /// Claims up to `limit` open digests due by `now` for this process and returns them, most
    /// overdue first, leaving out `excluding` (the digests already in this process's pipeline:
    /// claiming them again would only lock rows their sends are about to lock). On PostgreSQL a
    /// digest claimed by another live instance is skipped, and an instance whose own heartbeat is
    /// not live claims nothing; on SQLite one `serve` owns the file, so this is the plain read.
    func claimDueDigests(now: Timestamp, limit: Int, excluding: Set<Int64>) throws -> [DueDigest]
    /// Fencing: whether this process may start sending the digest now. On PostgreSQL the digest
    /// must still be open, claimed by this instance, and its heartbeat younger than half the
    /// instance timeout (by the database's clock); the row stays locked until the transaction
    /// ends. Always true on SQLite.
    func holdsSendRight(_ id: Int64) throws -> Bool
    /// Gives up this process's claims on digests it has not started sending (a graceful stop):
    /// another instance sends them. SQLite: nothing to give up.
    func releaseClaims() throws
    /// Digests in `sending` whose sender is gone: on SQLite all of them (called when `serve`
    /// starts); on PostgreSQL those of instances that are not live.
    func orphanedSends() throws -> [Int64]

    /// Wakes every instance's scheduler when this transaction commits (a flush, a binding, a
    /// credit). PostgreSQL: a notification to the other instances; SQLite: nothing (one `serve`,
    /// which also polls every second).
    func notifyInstances() throws
    /// Whether this transaction may do the one-at-a-time job (housekeeping); held until it ends.
    /// PostgreSQL: a transaction-scoped advisory lock, not waited for; SQLite: always.
    func tryExclusive(_ job: ExclusiveJob) throws -> Bool
    /// Locks a group message whose fan-out is pending, for this transaction; false when another
    /// writer finished it first (then it is not fanned out again).
    func lockPendingFanout(_ id: Int64) throws -> Bool
    /// Takes the access-token refresh lease for `seconds` unless another instance holds a live
    /// one (by the database's clock): one instance fetches a token, the others read it. SQLite: always.
    func takeTokenRefreshLease(seconds: Double) throws -> Bool
    /// Ends this instance's refresh lease.
    func releaseTokenRefreshLease() throws

    // MARK: group messages

    /// Stores a group message once per GroupId+MsgSeq; returns its row id, or nil for a duplicate.
    func insertGroupMessage(_ g: NewGroupMessage) throws -> Int64?
    func finishFanout(_ id: Int64, state: String, at: Timestamp) throws
    /// Group messages whose fan-out has not finished, oldest first.
    func pendingGroupMessages(limit: Int) throws -> [PendingGroupMessage]
    func groupMessage(groupID: String, msgSeq: Int64) throws -> (id: Int64, fanoutState: String)?

    // MARK: sending pauses

    func sendPauses() throws -> SendPauses
    func setSendPause(_ key: SendPauseKey, until: Timestamp?, reason: String, now: Timestamp) throws
    /// Ends one pause; returns whether one existed.
    func clearSendPause(_ key: SendPauseKey) throws -> Bool
    /// Ends pauses whose time is up.
    func clearExpiredSendPauses(now: Timestamp) throws
    /// Ends every template pause.
    func clearTemplatePauses() throws

    // MARK: credits and WeChat events

    /// Credits, for one openid or everyone, ordered by openid then template.
    func credits(openid: String?) throws -> [Credit]
    /// The credits of many openids at once, by openid then template id.
    func credits(openids: [String]) throws -> [String: [String: Credit]]
    func credit(openid: String, templateID: String) throws -> Credit?
    /// Inserts or replaces a credit row.
    func saveCredit(_ credit: Credit) throws
    /// Records an event key; false when it was recorded before.
    func markApplied(eventKey: String, now: Timestamp) throws -> Bool
    func wasApplied(eventKey: String) throws -> Bool
    /// Stores a sent-event item once (by MsgID and template); false for a repeat.
    func insertSentEvent(_ e: SentEventRecord, now: Timestamp) throws -> Bool
    /// The newest sent event for an openid and template in a `CreateTime` range.
    func sentEvent(openid: String, templateID: String, createdBetween from: Int64, and to: Int64) throws -> (msgid: String, errorCode: Int64)?

    // MARK: the whole service

    func operatorStats() throws -> OperatorStats
    func statusSnapshot(now: Timestamp) throws -> StatusSnapshot
    func cachedAccessToken() throws -> (token: String, expiresAt: Timestamp)?
    func saveAccessToken(_ token: String, expiresAt: Timestamp, now: Timestamp) throws
    /// Removes everything held about a user; false when the user was unknown.
    func eraseUser(_ id: String) throws -> Bool
}

/// What one group-commit job will read and write: the users whose rows, locks and open digests
/// it needs, the MsgKeys it will insert or check, and the digests it will try to mark `sending`
/// (whose send right, `holdsSendRight`, the engine may take for the whole batch at once).
public struct WriteHints: Sendable, Equatable {
    public var users: [String]
    public var msgKeys: [String]
    public var sends: [Int64]

    public init(users: [String], msgKeys: [String] = [], sends: [Int64] = []) {
        self.users = users
        self.msgKeys = msgKeys
        self.sends = sends
    }
}

/// Writes an engine held back for a whole batch failed when they were sent (another instance
/// stored the same MsgKey meanwhile, say): no single job is to blame, so the batch runs again
/// with a savepoint per job and nothing held back.
public struct BatchWriteFailed: Error, CustomStringConvertible {
    public let underlying: any Error
    public var description: String { "\(underlying)" }
}

/// One line for a digest's decision log.
public struct NewDigestEvent: Sendable, Equatable {
    public var digest: Int64
    public var at: Timestamp
    public var kind: DigestEventKind
    public var detail: String

    public init(digest: Int64, at: Timestamp, kind: DigestEventKind, detail: String) {
        self.digest = digest
        self.at = at
        self.kind = kind
        self.detail = detail
    }
}

/// Which credit row: an openid and a template.
public struct CreditKey: Sendable, Equatable {
    public var openid: String
    public var templateID: String

    public init(openid: String, templateID: String) {
        self.openid = openid
        self.templateID = templateID
    }
}

/// Work that one instance at a time does.
public enum ExclusiveJob: Int64, Sendable {
    case housekeeping = 1
}

/// One line of a digest's decision log.
public typealias DigestLogLine = (at: Timestamp, kind: String, detail: String)

/// Which digests the send path reads.
public enum DueFilter: Sendable, Equatable {
    /// Open digests due at or before the time.
    case dueBy(Timestamp)
    case held
    case id(Int64)
}

/// Which digests a summary read covers.
public enum DigestFilter: Sendable, Equatable {
    case id(Int64)
    case ids([Int64])
    /// The user's open or held digest.
    case active(user: String)
    case states([DigestState], user: String?)
}

// MARK: rules over the primitives, once for every engine

extension StoreTransaction {
    public func prepareBatch(_ hints: [WriteHints]) throws {}
    public func flushBatch() throws {}

    public func insertMessage(_ m: NewMessage) throws -> Int64? {
        try insertMessage(m, senderNameCard: nil, groupMessageID: nil)
    }

    public func setStatus(of ids: [Int64], to status: MessageStatus, at: Timestamp) throws {
        try setStatus(of: ids, to: status, at: at, eraseText: false)
    }

    public func lastSendStart(user: String) throws -> Timestamp? {
        try lastSendStart(user: user, excluding: nil)
    }

    public func claimDueDigests(now: Timestamp, limit: Int) throws -> [DueDigest] {
        try claimDueDigests(now: now, limit: limit, excluding: [])
    }

    /// Creates an open digest and logs why (the schema refuses a second active one for the user).
    public func openDigest(for user: String, windowStart: Timestamp, dueAt: Timestamp, now: Timestamp, note: String) throws -> Int64 {
        let id = try insertDigest(for: user, windowStart: windowStart, dueAt: dueAt, now: now)
        try appendEvent(digest: id, at: now, kind: .opened, detail: note)
        return id
    }

    /// Compare-and-set of a digest's state, checked against the state machine and logged.
    /// Returns false when another writer moved it first.
    @discardableResult
    public func moveDigest(
        _ id: Int64, from: DigestState, to: DigestState, reason: DigestReason? = nil, now: Timestamp, note: String = ""
    ) throws -> Bool {
        guard from.canMove(to: to) else { throw StoreError.illegalTransition(from: from, to: to) }
        guard reason.map({ to.allowedReasons.contains($0) }) ?? to.allowedReasons.isEmpty else {
            throw StoreError.invalidReason(state: to, reason: reason)
        }
        guard try setDigestState(id, from: from, to: to, reason: reason, now: now) else { return false }
        try appendEvent(digest: id, at: now, kind: .state, detail: Self.stateLine(to, reason: reason, note: note))
        return true
    }

    /// The log line of a state change: `sent: errcode 0, …`, `held (no_credit): …`.
    public static func stateLine(_ to: DigestState, reason: DigestReason? = nil, note: String) -> String {
        let what = reason.map { "\(to.rawValue) (\($0.rawValue))" } ?? to.rawValue
        return note.isEmpty ? what : "\(what): \(note)"
    }

    public func digestMessages(ofDigests ids: [Int64]) throws -> [Int64: [DigestMessageRow]] {
        var all: [Int64: [DigestMessageRow]] = [:]
        for id in ids {
            let rows = try digestMessages(id)
            if !rows.isEmpty { all[id] = rows }
        }
        return all
    }

    public func appendEvents(_ events: [NewDigestEvent]) throws {
        for e in events { try appendEvent(digest: e.digest, at: e.at, kind: e.kind, detail: e.detail) }
    }

    /// `open` → `sending` with the template and body about to be sent (recorded before the call).
    /// `rendered` are the messages the body was rendered from: when the digest's pending messages
    /// are no longer exactly those (one joined, or was read or recalled, since they were read),
    /// nothing changes and false is returned, so the next pass renders it again. Otherwise a
    /// message that joined meanwhile would be marked delivered without having been in any body.
    public func markSending(_ id: Int64, rendered: [Int64], template: String, body: String, now: Timestamp) throws -> Bool {
        guard try holdsSendRight(id) else { return false }
        return try startSending(id, rendered: rendered, template: template, body: body, now: now,
                                line: Self.stateLine(.sending, note: "template \(template)"))
    }

    public func startSending(_ id: Int64, rendered: [Int64], template: String, body: String, now: Timestamp, line: String) throws -> Bool {
        try startSendingStepByStep(id, rendered: rendered, template: template, body: body, now: now, line: line)
    }

    /// `startSending` from the primitives: what it means. PostgreSQL does the same in one statement.
    public func startSendingStepByStep(_ id: Int64, rendered: [Int64], template: String, body: String, now: Timestamp, line: String) throws -> Bool {
        guard Set(try digestMessages(id).map(\.id)) == Set(rendered),
              try setDigestState(id, from: .open, to: .sending, reason: nil, now: now) else { return false }
        try appendEvent(digest: id, at: now, kind: .state, detail: line)
        try recordSendStart(id, template: template, body: body, now: now)
        return true
    }

    /// Records a send WeChat accepted (`recordSent`), with its log line.
    public func markSent(_ id: Int64, msgid: String?, spend: CreditKey?, messages: Int, now: Timestamp) throws -> Bool {
        try recordSent(id, msgid: msgid, spend: spend, now: now,
                       line: Self.stateLine(.sent, note: "errcode 0, msgid \(msgid ?? "-"), \(messages) message(s)"))
    }

    public func recordSent(_ id: Int64, msgid: String?, spend: CreditKey?, now: Timestamp, line: String) throws -> Bool {
        try recordSentStepByStep(id, msgid: msgid, spend: spend, now: now, line: line)
    }

    /// `recordSent` from the primitives: what it means. PostgreSQL does the same in one statement.
    public func recordSentStepByStep(_ id: Int64, msgid: String?, spend: CreditKey?, now: Timestamp, line: String) throws -> Bool {
        guard try setDigestState(id, from: .sending, to: .sent, reason: nil, now: now) else { return false }
        try appendEvent(digest: id, at: now, kind: .state, detail: line)
        try setResult(id, errcode: "0", errmsg: nil, msgid: msgid)
        try finishMessages(ofDigest: id, status: .delivered, now: now)
        if let spend {
            _ = try applyCredit(openid: spend.openid, templateID: spend.templateID, change: .spend, eventKey: nil, now: now)
        }
        return true
    }

    /// Marks the pending messages of a digest with a final status.
    public func finishMessages(ofDigest id: Int64, status: MessageStatus, now: Timestamp) throws {
        try setStatus(ofDigest: id, to: status, at: now)
    }

    /// Digests left in `sending` by a stopped process become `in_doubt`; returns their ids.
    public func recoverInterruptedSends(now: Timestamp) throws -> [Int64] {
        let ids = try orphanedSends()
        for id in ids {
            try moveDigest(id, from: .sending, to: .inDoubt, now: now,
                           note: "Roundup stopped during the WeChat call; WeChat may have delivered it, so it is not resent")
        }
        return ids
    }

    /// Makes an open digest due at `at` and records the flush (1, or 2 with `force`, which also
    /// skips quiet hours); logged. Returns false when it is not open.
    public func requestFlush(_ id: Int64, at: Timestamp, force: Bool, now: Timestamp, note: String) throws -> Bool {
        guard try setFlushRequest(id, at: at, force: force, now: now) else { return false }
        try appendEvent(digest: id, at: now, kind: .flush, detail: note)
        try notifyInstances()
        return true
    }

    /// Stores a sent-event item once and notes it in the log of the digest sent with that MsgID.
    /// Returns that digest's id, if one matches.
    @discardableResult
    public func recordSentEvent(_ e: SentEventRecord, now: Timestamp) throws -> Int64? {
        guard try insertSentEvent(e, now: now), let digest = try digestID(msgid: e.msgID) else { return nil }
        try appendEvent(digest: digest, at: now, kind: .delivery,
                        detail: "WeChat reported ErrorCode \(e.errorCode)\(e.errorStatus.map { " (\($0))" } ?? "") for MsgID \(e.msgID)")
        return digest
    }

    /// Applies a credit change, once per `eventKey` when one is given (a re-sent push or a
    /// repeated idempotency key changes nothing). Returns whether it applied and the row after.
    public func applyCredit(
        openid: String, templateID: String, change: CreditChange, eventKey: String?, now: Timestamp
    ) throws -> (applied: Bool, credit: Credit) {
        var credit = try self.credit(openid: openid, templateID: templateID)
            ?? Credit(openid: openid, templateID: templateID, count: 0, subscribed: false, updatedAt: now)
        if let eventKey, try !markApplied(eventKey: eventKey, now: now) {
            return (false, credit)
        }
        switch change {
        case .add(let n): credit.count += n
        case .subscribe: credit.subscribed = true
        case .revoke:
            credit.count = 0
            credit.subscribed = false
        case .spend: credit.count = max(0, credit.count - 1)
        }
        credit.updatedAt = now
        try saveCredit(credit)
        // Only a grant can lift a `no_credit` hold, so only a grant wakes the other instances
        // (a spend, one per send, would wake them all for nothing).
        switch change {
        case .add, .subscribe: try notifyInstances()
        case .revoke, .spend: break
        }
        return (true, credit)
    }

    /// Creates the user if needed and merges the update into their binding. Throws
    /// `openidBoundElsewhere` when the openid belongs to another user.
    public func updateUser(_ imUserID: String, _ update: UserUpdate, now: Timestamp) throws -> User {
        var user = try self.user(imUserID) ?? User(imUserID: imUserID, createdAt: now, updatedAt: now)
        let newOpenid = update.openid.applied(to: user.openid)
        if let newOpenid, newOpenid != user.openid, let holder = try self.user(openid: newOpenid), holder.imUserID != imUserID {
            throw StoreError.openidBoundElsewhere(openid: newOpenid, boundTo: holder.imUserID)
        }
        user.openid = newOpenid
        user.name = update.name.applied(to: user.name)
        user.profile = update.profile.applied(to: user.profile)
        user.updatedAt = now
        try saveUser(user)
        try notifyInstances()
        return user
    }

    /// Applies a whole roster: each entry's binding is replaced (created or updated); openids
    /// may move between users listed in the same roster.
    public func importRoster(_ entries: [RosterEntry], now: Timestamp) throws -> RosterImportResult {
        var result = RosterImportResult(created: 0, updated: 0, unchanged: 0)
        var existing: [String: User] = [:]
        for e in entries { existing[e.imUserID] = try user(e.imUserID) }
        // Release openids that move, so that a swap inside one roster does not collide.
        for e in entries {
            if let old = existing[e.imUserID], old.openid != nil, old.openid != e.openid {
                try clearOpenid(of: e.imUserID)
            }
        }
        for e in entries {
            if let openid = e.openid, let holder = try user(openid: openid), holder.imUserID != e.imUserID {
                throw StoreError.openidBoundElsewhere(openid: openid, boundTo: holder.imUserID)
            }
            if var user = existing[e.imUserID] {
                if user.openid == e.openid && user.name == e.name && user.profile == e.profile {
                    result.unchanged += 1
                    continue
                }
                user.openid = e.openid
                user.name = e.name
                user.profile = e.profile
                user.updatedAt = now
                try saveUser(user)
                result.updated += 1
            } else {
                try saveUser(User(imUserID: e.imUserID, openid: e.openid, name: e.name, profile: e.profile, createdAt: now, updatedAt: now))
                result.created += 1
            }
        }
        try notifyInstances()
        return result
    }
}
