/// The store's one-call operations: each runs one transaction of typed operations on whichever
/// engine the store has. Callers that need several operations to commit together use `write`.
extension RoundupStore {
    // MARK: users

    /// The user, or nil when Roundup has never seen them.
    public func user(_ imUserID: String) throws -> User? { try read { try $0.user(imUserID) } }
    /// The user bound to an openid, if any.
    public func user(openid: String) throws -> User? { try read { try $0.user(openid: openid) } }
    /// All users ordered by IM id.
    public func users() throws -> [User] { try read { try $0.users() } }

    /// Creates the user if needed and merges the update into their binding (`PUT /admin/users/{id}`).
    /// Throws `openidBoundElsewhere` when the openid belongs to another user.
    @discardableResult
    public func updateUser(_ imUserID: String, _ update: UserUpdate, now: Timestamp) throws -> User {
        try write { try $0.updateUser(imUserID, update, now: now) }
    }

    /// Clears a user's openid; their pending messages stay (`DELETE /admin/users/{id}`). Nil if unknown.
    @discardableResult
    public func unbindUser(_ imUserID: String, now: Timestamp) throws -> User? {
        try write { tx in
            guard try tx.user(imUserID) != nil else { return nil }
            return try tx.updateUser(imUserID, UserUpdate(openid: .clear), now: now)
        }
    }

    /// Applies a whole roster in one transaction.
    public func importRoster(_ entries: [RosterEntry], now: Timestamp) throws -> RosterImportResult {
        try write { try $0.importRoster(entries, now: now) }
    }

    /// Whether Roundup has ever seen this IM user (a binding, a message to them or a digest).
    public func isKnown(user id: String) throws -> Bool { try read { try $0.isKnown(user: id) } }

    /// Removes everything Roundup holds about a user (`DELETE …?erase=true`); false when unknown.
    public func eraseUser(_ id: String) throws -> Bool { try write { try $0.eraseUser(id) } }

    // MARK: credits

    /// Credits, for one openid or for everyone, ordered by openid then template.
    public func credits(openid: String? = nil) throws -> [Credit] { try read { try $0.credits(openid: openid) } }

    /// The credits of many openids at once, by openid then template id.
    public func credits(openids: [String]) throws -> [String: [String: Credit]] {
        guard !openids.isEmpty else { return [:] }
        return try read { try $0.credits(openids: openids) }
    }

    /// `credits(openids:)` without blocking a thread of the cooperative pool.
    public func creditsAsync(openids: [String]) async throws -> [String: [String: Credit]] {
        guard !openids.isEmpty else { return [:] }
        return try await read { try $0.credits(openids: openids) }
    }

    /// One openid's credits by template, and the pauses in force, read together.
    public func creditsAndPauses(openid: String) async throws -> (credits: [String: Credit], pauses: SendPauses) {
        try await read { tx in (try tx.credits(openids: [openid])[openid] ?? [:], try tx.sendPauses()) }
    }

    /// The credit row, if any.
    public func credit(openid: String, templateID: String) throws -> Credit? {
        try read { try $0.credit(openid: openid, templateID: templateID) }
    }

    /// Whether an event key was applied before (without applying it).
    public func wasApplied(eventKey: String) throws -> Bool { try read { try $0.wasApplied(eventKey: eventKey) } }

    /// See `StoreTransaction.applyCredit`.
    @discardableResult
    public func applyCredit(
        openid: String, templateID: String, change: CreditChange, eventKey: String?, now: Timestamp
    ) throws -> (applied: Bool, credit: Credit) {
        try write { try $0.applyCredit(openid: openid, templateID: templateID, change: change, eventKey: eventKey, now: now) }
    }

    /// `applyCredit` without blocking a thread of the cooperative pool.
    @discardableResult
    public func applyCreditAsync(
        openid: String, templateID: String, change: CreditChange, eventKey: String?, now: Timestamp
    ) async throws -> (applied: Bool, credit: Credit) {
        let result = try await write { tx -> CreditApplied in
            let (applied, credit) = try tx.applyCredit(openid: openid, templateID: templateID, change: change, eventKey: eventKey, now: now)
            return CreditApplied(applied: applied, credit: credit)
        }
        return (result.applied, result.credit)
    }

    // MARK: messages

    /// Stores a message unjoined (or in `digest`) unless its `MsgKey` was seen before; false for a duplicate.
    @discardableResult
    public func storeMessage(_ m: NewMessage, digest: Int64? = nil) throws -> Bool {
        try write { try $0.storeMessage(m, digest: digest) }
    }

    /// How many message rows are stored for a `MsgKey` (0 or 1).
    public func messageCount(msgKey: String) throws -> Int { try read { try $0.messageCount(msgKey: msgKey) } }
    /// Messages of a digest.
    public func messageCount(digest: Int64) throws -> Int { try read { try $0.messageCount(digest: digest) } }
    /// Messages kept for a recipient, oldest first.
    public func messages(recipient: String) throws -> [StoredMessage] { try read { try $0.messages(recipient: recipient) } }
    /// How many of a recipient's messages are kept unjoined (the user was online when they came).
    public func unjoinedMessageCount(recipient: String) throws -> Int { try read { try $0.unjoinedMessageCount(recipient: recipient) } }

    /// The stored row for a group message key and its fan-out state.
    public func groupMessage(groupID: String, msgSeq: Int64) throws -> (id: Int64, fanoutState: String)? {
        try read { try $0.groupMessage(groupID: groupID, msgSeq: msgSeq) }
    }

    /// Group messages whose fan-out has not finished, oldest first (survives restarts).
    public func pendingGroupMessages(limit: Int = 100) async throws -> [PendingGroupMessage] {
        try await read { try $0.pendingGroupMessages(limit: limit) }
    }

    // MARK: digests

    /// Opens a new digest for a user; throws `activeDigestExists` when the user has an open or held one.
    public func openDigest(for user: String, windowStart: Timestamp, dueAt: Timestamp, now: Timestamp) throws -> Int64 {
        try write { try $0.openDigest(for: user, windowStart: windowStart, dueAt: dueAt, now: now, note: "due \(dueAt.rfc3339)") }
    }

    /// Compare-and-set of a digest's state (see `StoreTransaction.moveDigest`).
    @discardableResult
    public func moveDigest(
        _ id: Int64, from: DigestState, to: DigestState, reason: DigestReason? = nil, now: Timestamp, note: String = ""
    ) throws -> Bool {
        try write { try $0.moveDigest(id, from: from, to: to, reason: reason, now: now, note: note) }
    }

    /// The digest with this id.
    public func digest(_ id: Int64) throws -> DigestRow? { try read { try $0.digest(id) } }
    /// Every digest of a user, newest first.
    public func digests(for user: String) throws -> [DigestRow] { try read { try $0.digests(for: user) } }
    /// The user's open or held digest.
    public func activeDigest(for user: String) throws -> ActiveDigest? { try read { try $0.activeDigest(for: user) } }
    /// The decision log of a digest, oldest first.
    public func digestLog(_ id: Int64) throws -> [DigestLogLine] { try read { try $0.digestLog(id) } }
    /// The timing facts of a digest, or nil.
    public func digestTimingFacts(_ id: Int64) throws -> DigestTimingFacts? { try read { try $0.digestTimingFacts(id) } }
    /// When the user's last send started (`min_interval` counts from there).
    public func lastSendStart(user: String, excluding digest: Int64? = nil) throws -> Timestamp? {
        try read { try $0.lastSendStart(user: user, excluding: digest) }
    }

    /// The summary of a digest by id.
    public func digestSummary(_ id: Int64) throws -> DigestSummary? { try read { try $0.digestSummaries(.id(id), limit: nil).first } }

    /// The user's open or held digest, summarised.
    public func activeDigestSummary(for user: String) throws -> DigestSummary? {
        try read { try $0.digestSummaries(.active(user: user), limit: nil).first }
    }

    /// Digests in any of the given states, oldest due first.
    public func digestSummaries(states: [DigestState], user: String? = nil, limit: Int? = nil) throws -> [DigestSummary] {
        try read { try $0.digestSummaries(.states(states, user: user), limit: limit) }
    }

    /// Digests in the given states (all users, or one), newest first: by when they finished, else
    /// when they last changed.
    public func recentDigestSummaries(states: [DigestState], user: String? = nil, limit: Int) throws -> [DigestSummary] {
        try read { tx in
            let ids = try tx.recentDigestIDs(states: states, user: user, limit: limit)
            let byID = Dictionary(try tx.digestSummaries(.ids(ids), limit: nil).map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            return ids.compactMap { byID[$0] }
        }
    }

    /// Makes the user's open digest due at `at` (normally now) with a flush request, in one
    /// transaction; a held digest is reported, not changed.
    public func flushDigest(user: String, at: Timestamp, force: Bool, now: Timestamp, note: String) throws -> FlushOutcome {
        try write { tx in try Self.flushDigest(tx, user: user, at: at, force: force, now: now, note: note) }
    }

    /// `flushDigest` for each user in turn, a few hundred users to a transaction (`roundup flush
    /// --all` on a large backlog takes one commit per chunk, not one per user).
    public func flushDigests(users: [String], at: Timestamp, force: Bool, now: Timestamp, note: String) throws -> [FlushOutcome] {
        var outcomes: [FlushOutcome] = []
        for start in stride(from: 0, to: users.count, by: 500) {
            let chunk = users[start..<min(start + 500, users.count)]
            outcomes += try write { tx in try chunk.map { try Self.flushDigest(tx, user: $0, at: at, force: force, now: now, note: note) } }
        }
        return outcomes
    }

    private static func flushDigest(_ tx: any StoreTransaction, user: String, at: Timestamp, force: Bool, now: Timestamp, note: String) throws
        -> FlushOutcome
    {
        if let d = try tx.activeDigest(for: user), d.state == .open,
           try tx.requestFlush(d.id, at: at, force: force, now: now, note: note),
           let summary = try tx.digestSummaries(.id(d.id), limit: nil).first {
            return .flushed(summary)
        }
        if let summary = try tx.digestSummaries(.active(user: user), limit: nil).first, summary.state == .held {
            return .held(summary)
        }
        return .noDigest
    }

    // MARK: the send path

    /// Open digests due at or before `now`, most overdue first.
    public func dueDigests(now: Timestamp, limit: Int = 1000) throws -> [DueDigest] {
        try read { try $0.dueDigests(.dueBy(now), limit: limit) }
    }

    /// `dueDigests` without blocking a thread of the cooperative pool.
    public func dueDigestsAsync(now: Timestamp, limit: Int = 1000) async throws -> [DueDigest] {
        try await read { try $0.dueDigests(.dueBy(now), limit: limit) }
    }

    /// Claims the due digests this process will send (see `StoreTransaction.claimDueDigests`).
    public func claimDueDigests(now: Timestamp, limit: Int, excluding: Set<Int64> = []) async throws -> [DueDigest] {
        try await write { try $0.claimDueDigests(now: now, limit: limit, excluding: excluding) }
    }

    /// Held digests (for re-checking bindings, credits and paused templates).
    public func heldDigests(limit: Int = 5000) throws -> [DueDigest] { try read { try $0.dueDigests(.held, limit: limit) } }

    /// `heldDigests` without blocking.
    public func heldDigestsAsync(limit: Int = 5000) async throws -> [DueDigest] {
        try await read { try $0.dueDigests(.held, limit: limit) }
    }

    /// A digest as the send path sees it.
    public func dueDigest(_ id: Int64) throws -> DueDigest? { try read { try $0.dueDigests(.id(id), limit: 1).first } }

    /// The earliest due time of any open digest.
    public func nextDueAt() throws -> Timestamp? { try read { try $0.nextDueAt(after: nil) } }

    /// The earliest due time of an open digest due after `now` (nil when none is).
    public func nextDueAt(after now: Timestamp) async throws -> Timestamp? { try await read { try $0.nextDueAt(after: now) } }

    /// The pending messages of a digest with their senders' bound names.
    public func digestMessages(_ id: Int64) throws -> [DigestMessageRow] { try read { try $0.digestMessages(id) } }

    /// `digestMessages` without blocking.
    public func digestMessagesAsync(_ id: Int64) async throws -> [DigestMessageRow] { try await read { try $0.digestMessages(id) } }

    /// `digestMessages` of many digests in one read, without blocking.
    public func digestMessagesAsync(ofDigests ids: [Int64]) async throws -> [Int64: [DigestMessageRow]] {
        try await read { try $0.digestMessages(ofDigests: ids) }
    }

    /// Digests left in `sending` by a crash become `in_doubt`; returns their ids.
    public func recoverInterruptedSends(now: Timestamp) throws -> [Int64] { try write { try $0.recoverInterruptedSends(now: now) } }

    /// `recoverInterruptedSends` without blocking.
    public func recoverInterruptedSendsAsync(now: Timestamp) async throws -> [Int64] {
        try await write { try $0.recoverInterruptedSends(now: now) }
    }

    // MARK: pauses

    /// Sending pauses in force, each with its end (nil: until the config changes).
    public func sendPauses() throws -> SendPauses { try read { try $0.sendPauses() } }
    /// `sendPauses` without blocking.
    public func sendPausesAsync() async throws -> SendPauses { try await read { try $0.sendPauses() } }
    /// Whether a sending pause with this key (`quota`, `template:ID`) is recorded.
    public func hasSendPause(_ key: SendPauseKey) throws -> Bool { try read { try $0.sendPauses().contains(key) } }
    /// `hasSendPause` without blocking.
    public func hasSendPauseAsync(_ key: SendPauseKey) async throws -> Bool { try await read { try $0.sendPauses().contains(key) } }

    /// Starts or extends a pause.
    public func setSendPause(_ key: SendPauseKey, until: Timestamp?, reason: String, now: Timestamp) throws {
        try write { try $0.setSendPause(key, until: until, reason: reason, now: now) }
    }

    /// Ends pauses whose time is up (the quota day passed).
    public func clearExpiredSendPauses(now: Timestamp) async throws { try await write { try $0.clearExpiredSendPauses(now: now) } }
    /// Ends every template pause (the templates in config changed).
    public func clearTemplatePauses() async throws { try await write { try $0.clearTemplatePauses() } }

    // MARK: housekeeping and the whole service

    /// Erases message text and rendered bodies of digests finished before `cutoff`, and forgets
    /// tombstones that have expired. Returns how many digests were purged.
    @discardableResult
    public func purgeText(finishedBefore cutoff: Timestamp, now: Timestamp) throws -> Int {
        try write { try $0.purgeText(finishedBefore: cutoff, now: now) }
    }

    /// `purgeText` without blocking.
    public func purgeTextAsync(finishedBefore cutoff: Timestamp, now: Timestamp) async throws -> Int {
        try await write { try $0.purgeText(finishedBefore: cutoff, now: now) }
    }

    /// On SQLite, truncates the write-ahead log so erased text leaves the WAL file (see
    /// `SQLiteEngine.truncateWAL`); other engines have nothing to do. Returns whether it is done.
    @discardableResult
    public func truncateWAL() async -> Bool { await sqlite?.truncateWAL() ?? true }

    /// One consistent read of the service's counts.
    public func statusSnapshot(now: Timestamp) throws -> StatusSnapshot { try read { try $0.statusSnapshot(now: now) } }
    /// `statusSnapshot` without blocking.
    public func statusSnapshotAsync(now: Timestamp) async throws -> StatusSnapshot { try await read { try $0.statusSnapshot(now: now) } }
    /// One consistent read of the counts `roundup stats` prints.
    public func operatorStats() throws -> OperatorStats { try read { try $0.operatorStats() } }

    /// The cached WeChat access token and its expiry, if any.
    public func cachedAccessToken() throws -> (token: String, expiresAt: Timestamp)? { try read { try $0.cachedAccessToken() } }

    /// `cachedAccessToken` without blocking.
    public func cachedAccessTokenAsync() async throws -> (token: String, expiresAt: Timestamp)? {
        try await read { tx in try tx.cachedAccessToken().map { CachedToken(token: $0.token, expiresAt: $0.expiresAt) } }
            .map { ($0.token, $0.expiresAt) }
    }

    /// Stores the access token (one row).
    public func saveAccessToken(_ token: String, expiresAt: Timestamp, now: Timestamp) throws {
        try write { try $0.saveAccessToken(token, expiresAt: expiresAt, now: now) }
    }

    /// `saveAccessToken` without blocking.
    public func saveAccessTokenAsync(_ token: String, expiresAt: Timestamp, now: Timestamp) async throws {
        try await write { try $0.saveAccessToken(token, expiresAt: expiresAt, now: now) }
    }
}

/// Sendable carriers for results that are tuples in the synchronous API.
private struct CreditApplied: Sendable {
    var applied: Bool
    var credit: Credit
}

private struct CachedToken: Sendable {
    var token: String
    var expiresAt: Timestamp
}
