import Logging
import NIOCore
import PostgresNIO

/// `StoreTransaction` on PostgreSQL: the statements of one transaction on one connection.
///
/// It runs on a thread the engine owns (never a thread of the cooperative pool or an event
/// loop) and waits for each statement's result there, so the digest rules stay the ordinary
/// synchronous functions SQLite runs.
public struct PostgresTransaction: StoreTransaction {
    let connection: PostgresConnection
    let logger: Logger
    /// This instance's identity and liveness rule, for claims and fencing.
    let instance: InstanceLease
    /// A read-only transaction takes no row locks.
    var readOnly = false
    /// Counts the statements sent.
    unowned let engine: PostgresEngine
    /// A group-commit batch's facts and held-back writes (inactive outside `prepareBatch`).
    let batch = PostgresBatch()
    /// Set when a prepared statement failed: the connection is closed, not reused, at the end of
    /// the transaction.
    let spoiled = SpoiledFlag()

    // MARK: running statements

    static let statementTimeout: TimeAmount = .seconds(60)

    /// Runs one statement and returns its rows and the number of rows it changed.
    @discardableResult
    func run(_ sql: String, _ args: any PGArgument...) throws -> PGResult {
        try run(sql, arguments: args)
    }

    /// Runs one statement after the batch's held writes, if any: the statement may read or
    /// change what they touch, so they go first and the batch's facts are dropped.
    func run(_ sql: String, arguments args: [any PGArgument]) throws -> PGResult {
        if batch.active {
            try batch.flush(self)
            batch.reset()
        }
        return try send(sql, arguments: args)
    }

    /// Runs one statement now, whatever the batch holds.
    func send(_ sql: String, arguments args: [any PGArgument]) throws -> PGResult {
        let binds = try bindings(args)
        let result = try wait(for: connection.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger))
        return PGResult(rows: result.rows.map { PGRow($0.makeRandomAccess()) }, affected: result.metadata.rows ?? 0)
    }

    /// Runs one of the hot statements after the batch's held writes (as `run` does), prepared:
    /// PostgreSQL parses and plans it once per connection, not on every call. Parsing and
    /// planning took about 40 % of the server's time in the flush bench, the send statements
    /// being long CTEs. Only rows come back, not a count of rows changed.
    @discardableResult
    func runPrepared<Text: PreparedText>(_ text: Text.Type, _ args: any PGArgument...) throws -> [PGRow] {
        if batch.active {
            try batch.flush(self)
            batch.reset()
        }
        return try sendPrepared(text, arguments: args)
    }

    /// Runs a prepared statement now, whatever the batch holds.
    @discardableResult
    func sendPrepared<Text: PreparedText>(_ text: Text.Type, arguments args: [any PGArgument]) throws -> [PGRow] {
        let statement = PreparedStatement<Text>(bindings: try bindings(args))
        let connection = self.connection, logger = self.logger
        let answer = connection.eventLoop.makePromise(of: [PostgresRow].self)
        // PostgresNIO prepares a statement (once per connection, by its name) only from async code.
        answer.completeWithTask {
            var rows: [PostgresRow] = []
            for try await row in try await connection.execute(statement, logger: logger) { rows.append(row) }
            return rows
        }
        do {
            return try wait(for: answer.futureResult).map { PGRow($0.makeRandomAccess()) }
        } catch {
            // PostgresNIO remembers a failed preparation for the connection's lifetime (every
            // later run of the statement there fails the same way), and the failure may have been
            // passing (an aborted transaction, a lock timeout): start afresh on a new connection.
            spoiled.value = true
            throw error
        }
    }

    private func bindings(_ args: [any PGArgument]) throws -> PostgresBindings {
        engine.countStatement()
        var binds = PostgresBindings(capacity: args.count)
        for a in args { try a.bind(into: &binds) }
        // A connection the server or the network has closed (the server ends a session left idle
        // in a transaction too long) would never answer: PostgresNIO does not fail a statement
        // sent on it, so the thread would wait for ever (seen as a `serve` that never stopped).
        guard !connection.isClosed else { throw PostgresStoreError(message: "the connection to PostgreSQL was lost") }
        return binds
    }

    /// Waits on this thread for a statement's answer. A statement that gets none (the network
    /// went silent, or the connection closed as it was sent) fails after a minute, and its
    /// connection is closed and not reused.
    private func wait<T: Sendable>(for running: EventLoopFuture<T>) throws -> T {
        let connection = self.connection
        let answer = running.eventLoop.makePromise(of: T.self)
        running.cascade(to: answer)
        let watchdog = running.eventLoop.scheduleTask(in: Self.statementTimeout) {
            answer.fail(PostgresStoreError(message: "PostgreSQL did not answer a statement within \(Self.statementTimeout.nanoseconds / 1_000_000_000) s"))
            let _: EventLoopFuture<Void> = connection.close()
        }
        defer { watchdog.cancel() }
        do {
            return try answer.futureResult.wait()
        } catch let error as PSQLError {
            throw PostgresStoreError(error)
        }
    }

    func one(_ sql: String, _ args: any PGArgument...) throws -> PGRow? {
        try run(sql, arguments: args).rows.first
    }

    // MARK: group commit

    public func prepareBatch(_ hints: [WriteHints]) throws {
        guard !readOnly else { return }
        let users = hints.flatMap(\.users)
        if !users.isEmpty {
            if batch.active { try flushBatch() }
            try batch.prepare(self, users: users, keys: hints.flatMap(\.msgKeys))
        }
        let sends = hints.flatMap(\.sends)
        if !sends.isEmpty {
            // Every send right of the batch at once (one statement per sixteen), the rows locked
            // in id order (as the ingest batch's share locks are), so neither can wait for the
            // other in a cycle.
            batch.sendRights(asked: sends, held: try takeSendRights(Set(sends), flushing: false))
        }
    }

    /// Takes the send rights of `ids` (`SendRights`), in id order, and returns the digests whose
    /// right this transaction now holds. `flushing` first sends what the batch holds back.
    func takeSendRights(_ ids: Set<Int64>, flushing: Bool) throws -> [Int64] {
        if flushing, batch.active { try flushBatch() }
        var held: [Int64] = []
        let sorted = ids.sorted()
        for start in stride(from: 0, to: sorted.count, by: SendRights.arity) {
            let chunk = sorted[start..<min(start + SendRights.arity, sorted.count)]
            // The unused places repeat the chunk's last id: `IN` does not mind.
            let padded = Array(chunk) + Array(repeating: chunk.last!, count: SendRights.arity - chunk.count)
            held += try sendPrepared(SendRights.self, arguments: [instance.id, instance.timeoutSeconds] + padded.map { $0 as any PGArgument })
                .map { try $0.int64("id") }
        }
        return held
    }

    /// The send right, the fence that keeps a stalled instance from sending what another took
    /// over: the digest is open and claimed by this instance, whose heartbeat is younger than half
    /// the timeout by the database's clock. The row lock holds it until commit: every other
    /// writer of a digest row, and an ingest batch's share lock, waits for it; only the
    /// foreign-key checks of log inserts (`FOR KEY SHARE`) do not.
    ///
    /// The digests are found by primary key alone. The heartbeat is a one-time check, not a
    /// join, and the digest's own conditions are wrapped in `IS TRUE`, so no other index can
    /// serve them: the generic plan of the plainer text, on statistics a burst of new digests
    /// had made stale, combined the due and claimed indexes and visited every open digest this
    /// instance claimed (2.7 ms a call with 20,000 of them, against 0.14 ms by key).
    ///
    /// The ids come as a fixed number of scalars, not as an array: PostgreSQL's generic plan
    /// guesses ten elements for an array parameter, a plan for a short array looks cheaper, and
    /// so it planned the statement afresh on every run (0.2 ms around 0.05 ms of work, a fifth
    /// of the server's time in the flush bench). With as many places in both, the generic plan
    /// costs the same, wins, and is made once per connection.
    enum SendRights: PreparedText {
        static let arity = 16
        static let sql = """
            SELECT d.id FROM digests d
            WHERE d.id IN (\((3..<(3 + arity)).map { "$\($0)" }.joined(separator: ", "))) AND (d.state = 'open' AND d.claimed_by = $1) IS TRUE
              AND EXISTS (SELECT 1 FROM instances i WHERE i.id = $1 AND i.heartbeat_at > now() - make_interval(secs => $2 / 2))
            ORDER BY d.id FOR NO KEY UPDATE OF d
            """
    }

    public func flushBatch() throws {
        guard batch.active else { return }
        try batch.flush(self)
        batch.reset()
    }

    public func inSavepoint<T>(_ body: () throws -> T) throws -> T {
        try run("SAVEPOINT job")
        let value: T
        do {
            value = try body()
        } catch {
            try run("ROLLBACK TO SAVEPOINT job")
            try run("RELEASE SAVEPOINT job")
            throw error
        }
        try run("RELEASE SAVEPOINT job")
        return value
    }

    // MARK: users

    static let userColumns = "im_user_id, openid, name, profile, created_at, updated_at"

    static func user(_ r: PGRow) throws -> User {
        User(imUserID: try r.string("im_user_id"), openid: try r.stringOrNil("openid"), name: try r.stringOrNil("name"),
             profile: try r.stringOrNil("profile"), createdAt: try r.time("created_at"), updatedAt: try r.time("updated_at"))
    }

    public func user(_ id: String) throws -> User? {
        if batch.knowsUser(id) { return batch.user(id) }
        return try one("SELECT \(Self.userColumns) FROM users WHERE im_user_id = $1", id).map(Self.user)
    }

    public func user(openid: String) throws -> User? {
        try one("SELECT \(Self.userColumns) FROM users WHERE openid = $1", openid).map(Self.user)
    }

    public func users() throws -> [User] {
        try run("SELECT \(Self.userColumns) FROM users ORDER BY im_user_id").rows.map(Self.user)
    }

    public func saveUser(_ user: User) throws {
        try run("""
            INSERT INTO users (im_user_id, openid, name, profile, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (im_user_id) DO UPDATE SET openid = excluded.openid, name = excluded.name, profile = excluded.profile,
                updated_at = excluded.updated_at
            """, user.imUserID, user.openid, user.name, user.profile, user.createdAt.milliseconds, user.updatedAt.milliseconds)
    }

    public func clearOpenid(of user: String) throws {
        try run("UPDATE users SET openid = NULL WHERE im_user_id = $1", user)
    }

    // MARK: messages

    public func insertMessage(_ m: NewMessage, senderNameCard: String?, groupMessageID: Int64?) throws -> Int64? {
        if senderNameCard == nil, groupMessageID == nil, let held = batch.insertMessage(m) { return held }
        if let groupMessageID {
            return try one("""
                INSERT INTO messages (group_message_id, recipient, sender, sender_name_card, msg_time, received_at, summary, urgent)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING id
                """, groupMessageID, m.recipient, m.sender, senderNameCard, m.msgTime, m.receivedAt.milliseconds, m.summary, m.urgent
            ).map { try $0.int64("id") }
        }
        return try one("""
            INSERT INTO messages (msg_key, recipient, sender, sender_name_card, msg_time, received_at, summary, urgent)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING id
            """, m.msgKey, m.recipient, m.sender, senderNameCard, m.msgTime, m.receivedAt.milliseconds, m.summary, m.urgent
        ).map { try $0.int64("id") }
    }

    public func storeMessage(_ m: NewMessage, digest: Int64?) throws -> Bool {
        try run("""
            INSERT INTO messages (msg_key, recipient, sender, msg_time, received_at, summary, urgent, digest_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (msg_key) DO NOTHING
            """, m.msgKey, m.recipient, m.sender, m.msgTime, m.receivedAt.milliseconds, m.summary, m.urgent, digest).affected > 0
    }

    public func messageExists(msgKey: String) throws -> Bool {
        try one("SELECT EXISTS (SELECT 1 FROM messages WHERE msg_key = $1) AS found", msgKey)?.bool("found") ?? false
    }

    static let refColumns = "id, recipient, digest_id, received_at, status"

    static func ref(_ r: PGRow) throws -> PendingMessageRef {
        PendingMessageRef(
            id: try r.int64("id"), recipient: try r.string("recipient"), digestID: try r.int64OrNil("digest_id"),
            receivedAt: try r.time("received_at"), status: MessageStatus(rawValue: try r.string("status")) ?? .pending)
    }

    public func message(msgKey: String, recipient: String) throws -> PendingMessageRef? {
        try one("SELECT \(Self.refColumns) FROM messages WHERE msg_key = $1 AND recipient = $2", msgKey, recipient).map(Self.ref)
    }

    public func unjoinedMessages(recipient: String) throws -> [PendingMessageRef] {
        try run("""
            SELECT \(Self.refColumns) FROM messages
            WHERE recipient = $1 AND status = 'pending' AND digest_id IS NULL ORDER BY received_at, id
            """, recipient).rows.map(Self.ref)
    }

    public func pendingC2CMessages(recipient: String, sender: String, upToMsgTime msgTime: Int64) throws -> [PendingMessageRef] {
        try run("""
            SELECT \(Self.refColumns) FROM messages
            WHERE recipient = $1 AND sender = $2 AND status = 'pending' AND msg_time <= $3 AND group_message_id IS NULL
            """, recipient, sender, msgTime).rows.map(Self.ref)
    }

    public func join(messages ids: [Int64], to digest: Int64) throws {
        guard !ids.isEmpty, !batch.join(messages: ids, to: digest) else { return }
        try run("UPDATE messages SET digest_id = $1 WHERE id = ANY($2)", digest, ids)
    }

    public func setStatus(of ids: [Int64], to status: MessageStatus, at: Timestamp, eraseText: Bool) throws {
        guard !ids.isEmpty else { return }
        if eraseText {
            try run("UPDATE messages SET status = $1, status_at = $2, summary = NULL WHERE id = ANY($3)", status.rawValue, at.milliseconds, ids)
        } else {
            try run("UPDATE messages SET status = $1, status_at = $2 WHERE id = ANY($3)", status.rawValue, at.milliseconds, ids)
        }
    }

    public func eraseText(messageID: Int64) throws {
        try run("UPDATE messages SET summary = NULL WHERE id = $1", messageID)
    }

    public func setStatus(ofDigest digest: Int64, to status: MessageStatus, at: Timestamp) throws {
        try run("WITH \(Self.updatePending(ofDigest: "$3", set: "status = $1, status_at = $2")) SELECT count(*) AS n FROM changed",
                status.rawValue, at.milliseconds, digest)
    }

    /// Two CTEs, `mine` and `changed` (no trailing comma), that update a digest's pending messages
    /// (`when` may test `mine.received_at`); `changed` returns their ids.
    ///
    /// Written so that the planner reaches the rows by the digest index and the primary key
    /// alone. `status = 'pending'` on the updated table would let it read the partial index of
    /// every pending message in the database instead, which its statistics (a little old while a
    /// table grows fast) make look small: 0.75 ms to 4 ms a digest instead of 0.05 ms. So the
    /// status and digest are compared with the CTE's copy by `IS NOT DISTINCT FROM` (no equality
    /// the planner can turn into an index condition), and a row another writer changed meanwhile
    /// is still re-checked.
    static func updatePending(ofDigest digest: String, set: String, when: String = "true") -> String {
        """
        mine AS MATERIALIZED (SELECT id, status, received_at FROM messages WHERE digest_id = \(digest)),
        changed AS (
            UPDATE messages m SET \(set) FROM mine
            WHERE m.id = mine.id AND mine.status = 'pending' AND m.status IS NOT DISTINCT FROM mine.status
              AND m.digest_id IS NOT DISTINCT FROM \(digest) AND \(when)
            RETURNING m.id
        )
        """
    }

    public func readMark(recipient: String, peer: String) throws -> Int64? {
        try one("SELECT last_read_time FROM read_marks WHERE recipient = $1 AND peer = $2", recipient, peer)?.int64("last_read_time")
    }

    public func setReadMark(recipient: String, peer: String, lastReadTime: Int64) throws {
        try run("""
            INSERT INTO read_marks (recipient, peer, last_read_time) VALUES ($1, $2, $3)
            ON CONFLICT (recipient, peer) DO UPDATE SET last_read_time = excluded.last_read_time
            """, recipient, peer, lastReadTime)
    }

    public func isTombstoned(msgKey: String, now: Timestamp) throws -> Bool {
        if let held = batch.isTombstoned(msgKey: msgKey, now: now) { return held }
        return try one("SELECT EXISTS (SELECT 1 FROM recall_tombstones WHERE msg_key = $1 AND expires_at > $2) AS found",
                msgKey, now.milliseconds)?.bool("found") ?? false
    }

    public func addTombstone(msgKey: String, to: String, expiresAt: Timestamp) throws {
        try run("""
            INSERT INTO recall_tombstones (msg_key, to_account, expires_at) VALUES ($1, $2, $3)
            ON CONFLICT (msg_key) DO UPDATE SET expires_at = excluded.expires_at
            """, msgKey, to, expiresAt.milliseconds)
    }

    public func messages(recipient: String) throws -> [StoredMessage] {
        try run("""
            SELECT id, msg_key, group_message_id, recipient, sender, msg_time, received_at, status, digest_id, urgent,
                   summary IS NOT NULL AS has_text
            FROM messages WHERE recipient = $1 ORDER BY received_at, id
            """, recipient).rows.map { r in
            StoredMessage(
                id: try r.int64("id"), msgKey: try r.stringOrNil("msg_key"), groupMessageID: try r.int64OrNil("group_message_id"),
                recipient: try r.string("recipient"), sender: try r.string("sender"), msgTime: try r.int64("msg_time"),
                receivedAt: try r.time("received_at"), status: try r.string("status"), digestID: try r.int64OrNil("digest_id"),
                urgent: try r.bool("urgent"), hasText: try r.bool("has_text"))
        }
    }

    public func messageCount(msgKey: String) throws -> Int {
        try count("SELECT COUNT(*) AS n FROM messages WHERE msg_key = $1", msgKey)
    }

    public func messageCount(digest: Int64) throws -> Int {
        try count("SELECT COUNT(*) AS n FROM messages WHERE digest_id = $1", digest)
    }

    public func unjoinedMessageCount(recipient: String) throws -> Int {
        try count("SELECT COUNT(*) AS n FROM messages WHERE recipient = $1 AND status = 'pending' AND digest_id IS NULL", recipient)
    }

    func count(_ sql: String, _ args: any PGArgument...) throws -> Int {
        Int(try run(sql, arguments: args).rows.first?.int64OrNil("n") ?? 0)
    }

    public func isKnown(user id: String) throws -> Bool {
        try one("""
            SELECT EXISTS (SELECT 1 FROM users WHERE im_user_id = $1) OR EXISTS (SELECT 1 FROM messages WHERE recipient = $1)
                OR EXISTS (SELECT 1 FROM digests WHERE im_user_id = $1) AS found
            """, id)?.bool("found") ?? false
    }

    public func movePendingMessages(from source: Int64, to target: Int64) throws -> Int {
        Int(try one("WITH \(Self.updatePending(ofDigest: "$2", set: "digest_id = $1")) SELECT count(*) AS n FROM changed",
                    target, source)?.int64("n") ?? 0)
    }

    public func dropUnjoined(receivedBefore cutoff: Timestamp, now: Timestamp) throws -> Int {
        try run("""
            UPDATE messages SET status = 'dropped', status_at = $1
            WHERE status = 'pending' AND received_at < $2 AND digest_id IS NULL
            """, now.milliseconds, cutoff.milliseconds).affected
    }

    public func expireMessages(ofDigest id: Int64, receivedBefore cutoff: Timestamp, now: Timestamp) throws -> Int {
        Int(try one("""
            WITH \(Self.updatePending(ofDigest: "$2", set: "status = 'expired', status_at = $1", when: "mine.received_at < $3"))
            SELECT count(*) AS n FROM changed
            """, now.milliseconds, id, cutoff.milliseconds)?.int64("n") ?? 0)
    }

    public func purgeText(finishedBefore cutoff: Timestamp, now: Timestamp) throws -> Int {
        try run("UPDATE messages SET summary = NULL WHERE summary IS NOT NULL AND status <> 'pending' AND status_at < $1", cutoff.milliseconds)
        let purged = try run("UPDATE digests SET body = NULL WHERE body IS NOT NULL AND finished_at IS NOT NULL AND finished_at < $1",
                             cutoff.milliseconds).affected
        try run("DELETE FROM recall_tombstones WHERE expires_at <= $1", now.milliseconds)
        return purged
    }

    // MARK: digests

    /// The pending count filters the digest's messages rather than putting the status in the
    /// WHERE clause: with it there, the planner (its statistics a little old on a growing table)
    /// chose to AND the digest index with the partial index of all pending messages, and read
    /// every pending message of the database for each digest (1 ms a batch at 1,000 callbacks/s).
    static let pendingColumn = "(SELECT COUNT(*) FILTER (WHERE m.status = 'pending') FROM messages m WHERE m.digest_id = d.id) AS pending"

    static let activeDigestColumns = """
        id, state, reason, window_start_at, last_message_at, due_at, urgent, flush_requested, \(pendingColumn)
        """

    public func activeDigest(for user: String) throws -> ActiveDigest? {
        if batch.knowsUser(user) { return batch.activeDigest(for: user) }
        // Several instances may work on one user at once: a transaction-scoped lock per user
        // serialises them, and the read after it sees what the previous holder committed.
        try run("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", user)
        // Share-locked until commit: a send cannot start (`holdsSendRight` locks the row for
        // update) while a message this transaction joins is not committed, and so cannot miss it.
        let lock = readOnly ? "" : " FOR SHARE OF d"
        return try one("SELECT \(Self.activeDigestColumns) FROM digests d WHERE im_user_id = $1 AND state IN ('open', 'held')\(lock)", user)
            .map(Self.activeDigest)
    }

    static func activeDigest(_ r: PGRow) throws -> ActiveDigest {
        ActiveDigest(
            id: try r.int64("id"), state: DigestState(rawValue: try r.string("state")) ?? .open,
            reason: try r.stringOrNil("reason").flatMap(DigestReason.init(rawValue:)),
            windowStartAt: try r.time("window_start_at"), lastMessageAt: try r.timeOrNil("last_message_at"),
            dueAt: try r.timeOrNil("due_at"), urgent: try r.bool("urgent"), pendingCount: Int(try r.int64("pending")),
            flushRequested: Int(try r.int64("flush_requested")))
    }

    public func lastSendStart(user: String, excluding digest: Int64?) throws -> Timestamp? {
        // Sent at once, ahead of the batch's held writes: those only add open digests and re-time
        // them, never touching the states read here, so the batch keeps its facts.
        try send("""
            SELECT max(sending_at) AS at FROM digests
            WHERE im_user_id = $1 AND state IN ('sending', 'sent', 'dry_run', 'in_doubt') AND id <> $2
            """, arguments: [user, digest ?? -1]).rows.first?.timeOrNil("at")
    }

    public func digestState(_ id: Int64) throws -> DigestState? {
        try one("SELECT state FROM digests WHERE id = $1", id).flatMap { DigestState(rawValue: try $0.string("state")) }
    }

    public func pendingCount(digest: Int64) throws -> Int {
        try count("SELECT COUNT(*) FILTER (WHERE status = 'pending') AS n FROM messages WHERE digest_id = $1", digest)
    }

    public func insertDigest(for user: String, windowStart: Timestamp, dueAt: Timestamp, now: Timestamp) throws -> Int64 {
        if let held = try batch.insertDigest(for: user, windowStart: windowStart, dueAt: dueAt, now: now) { return held }
        do {
            guard let id = try one("""
                INSERT INTO digests (im_user_id, state, opened_at, window_start_at, due_at, updated_at)
                VALUES ($1, 'open', $2, $3, $4, $5) RETURNING id
                """, user, now.milliseconds, windowStart.milliseconds, dueAt.milliseconds, now.milliseconds)?.int64("id")
            else { throw PostgresStoreError(message: "inserting a digest returned no id") }
            return id
        } catch let error as PostgresStoreError where error.sqlState == "23505" {
            throw StoreError.activeDigestExists(user: user)
        }
    }

    public func updateDigestTiming(_ id: Int64, lastMessageAt: Timestamp?, dueAt: Timestamp?, urgent: Bool, now: Timestamp) throws {
        if batch.updateTiming(id, lastMessageAt: lastMessageAt, dueAt: dueAt, urgent: urgent, now: now) { return }
        try run("""
            UPDATE digests SET last_message_at = coalesce($1::bigint, last_message_at),
                due_at = CASE WHEN state = 'open' THEN coalesce($2::bigint, due_at) ELSE due_at END,
                urgent = urgent OR $3, updated_at = $4
            WHERE id = $5
            """, lastMessageAt?.milliseconds, dueAt?.milliseconds, urgent, now.milliseconds, id)
    }

    public func setDigestState(_ id: Int64, from: DigestState, to: DigestState, reason: DigestReason?, now: Timestamp) throws -> Bool {
        do {
            return try run("""
                UPDATE digests SET state = $1, reason = $2, updated_at = $3,
                    held_since = CASE WHEN $1 = 'held' THEN coalesce(held_since, $3) ELSE NULL END,
                    finished_at = CASE WHEN $1 IN ('sent', 'dry_run', 'cancelled', 'expired') THEN $3 ELSE finished_at END
                WHERE id = $4 AND state = $5
                """, to.rawValue, reason?.rawValue, now.milliseconds, id, from.rawValue).affected > 0
        } catch let error as PostgresStoreError where error.message.contains(StoreError.illegalTransitionMessage) {
            throw StoreError.illegalTransition(from: from, to: to)
        }
    }

    public func appendEvent(digest: Int64, at: Timestamp, kind: DigestEventKind, detail: String) throws {
        if batch.appendEvent(digest: digest, at: at, kind: kind, detail: detail) { return }
        try run("INSERT INTO digest_events (digest_id, at, kind, detail) VALUES ($1, $2, $3, $4)", digest, at.milliseconds, kind.rawValue, detail)
    }

    public func appendEvents(_ events: [NewDigestEvent]) throws {
        guard !events.isEmpty else { return }
        if batch.active {
            for e in events { _ = batch.appendEvent(digest: e.digest, at: e.at, kind: e.kind, detail: e.detail) }
            return
        }
        try run("""
            INSERT INTO digest_events (digest_id, at, kind, detail)
            SELECT digest, at, kind, detail FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[]) WITH ORDINALITY
                AS u(digest, at, kind, detail, n)
            ORDER BY n
            """, events.map(\.digest), events.map(\.at.milliseconds), events.map(\.kind.rawValue), events.map(\.detail))
    }

    /// The rule step by step (`StoreTransaction.startSending`) costs four round trips and two
    /// updates of the digest row (eight indexes each); here it is one statement.
    public func startSending(_ id: Int64, rendered: [Int64], template: String, body: String, now: Timestamp, line: String) throws -> Bool {
        try runPrepared(StartSending.self, id, Array(Set(rendered)).sorted(), now.milliseconds, template, body, line).first?.int64("n") == 1
    }

    enum StartSending: PreparedText {
        static let sql = """
            WITH mine AS MATERIALIZED (SELECT id, status FROM messages WHERE digest_id = $1),
            unchanged AS (
                SELECT 1 FROM mine HAVING coalesce(array_agg(id ORDER BY id) FILTER (WHERE status = 'pending'), '{}') = $2::bigint[]
            ),
            moved AS (
                UPDATE digests SET state = 'sending', reason = NULL, updated_at = $3, held_since = NULL,
                    template_id = $4, body = $5, sending_at = $3, attempts = attempts + 1
                WHERE id = $1 AND state = 'open' AND EXISTS (SELECT 1 FROM unchanged)
                RETURNING id
            ),
            logged AS (INSERT INTO digest_events (digest_id, at, kind, detail) SELECT id, $3, 'state', $6 FROM moved)
            SELECT count(*) AS n FROM moved
            """
    }

    /// The rule step by step (`StoreTransaction.recordSent`) costs seven round trips and two
    /// updates of the digest row; here it is one statement.
    public func recordSent(_ id: Int64, msgid: String?, spend: CreditKey?, now: Timestamp, line: String) throws -> Bool {
        try runPrepared(RecordSent.self, id, now.milliseconds, msgid, line, spend?.openid, spend?.templateID).first?.int64("n") == 1
    }

    enum RecordSent: PreparedText {
        static let sql = """
            WITH moved AS (
                UPDATE digests SET state = 'sent', reason = NULL, updated_at = $2, held_since = NULL, finished_at = $2,
                    errcode = '0', errmsg = NULL, msgid = coalesce($3, msgid)
                WHERE id = $1 AND state = 'sending'
                RETURNING id
            ),
            logged AS (INSERT INTO digest_events (digest_id, at, kind, detail) SELECT id, $2, 'state', $4 FROM moved),
            \(PostgresTransaction.updatePending(ofDigest: "$1", set: "status = 'delivered', status_at = $2", when: "EXISTS (SELECT 1 FROM moved)")),
            spent AS (
                INSERT INTO credits (openid, template_id, count, subscribed, updated_at)
                SELECT $5, $6, 0, false, $2 FROM moved WHERE $5::text IS NOT NULL
                ON CONFLICT (openid, template_id) DO UPDATE SET count = greatest(credits.count - 1, 0), updated_at = excluded.updated_at
            )
            SELECT count(*) AS n FROM moved
            """
    }

    public func recordSendStart(_ id: Int64, template: String, body: String, now: Timestamp) throws {
        try run("UPDATE digests SET template_id = $1, body = $2, sending_at = $3, attempts = attempts + 1 WHERE id = $4",
                template, body, now.milliseconds, id)
    }

    public func countAttempt(_ id: Int64) throws {
        try run("UPDATE digests SET attempts = attempts + 1 WHERE id = $1", id)
    }

    public func setResult(_ id: Int64, errcode: String?, errmsg: String?, msgid: String?) throws {
        try run("UPDATE digests SET errcode = $1, errmsg = $2, msgid = coalesce($3, msgid) WHERE id = $4", errcode, errmsg, msgid, id)
    }

    public func setDue(_ id: Int64, _ due: Timestamp, now: Timestamp) throws {
        try run("UPDATE digests SET due_at = $1, flush_requested = 0, updated_at = $2 WHERE id = $3", due.milliseconds, now.milliseconds, id)
    }

    public func setFlushRequest(_ id: Int64, at: Timestamp, force: Bool, now: Timestamp) throws -> Bool {
        try run("UPDATE digests SET due_at = $1, flush_requested = $2, updated_at = $3 WHERE id = $4 AND state = 'open'",
                at.milliseconds, force ? 2 : 1, now.milliseconds, id).affected > 0
    }

    public func resetAttempts(_ id: Int64, now: Timestamp) throws {
        try run("UPDATE digests SET attempts = 0, updated_at = $1 WHERE id = $2", now.milliseconds, id)
    }

    public func templateID(ofDigest id: Int64) throws -> String? {
        try one("SELECT template_id FROM digests WHERE id = $1", id)?.stringOrNil("template_id")
    }

    public func attempts(_ id: Int64) throws -> Int {
        Int(try one("SELECT attempts FROM digests WHERE id = $1", id)?.int64("attempts") ?? 0)
    }

    public func digestIDs(in state: DigestState) throws -> [Int64] {
        try run("SELECT id FROM digests WHERE state = $1 ORDER BY id", state.rawValue).rows.map { try $0.int64("id") }
    }

    public func digestID(msgid: String) throws -> Int64? {
        try one("SELECT id FROM digests WHERE msgid = $1", msgid)?.int64("id")
    }

    static let digestRowColumns = "id, im_user_id, state, reason, opened_at, window_start_at, due_at, updated_at"

    static func digestRow(_ r: PGRow) throws -> DigestRow {
        DigestRow(
            id: try r.int64("id"), imUserID: try r.string("im_user_id"), state: DigestState(rawValue: try r.string("state")) ?? .dead,
            reason: try r.stringOrNil("reason").flatMap(DigestReason.init(rawValue:)), openedAt: try r.time("opened_at"),
            windowStartAt: try r.time("window_start_at"), dueAt: try r.timeOrNil("due_at"), updatedAt: try r.time("updated_at"))
    }

    public func digest(_ id: Int64) throws -> DigestRow? {
        try one("SELECT \(Self.digestRowColumns) FROM digests WHERE id = $1", id).map(Self.digestRow)
    }

    public func digests(for user: String) throws -> [DigestRow] {
        try run("SELECT \(Self.digestRowColumns) FROM digests WHERE im_user_id = $1 ORDER BY id DESC", user).rows.map(Self.digestRow)
    }

    public func digestLog(_ id: Int64) throws -> [DigestLogLine] {
        try run("SELECT at, kind, detail FROM digest_events WHERE digest_id = $1 ORDER BY id", id).rows.map {
            (try $0.time("at"), try $0.string("kind"), try $0.string("detail"))
        }
    }

    static let dueColumns = """
        d.id, d.im_user_id, u.openid, u.name, u.profile, d.state, d.reason, d.due_at, d.attempts, d.flush_requested, d.urgent
        """

    static func due(_ r: PGRow) throws -> DueDigest {
        let flush = try r.int64("flush_requested")
        return DueDigest(
            id: try r.int64("id"), imUserID: try r.string("im_user_id"), openid: try r.stringOrNil("openid"),
            name: try r.stringOrNil("name"), profile: try r.stringOrNil("profile"),
            state: DigestState(rawValue: try r.string("state")) ?? .open,
            reason: try r.stringOrNil("reason").flatMap(DigestReason.init(rawValue:)), dueAt: try r.timeOrNil("due_at"),
            attempts: Int(try r.int64("attempts")), flushForce: flush == 2, flushed: flush != 0, urgent: try r.bool("urgent"))
    }

    public func dueDigests(_ filter: DueFilter, limit: Int) throws -> [DueDigest] {
        let base = "SELECT \(Self.dueColumns) FROM digests d LEFT JOIN users u ON u.im_user_id = d.im_user_id"
        let order = "ORDER BY coalesce(d.due_at, 0), d.id LIMIT \(limit)"
        switch filter {
        case .dueBy(let now):
            return try run("\(base) WHERE d.state = 'open' AND d.due_at <= $1 \(order)", now.milliseconds).rows.map(Self.due)
        case .held:
            return try run("\(base) WHERE d.state = 'held' \(order)").rows.map(Self.due)
        case .id(let id):
            return try run("\(base) WHERE d.id = $1 \(order)", id).rows.map(Self.due)
        }
    }

    public func nextDueAt(after: Timestamp?) throws -> Timestamp? {
        if let after {
            return try one("SELECT min(due_at) AS at FROM digests WHERE state = 'open' AND due_at > $1", after.milliseconds)?.timeOrNil("at")
        }
        return try one("SELECT min(due_at) AS at FROM digests WHERE state = 'open'")?.timeOrNil("at")
    }

    public func digestMessages(_ id: Int64) throws -> [DigestMessageRow] {
        // The digest's messages first, by the digest index alone (see `pendingColumn`).
        try run("""
            WITH mine AS MATERIALIZED (SELECT * FROM messages WHERE digest_id = $1)
            SELECT m.id, m.sender, u.name, m.sender_name_card, m.msg_time, coalesce(m.summary, '') AS summary
            FROM mine m LEFT JOIN users u ON u.im_user_id = m.sender
            WHERE m.status = 'pending' ORDER BY m.msg_time, m.id
            """, id).rows.map(Self.digestMessage)
    }

    public func digestMessages(ofDigests ids: [Int64]) throws -> [Int64: [DigestMessageRow]] {
        guard !ids.isEmpty else { return [:] }
        var all: [Int64: [DigestMessageRow]] = [:]
        for r in try run("""
            WITH mine AS MATERIALIZED (SELECT * FROM messages WHERE digest_id = ANY($1))
            SELECT m.digest_id, m.id, m.sender, u.name, m.sender_name_card, m.msg_time, coalesce(m.summary, '') AS summary
            FROM mine m LEFT JOIN users u ON u.im_user_id = m.sender
            WHERE m.status = 'pending' ORDER BY m.digest_id, m.msg_time, m.id
            """, Array(Set(ids))).rows {
            all[try r.int64("digest_id"), default: []].append(try Self.digestMessage(r))
        }
        return all
    }

    static func digestMessage(_ r: PGRow) throws -> DigestMessageRow {
        DigestMessageRow(id: try r.int64("id"), sender: try r.string("sender"), senderName: try r.stringOrNil("name"),
                         senderNameCard: try r.stringOrNil("sender_name_card"), msgTime: try r.int64("msg_time"),
                         summary: try r.string("summary"))
    }

    public func digestSummaries(_ filter: DigestFilter, limit: Int?) throws -> [DigestSummary] {
        let clause: String
        var args: [any PGArgument]
        switch filter {
        case .id(let id):
            clause = "d.id = $1"
            args = [id]
        case .ids(let ids):
            guard !ids.isEmpty else { return [] }
            clause = "d.id = ANY($1)"
            args = [ids]
        case .active(let user):
            clause = "d.im_user_id = $1 AND d.state IN ('open', 'held')"
            args = [user]
        case .states(let states, let user):
            guard !states.isEmpty else { return [] }
            clause = user == nil ? "d.state = ANY($1)" : "d.state = ANY($1) AND d.im_user_id = $2"
            args = [states.map(\.rawValue)]
            if let user { args.append(user) }
        }
        let rows = try run("""
            SELECT d.id, d.im_user_id, u.name, u.openid IS NOT NULL AS bound, d.state, d.reason, d.due_at, d.template_id,
                   d.errcode, d.errmsg, d.msgid, d.held_since, d.opened_at, d.finished_at,
                   (SELECT COUNT(*) FROM messages m WHERE m.digest_id = d.id
                      AND (m.status = 'pending' OR (d.state NOT IN ('open', 'held') AND m.status IN ('delivered', 'seen')))) AS messages,
                   (SELECT min(m.received_at) FROM messages m WHERE m.digest_id = d.id) AS first_at
            FROM digests d LEFT JOIN users u ON u.im_user_id = d.im_user_id
            WHERE \(clause)
            ORDER BY coalesce(d.due_at, d.updated_at), d.id
            \(limit.map { "LIMIT \($0)" } ?? "")
            """, arguments: args).rows
        // Every digest's senders in one statement (one per digest cost a pass over `users` each:
        // 0.6 ms a digest, 6 s for `roundup history --limit 10000`).
        let ids = try rows.map { try $0.int64("id") }
        var senders: [Int64: [String]] = [:]
        if !ids.isEmpty {
            for r in try run("""
                SELECT m.digest_id, coalesce(min(u.name), (array_agg(m.sender_name_card ORDER BY m.msg_time, m.id))[1], m.sender) AS shown
                FROM messages m LEFT JOIN users u ON u.im_user_id = m.sender
                WHERE m.digest_id = ANY($1) GROUP BY m.digest_id, m.sender ORDER BY m.digest_id, min(m.msg_time), min(m.id)
                """, ids).rows {
                senders[try r.int64("digest_id"), default: []].append(try r.string("shown"))
            }
        }
        return try rows.map { r in
            let id = try r.int64("id")
            return DigestSummary(
                id: id, imUserID: try r.string("im_user_id"), name: try r.stringOrNil("name"), openidBound: try r.bool("bound"),
                state: DigestState(rawValue: try r.string("state")) ?? .dead,
                reason: try r.stringOrNil("reason").flatMap(DigestReason.init(rawValue:)),
                messages: Int(try r.int64("messages")), senders: senders[id] ?? [], firstAt: try r.timeOrNil("first_at"),
                dueAt: try r.timeOrNil("due_at"), templateID: try r.stringOrNil("template_id"),
                errcode: try r.stringOrNil("errcode"), errmsg: try r.stringOrNil("errmsg"), msgid: try r.stringOrNil("msgid"),
                heldSince: try r.timeOrNil("held_since"), openedAt: try r.time("opened_at"), finishedAt: try r.timeOrNil("finished_at"))
        }
    }

    public func recentDigestIDs(states: [DigestState], user: String?, limit: Int) throws -> [Int64] {
        guard !states.isEmpty else { return [] }
        let order = "ORDER BY coalesce(finished_at, updated_at) DESC, id DESC LIMIT \(limit)"
        if let user {
            return try run("SELECT id FROM digests WHERE state = ANY($1) AND im_user_id = $2 \(order)", states.map(\.rawValue), user)
                .rows.map { try $0.int64("id") }
        }
        return try run("SELECT id FROM digests WHERE state = ANY($1) \(order)", states.map(\.rawValue)).rows.map { try $0.int64("id") }
    }

    public func digestTimingFacts(_ id: Int64) throws -> DigestTimingFacts? {
        try one("""
            SELECT window_start_at, last_message_at, urgent, flush_requested, attempts, sending_at, updated_at FROM digests WHERE id = $1
            """, id).map { r in
            DigestTimingFacts(
                windowStartAt: try r.time("window_start_at"), lastMessageAt: try r.timeOrNil("last_message_at"),
                urgent: try r.bool("urgent"), flushRequested: Int(try r.int64("flush_requested")), attempts: Int(try r.int64("attempts")),
                sendingAt: try r.timeOrNil("sending_at"), updatedAt: try r.time("updated_at"))
        }
    }

    public func openDigestTimings(user: String?) throws -> [OpenDigestTiming] {
        let sql = """
            SELECT d.id, d.im_user_id, u.profile, d.window_start_at, d.last_message_at, d.due_at, d.urgent, d.flush_requested,
                   \(Self.pendingColumn)
            FROM digests d LEFT JOIN users u ON u.im_user_id = d.im_user_id
            WHERE d.state = 'open' \(user == nil ? "" : "AND d.im_user_id = $1")
            """
        let rows = try user.map { try run(sql, $0).rows } ?? run(sql).rows
        return try rows.map { r in
            OpenDigestTiming(
                id: try r.int64("id"), imUserID: try r.string("im_user_id"), profile: try r.stringOrNil("profile"),
                windowStartAt: try r.time("window_start_at"), lastMessageAt: try r.timeOrNil("last_message_at"),
                dueAt: try r.time("due_at"), urgent: try r.bool("urgent"), pendingCount: Int(try r.int64("pending")),
                flushRequested: Int(try r.int64("flush_requested")))
        }
    }

    public func inDoubtDigests(openid: String, templateID: String, sendingBetween from: Timestamp, and to: Timestamp) throws -> [Int64] {
        try run("""
            SELECT d.id FROM digests d JOIN users u ON u.im_user_id = d.im_user_id
            WHERE u.openid = $1 AND d.template_id = $2 AND d.state = 'in_doubt' AND d.sending_at BETWEEN $3 AND $4
            ORDER BY d.sending_at
            """, openid, templateID, from.milliseconds, to.milliseconds).rows.map { try $0.int64("id") }
    }

    public func activeDigests(withPendingBefore cutoff: Timestamp) throws -> [(id: Int64, user: String, state: DigestState, oldest: Timestamp)] {
        try run("""
            SELECT d.id, d.im_user_id, d.state, min(m.received_at) AS oldest
            FROM messages m JOIN digests d ON d.id = m.digest_id
            WHERE m.status = 'pending' AND m.received_at < $1 AND d.state IN ('open', 'held') GROUP BY d.id
            """, cutoff.milliseconds).rows.map { r in
            (try r.int64("id"), try r.string("im_user_id"), DigestState(rawValue: try r.string("state")) ?? .open, try r.time("oldest"))
        }
    }

    // MARK: claims and fencing

    /// An instance is live while its heartbeat is younger than the timeout, by the database's clock.
    static let liveInstances = "SELECT id FROM instances WHERE heartbeat_at > now() - make_interval(secs => $2)"

    public func claimDueDigests(now: Timestamp, limit: Int, excluding: Set<Int64>) throws -> [DueDigest] {
        // One statement claims: rows another transaction is claiming are skipped, not waited for,
        // and a claim held by a live instance is respected. Nothing is claimed unless this
        // instance's own heartbeat is younger than half the timeout.
        // The digests already in this instance's pipeline are left out, and a row this instance
        // already claims is returned without being written again: a claim that rewrote them
        // would hold their row locks until it commits, and the sends' fencing locks would wait
        // for it (5 ms a send batch in the flush bench, with a thousand digests in flight).
        let ids = try run("""
            WITH me AS (
                SELECT 1 FROM instances WHERE id = $1 AND heartbeat_at > now() - make_interval(secs => $2 / 2)
            ), picked AS (
                SELECT d.id, d.claimed_by FROM digests d
                WHERE d.state = 'open' AND d.due_at <= $3 AND EXISTS (SELECT 1 FROM me)
                  AND NOT (d.id = ANY($5))
                  AND (d.claimed_by IS NULL OR d.claimed_by = $1 OR d.claimed_by NOT IN (\(Self.liveInstances)))
                ORDER BY d.due_at, d.id LIMIT $4
                FOR NO KEY UPDATE OF d SKIP LOCKED
            ), taken AS (
                UPDATE digests d SET claimed_by = $1 FROM picked
                WHERE d.id = picked.id AND picked.claimed_by IS DISTINCT FROM $1
            )
            SELECT id FROM picked
            """, instance.id, instance.timeoutSeconds, now.milliseconds, limit, Array(excluding)).rows.map { try $0.int64("id") }
        guard !ids.isEmpty else { return [] }
        return try run("""
            SELECT \(Self.dueColumns) FROM digests d LEFT JOIN users u ON u.im_user_id = d.im_user_id
            WHERE d.id = ANY($1) ORDER BY coalesce(d.due_at, 0), d.id
            """, ids).rows.map(Self.due)
    }

    public func holdsSendRight(_ id: Int64) throws -> Bool {
        if let known = batch.sendRight(id) { return known }
        return try !takeSendRights([id], flushing: true).isEmpty
    }

    public func orphanedSends() throws -> [Int64] {
        try run("""
            SELECT id FROM digests
            WHERE state = 'sending' AND (claimed_by IS NULL OR claimed_by NOT IN (\(Self.liveInstances.replacingOccurrences(of: "$2", with: "$1"))))
            ORDER BY id FOR UPDATE SKIP LOCKED
            """, instance.timeoutSeconds).rows.map { try $0.int64("id") }
    }

    /// Advisory lock keys: a fixed prefix, then the job.
    static let exclusiveLockBase: Int64 = 0x526F_756E_6475_1000

    public func notifyInstances() throws {
        try run("SELECT pg_notify($1, $2)", PostgresNotifier.channel, "w:\(instance.id)")
    }

    public func tryExclusive(_ job: ExclusiveJob) throws -> Bool {
        try one("SELECT pg_try_advisory_xact_lock($1) AS got", Self.exclusiveLockBase + job.rawValue)?.bool("got") ?? false
    }

    public func lockPendingFanout(_ id: Int64) throws -> Bool {
        try one("SELECT id FROM group_messages WHERE id = $1 AND fanout_state = 'pending' FOR UPDATE", id) != nil
    }

    public func takeTokenRefreshLease(seconds: Double) throws -> Bool {
        try one("""
            INSERT INTO token_refresh_lease (id, holder, until) VALUES (1, $1, now() + make_interval(secs => $2))
            ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, until = excluded.until
                WHERE token_refresh_lease.until < now() OR token_refresh_lease.holder = excluded.holder
            RETURNING holder
            """, instance.id, seconds) != nil
    }

    public func releaseTokenRefreshLease() throws {
        try run("UPDATE token_refresh_lease SET until = now() WHERE id = 1 AND holder = $1", instance.id)
    }

    /// Registers this instance or renews its heartbeat (by the database's clock).
    func heartbeat(host: String, pid: Int, version: String, fingerprint: String) throws {
        try run("""
            INSERT INTO instances (id, host, pid, version, config_fingerprint) VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), config_fingerprint = excluded.config_fingerprint
            """, instance.id, host, pid, version, fingerprint)
    }

    public func releaseClaims() throws {
        let released = try run("UPDATE digests SET claimed_by = NULL WHERE claimed_by = $1 AND state IN ('open', 'held')", instance.id)
        // The others claim what was released at once, not at their next poll.
        if released.affected > 0 { try notifyInstances() }
    }

    /// Graceful stop, last step: releases any claim left and removes the heartbeat row.
    func resign() throws {
        try releaseClaims()
        try run("DELETE FROM instances WHERE id = $1", instance.id)
    }

    /// The live instances, oldest first.
    func liveInstances() throws -> [InstanceRow] {
        try run("""
            SELECT id, host, pid, version, config_fingerprint,
                   (extract(epoch FROM now() - heartbeat_at) * 1000)::bigint AS age_ms,
                   (extract(epoch FROM started_at) * 1000)::bigint AS started_ms
            FROM instances WHERE heartbeat_at > now() - make_interval(secs => $1) ORDER BY started_at, id
            """, instance.timeoutSeconds).rows.map { r in
            InstanceRow(id: try r.string("id"), host: try r.string("host"), pid: Int(try r.int64("pid")), version: try r.string("version"),
                        configFingerprint: try r.string("config_fingerprint"), heartbeatAgeSeconds: Double(try r.int64("age_ms")) / 1000,
                        startedAt: try r.time("started_ms"))
        }
    }

    /// Every digest some instance has claimed, oldest first: the claim stays on a digest after it
    /// is sent, so this also says which instance sent what.
    func claimedDigests() throws -> [ClaimedDigest] {
        try run("SELECT id, im_user_id, state, claimed_by FROM digests WHERE claimed_by IS NOT NULL ORDER BY id").rows.map { r in
            ClaimedDigest(id: try r.int64("id"), imUserID: try r.string("im_user_id"),
                          state: DigestState(rawValue: try r.string("state")) ?? .open, instanceID: try r.string("claimed_by"))
        }
    }

    // MARK: group messages

    public func insertGroupMessage(_ g: NewGroupMessage) throws -> Int64? {
        try one("""
            INSERT INTO group_messages (group_id, msg_seq, group_type, sender, msg_time, received_at, summary, at_all, mentions, urgent)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (group_id, msg_seq) DO NOTHING RETURNING id
            """, g.groupID, g.msgSeq, g.groupType, g.sender, g.msgTime, g.receivedAt.milliseconds, g.summary, g.atAll,
            g.mentions.joined(separator: "\n"), g.urgent)?.int64("id")
    }

    public func finishFanout(_ id: Int64, state: String, at: Timestamp) throws {
        try run("UPDATE group_messages SET fanout_state = $1, fanout_done_at = $2 WHERE id = $3", state, at.milliseconds, id)
    }

    public func pendingGroupMessages(limit: Int) throws -> [PendingGroupMessage] {
        try run("""
            SELECT id, group_id, msg_seq, sender, msg_time, received_at, summary, at_all, mentions, urgent
            FROM group_messages WHERE fanout_state = 'pending' ORDER BY id LIMIT $1
            """, limit).rows.map { r in
            PendingGroupMessage(
                id: try r.int64("id"), groupID: try r.string("group_id"), msgSeq: try r.int64("msg_seq"), sender: try r.string("sender"),
                msgTime: try r.int64("msg_time"), receivedAt: try r.time("received_at"), summary: try r.stringOrNil("summary") ?? "",
                atAll: try r.bool("at_all"), mentions: try r.string("mentions").split(separator: "\n").map(String.init),
                urgent: try r.bool("urgent"))
        }
    }

    public func groupMessage(groupID: String, msgSeq: Int64) throws -> (id: Int64, fanoutState: String)? {
        try one("SELECT id, fanout_state FROM group_messages WHERE group_id = $1 AND msg_seq = $2", groupID, msgSeq).map {
            (try $0.int64("id"), try $0.string("fanout_state"))
        }
    }

    // MARK: sending pauses

    public func sendPauses() throws -> SendPauses {
        var out = SendPauses()
        for r in try run("SELECT key, until_at FROM send_pauses").rows {
            guard let key = SendPauseKey(rawValue: try r.string("key")) else { continue }
            out.entries.updateValue(try r.timeOrNil("until_at"), forKey: key)
        }
        return out
    }

    public func setSendPause(_ key: SendPauseKey, until: Timestamp?, reason: String, now: Timestamp) throws {
        try run("""
            INSERT INTO send_pauses (key, until_at, reason, since_at) VALUES ($1, $2, $3, $4)
            ON CONFLICT (key) DO UPDATE SET until_at = excluded.until_at, reason = excluded.reason
            """, key.rawValue, until?.milliseconds, reason, now.milliseconds)
    }

    public func clearSendPause(_ key: SendPauseKey) throws -> Bool {
        try run("DELETE FROM send_pauses WHERE key = $1", key.rawValue).affected > 0
    }

    public func clearExpiredSendPauses(now: Timestamp) throws {
        try run("DELETE FROM send_pauses WHERE until_at IS NOT NULL AND until_at <= $1", now.milliseconds)
    }

    public func clearTemplatePauses() throws {
        try run("DELETE FROM send_pauses WHERE key LIKE 'template:%'")
    }

    // MARK: credits and WeChat events

    static let creditColumns = "openid, template_id, count, subscribed, updated_at"

    static func credit(_ r: PGRow) throws -> Credit {
        Credit(openid: try r.string("openid"), templateID: try r.string("template_id"), count: Int(try r.int64("count")),
               subscribed: try r.bool("subscribed"), updatedAt: try r.time("updated_at"))
    }

    public func credits(openid: String?) throws -> [Credit] {
        if let openid {
            return try run("SELECT \(Self.creditColumns) FROM credits WHERE openid = $1 ORDER BY openid, template_id", openid).rows.map(Self.credit)
        }
        return try run("SELECT \(Self.creditColumns) FROM credits ORDER BY openid, template_id").rows.map(Self.credit)
    }

    public func credits(openids: [String]) throws -> [String: [String: Credit]] {
        var out: [String: [String: Credit]] = [:]
        guard !openids.isEmpty else { return out }
        for r in try run("SELECT \(Self.creditColumns) FROM credits WHERE openid = ANY($1)", openids).rows {
            let credit = try Self.credit(r)
            out[credit.openid, default: [:]][credit.templateID] = credit
        }
        return out
    }

    public func credit(openid: String, templateID: String) throws -> Credit? {
        // In a write, the row stays locked until commit: two instances changing one credit at
        // once apply one after the other instead of losing an update.
        try one("SELECT \(Self.creditColumns) FROM credits WHERE openid = $1 AND template_id = $2\(readOnly ? "" : " FOR UPDATE")",
                openid, templateID).map(Self.credit)
    }

    public func saveCredit(_ credit: Credit) throws {
        try run("""
            INSERT INTO credits (openid, template_id, count, subscribed, updated_at) VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (openid, template_id) DO UPDATE SET count = excluded.count, subscribed = excluded.subscribed,
                updated_at = excluded.updated_at
            """, credit.openid, credit.templateID, credit.count, credit.subscribed, credit.updatedAt.milliseconds)
    }

    public func markApplied(eventKey: String, now: Timestamp) throws -> Bool {
        try run("INSERT INTO applied_events (key, applied_at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", eventKey, now.milliseconds)
            .affected > 0
    }

    public func wasApplied(eventKey: String) throws -> Bool {
        try one("SELECT EXISTS (SELECT 1 FROM applied_events WHERE key = $1) AS found", eventKey)?.bool("found") ?? false
    }

    public func insertSentEvent(_ e: SentEventRecord, now: Timestamp) throws -> Bool {
        try run("""
            INSERT INTO wechat_sent_events (msgid, openid, template_id, error_code, error_status, create_time, received_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (msgid, template_id) DO NOTHING
            """, e.msgID, e.openid, e.templateID, e.errorCode, e.errorStatus, e.createTime, now.milliseconds).affected > 0
    }

    public func sentEvent(openid: String, templateID: String, createdBetween from: Int64, and to: Int64) throws -> (msgid: String, errorCode: Int64)? {
        try one("""
            SELECT msgid, error_code FROM wechat_sent_events WHERE openid = $1 AND template_id = $2 AND create_time BETWEEN $3 AND $4
            ORDER BY create_time DESC LIMIT 1
            """, openid, templateID, from, to).map { (try $0.string("msgid"), try $0.int64("error_code")) }
    }

    // MARK: the whole service

    public func operatorStats() throws -> OperatorStats {
        var byState = Dictionary(uniqueKeysWithValues: DigestState.allCases.map { ($0, 0) })
        for r in try run("SELECT state, COUNT(*) AS n FROM digests GROUP BY state").rows {
            if let state = DigestState(rawValue: try r.string("state")) { byState[state] = Int(try r.int64("n")) }
        }
        var held: [DigestReason: Int] = [.unbound: 0, .noCredit: 0, .configError: 0]
        for r in try run("SELECT reason, COUNT(*) AS n FROM digests WHERE state = 'held' GROUP BY reason").rows {
            if let reason = try r.stringOrNil("reason").flatMap(DigestReason.init(rawValue:)) { held[reason] = Int(try r.int64("n")) }
        }
        let counts = try one("""
            SELECT COUNT(*) AS total, COUNT(msg_key) AS c2c, COUNT(group_message_id) AS copies,
                   COUNT(*) FILTER (WHERE status = 'pending') AS pending
            FROM messages
            """)
        let byTemplate = try creditSums()
        let subscriptions = try count("SELECT COUNT(*) AS n FROM credits WHERE subscribed")
        return OperatorStats(
            digestsByState: byState, heldByReason: held, messagesStored: Int(try counts?.int64("total") ?? 0),
            c2cMessages: Int(try counts?.int64("c2c") ?? 0), groupCopies: Int(try counts?.int64("copies") ?? 0),
            pendingMessages: Int(try counts?.int64("pending") ?? 0), creditsOutstanding: byTemplate.values.reduce(0, +),
            creditsByTemplate: byTemplate, subscriptions: subscriptions)
    }

    func creditSums() throws -> [String: Int] {
        var out: [String: Int] = [:]
        for r in try run("SELECT template_id, SUM(count)::bigint AS n FROM credits GROUP BY template_id").rows {
            out[try r.string("template_id")] = Int(try r.int64("n"))
        }
        return out
    }

    public func statusSnapshot(now: Timestamp) throws -> StatusSnapshot {
        let pending = try count("SELECT COUNT(*) AS n FROM messages WHERE status = 'pending'")
        let open = try count("SELECT COUNT(*) AS n FROM digests WHERE state = 'open'")
        var held: [String: Int] = [:]
        for r in try run("SELECT reason, COUNT(*) AS n FROM digests WHERE state = 'held' GROUP BY reason").rows {
            held[try r.stringOrNil("reason") ?? ""] = Int(try r.int64("n"))
        }
        let oldest = try one("SELECT min(due_at) AS at FROM digests WHERE state = 'open'")?.int64OrNil("at")
        let overdue = oldest.map { max(0, Double(now.milliseconds - $0) / 1000) } ?? 0
        return StatusSnapshot(pendingMessages: pending, openDigests: open, held: held, oldestOverdueSeconds: overdue,
                              creditsByTemplate: try creditSums())
    }

    public func cachedAccessToken() throws -> (token: String, expiresAt: Timestamp)? {
        try one("SELECT token, expires_at FROM access_token WHERE id = 1").map { (try $0.string("token"), try $0.time("expires_at")) }
    }

    public func saveAccessToken(_ token: String, expiresAt: Timestamp, now: Timestamp) throws {
        try run("""
            INSERT INTO access_token (id, token, expires_at, fetched_at) VALUES (1, $1, $2, $3)
            ON CONFLICT (id) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at, fetched_at = excluded.fetched_at
            """, token, expiresAt.milliseconds, now.milliseconds)
    }

    public func eraseUser(_ id: String) throws -> Bool {
        let openid = try one("SELECT openid FROM users WHERE im_user_id = $1", id)?.stringOrNil("openid")
        let known = try isKnown(user: id)
        if let openid {
            try run("DELETE FROM credits WHERE openid = $1", openid)
            try run("DELETE FROM wechat_sent_events WHERE openid = $1", openid)
        }
        try run("DELETE FROM messages WHERE recipient = $1", id)
        try run("DELETE FROM digests WHERE im_user_id = $1", id)
        try run("DELETE FROM read_marks WHERE recipient = $1 OR peer = $1", id)
        try run("DELETE FROM recall_tombstones WHERE to_account = $1", id)
        try run("DELETE FROM users WHERE im_user_id = $1", id)
        return known
    }
}
