import PostgresNIO

/// What a group-commit batch on PostgreSQL read up front, and the writes it holds back until
/// the end of the batch.
///
/// A C2C message costs about eight statements (tombstone, recipient, insert, the user's lock,
/// their open digest, join, re-time, log line). Each is a round trip plus PostgresNIO's work to
/// send it and wake the waiting thread, which together cost more than the statement itself. So
/// a batch first locks its users and reads their rows, their open or held digests, its MsgKeys'
/// duplicates and recall tombstones, and fresh ids, in four statements; its jobs then run the
/// same digest rules against those facts in memory; and their inserts and updates go out as four
/// array statements (`unnest`) at the end. A batch costs about ten round trips, however many
/// jobs it holds.
///
/// The facts stay true for the whole batch: the users' advisory locks, taken first, are what
/// every writer of a user's open digest takes before it reads one; and the held-back writes
/// update the facts as they are made. Anything else a job asks (a statement the batch did not
/// prepare for) first sends the held writes and drops the facts, and the rest of the batch runs
/// statement by statement, as without a batch. When the held writes fail (another instance
/// stored the same MsgKey between the read and the insert), `BatchWriteFailed` makes the group
/// committer run the batch again, one savepoint per job and nothing held back.
final class PostgresBatch {
    /// The facts below are true; false outside a batch and after anything unprepared ran.
    private(set) var active = false

    private var hintedUsers: Set<String> = []
    private var users: [String: User] = [:]
    /// The open or held digest of each hinted user that has one.
    private var digests: [String: ActiveDigest] = [:]
    private var owners: [Int64: String] = [:]
    private var hintedKeys: Set<String> = []
    /// Hinted MsgKeys already stored, or inserted by this batch.
    private var storedKeys: Set<String> = []
    /// Recall tombstones of hinted MsgKeys: their expiry, in milliseconds.
    private var tombstones: [String: Int64] = [:]
    /// Ids taken from the tables' sequences for the rows this batch inserts, used in ascending
    /// order (messages are rendered in id order), and how many are used.
    private var messageIDs: [Int64] = []
    private var digestIDs: [Int64] = []
    private var messageIDsUsed = 0
    private var digestIDsUsed = 0

    // Held-back writes, in the order they were made.
    private var newDigests: [(id: Int64, user: String, openedAt: Int64)] = []
    private var newMessages: [(id: Int64, message: NewMessage)] = []
    private var newMessageIDs: Set<Int64> = []
    private var joined: [Int64: Int64] = [:]
    /// Each re-timed digest's last `updated_at`, and which of them got a last-message time and
    /// a due time (the others keep what the database has, as a NULL in the UPDATE would).
    private var retimed: [Int64: Int64] = [:]
    private var lastSet: Set<Int64> = []
    private var dueSet: Set<Int64> = []
    private var events: [(digest: Int64, at: Int64, kind: String, detail: String)] = []

    /// Send rights taken for the whole batch (`holdsSendRight`): the digests asked for, and those
    /// held. A right stays true until the transaction ends (its row is locked for update), so
    /// these outlive `reset`, unlike the facts above; a digest not asked for is asked of the database.
    private var sendsAsked: Set<Int64> = []
    private var sendsHeld: Set<Int64> = []

    func sendRights(asked: [Int64], held: [Int64]) {
        sendsAsked.formUnion(asked)
        sendsHeld.formUnion(held)
    }

    /// Whether this transaction holds the send right of a digest the batch asked for; nil when it did not ask.
    func sendRight(_ id: Int64) -> Bool? {
        sendsAsked.contains(id) ? sendsHeld.contains(id) : nil
    }

    var hasWrites: Bool { !newDigests.isEmpty || !newMessages.isEmpty || !retimed.isEmpty || !events.isEmpty }

    /// Forgets the facts and the held writes (after they were sent, or when the transaction rolls back).
    func reset() {
        active = false
        hintedUsers = []; users = [:]; digests = [:]; owners = [:]
        hintedKeys = []; storedKeys = []; tombstones = [:]; messageIDs = []; digestIDs = []; messageIDsUsed = 0; digestIDsUsed = 0
        clearWrites()
    }

    private func clearWrites() {
        newDigests = []; newMessages = []; newMessageIDs = []; joined = [:]; retimed = [:]; lastSet = []; dueSet = []; events = []
    }

    // MARK: reading the facts

    func prepare(_ tx: PostgresTransaction, users hinted: [String], keys: [String]) throws {
        reset()
        let sortedUsers = Array(Set(hinted)).sorted()
        let keys = Array(Set(keys))
        // The same lock as `activeDigest`, in one order for every batch so that two instances'
        // batches cannot deadlock; taken before the reads, which then see what the previous
        // holder committed.
        try tx.sendPrepared(LockUsers.self, arguments: [sortedUsers])
        for r in try tx.sendPrepared(Users.self, arguments: [sortedUsers]) {
            let user = try PostgresTransaction.user(r)
            users[user.imUserID] = user
        }
        for r in try tx.send(Self.activeDigests, arguments: [sortedUsers]).rows {
            let d = try PostgresTransaction.activeDigest(r)
            let user = try r.string("im_user_id")
            digests[user] = d
            owners[d.id] = user
        }
        for r in try tx.sendPrepared(Facts.self, arguments: [keys, keys.count, sortedUsers.count]) {
            let value = try r.int64("value")
            switch try r.string("kind") {
            case "stored": storedKeys.insert(try r.string("key"))
            case "tombstone": tombstones[try r.string("key")] = value
            case "message_id": messageIDs.append(value)
            default: digestIDs.append(value)
            }
        }
        messageIDs.sort()
        digestIDs.sort()
        hintedUsers = Set(sortedUsers)
        hintedKeys = Set(keys)
        active = true
    }

    // MARK: answering from the facts (nil: not prepared for, ask the database)

    func knowsUser(_ id: String) -> Bool { active && hintedUsers.contains(id) }
    func user(_ id: String) -> User? { users[id] }
    func activeDigest(for user: String) -> ActiveDigest? { digests[user] }

    func isTombstoned(msgKey: String, now: Timestamp) -> Bool? {
        guard active, hintedKeys.contains(msgKey) else { return nil }
        return (tombstones[msgKey] ?? .min) > now.milliseconds
    }

    // MARK: holding writes (false or nil: not prepared for, write to the database)

    /// `.some(nil)` is a duplicate MsgKey; `nil` means the batch cannot take this insert.
    func insertMessage(_ m: NewMessage) -> Int64?? {
        guard active, hintedKeys.contains(m.msgKey), messageIDsUsed < messageIDs.count else { return nil }
        if storedKeys.contains(m.msgKey) { return .some(nil) }
        let id = messageIDs[messageIDsUsed]
        messageIDsUsed += 1
        storedKeys.insert(m.msgKey)
        newMessages.append((id, m))
        newMessageIDs.insert(id)
        return .some(id)
    }

    func insertDigest(for user: String, windowStart: Timestamp, dueAt: Timestamp, now: Timestamp) throws -> Int64? {
        guard knowsUser(user), digestIDsUsed < digestIDs.count else { return nil }
        // What the unique index on open and held digests would say.
        if digests[user] != nil { throw StoreError.activeDigestExists(user: user) }
        let id = digestIDs[digestIDsUsed]
        digestIDsUsed += 1
        digests[user] = ActiveDigest(id: id, state: .open, reason: nil, windowStartAt: windowStart, lastMessageAt: nil, dueAt: dueAt,
                                     urgent: false, pendingCount: 0)
        owners[id] = user
        newDigests.append((id, user, now.milliseconds))
        retimed[id] = now.milliseconds
        return id
    }

    func join(messages ids: [Int64], to digest: Int64) -> Bool {
        guard active, let user = owners[digest] else { return false }
        guard ids.allSatisfy(newMessageIDs.contains) else { return false }
        for id in ids { joined[id] = digest }
        digests[user]?.pendingCount += ids.count
        return true
    }

    func updateTiming(_ id: Int64, lastMessageAt: Timestamp?, dueAt: Timestamp?, urgent: Bool, now: Timestamp) -> Bool {
        guard active, let user = owners[id], var d = digests[user] else { return false }
        // As the UPDATE does: the due time moves only while the digest is open.
        if let lastMessageAt {
            d.lastMessageAt = lastMessageAt
            lastSet.insert(id)
        }
        if let dueAt, d.state == .open {
            d.dueAt = dueAt
            dueSet.insert(id)
        }
        d.urgent = d.urgent || urgent
        digests[user] = d
        retimed[id] = now.milliseconds
        return true
    }

    func appendEvent(digest: Int64, at: Timestamp, kind: DigestEventKind, detail: String) -> Bool {
        guard active else { return false }
        events.append((digest, at.milliseconds, kind.rawValue, detail))
        return true
    }

    // MARK: sending the held writes

    /// Sends the held writes (digests first: messages and log lines refer to them) and keeps the
    /// facts, which the writes already reflect.
    func flush(_ tx: PostgresTransaction) throws {
        guard hasWrites else { return }
        do {
            try sendWrites(tx)
        } catch {
            throw BatchWriteFailed(underlying: error)
        }
        clearWrites()
    }

    private func sendWrites(_ tx: PostgresTransaction) throws {
        // -1 stands for NULL in the bigint arrays (timestamps and ids are never negative).
        func digestRow(_ id: Int64) -> ActiveDigest? { owners[id].flatMap { digests[$0] } }
        let fresh = Set(newDigests.map(\.id))
        if !newDigests.isEmpty {
            let rows = newDigests.compactMap { n in digestRow(n.id).map { (n, $0) } }
            try tx.sendPrepared(InsertDigests.self, arguments: [
                rows.map(\.0.id), rows.map(\.0.user), rows.map(\.0.openedAt), rows.map(\.1.windowStartAt.milliseconds),
                rows.map { $0.1.lastMessageAt?.milliseconds ?? -1 }, rows.map { $0.1.dueAt?.milliseconds ?? 0 },
                rows.map(\.1.urgent), rows.map { retimed[$0.0.id] ?? $0.0.openedAt },
            ])
        }
        if !newMessages.isEmpty {
            let m = newMessages.map(\.message)
            try tx.sendPrepared(InsertMessages.self, arguments: [
                newMessages.map(\.id), m.map(\.msgKey), m.map(\.recipient), m.map(\.sender), m.map(\.msgTime),
                m.map(\.receivedAt.milliseconds), m.map(\.summary), m.map(\.urgent), newMessages.map { joined[$0.id] ?? -1 },
            ])
        }
        let updates = retimed.keys.filter { !fresh.contains($0) }.sorted().compactMap { id in digestRow(id).map { (id, $0) } }
        if !updates.isEmpty {
            try tx.sendPrepared(UpdateDigests.self, arguments: [
                updates.map(\.0), updates.map { lastSet.contains($0.0) ? $0.1.lastMessageAt?.milliseconds ?? -1 : -1 },
                updates.map { dueSet.contains($0.0) ? $0.1.dueAt?.milliseconds ?? -1 : -1 },
                updates.map(\.1.urgent), updates.map { retimed[$0.0] ?? 0 },
            ])
        }
        if !events.isEmpty {
            try tx.sendPrepared(InsertEvents.self, arguments: [events.map(\.digest), events.map(\.at), events.map(\.kind), events.map(\.detail)])
        }
    }
}

// MARK: the statements, most prepared once per connection

extension PostgresBatch {
    enum LockUsers: PreparedText {
        static let sql = """
            SELECT count(pg_advisory_xact_lock(hashtextextended(u, 0))) AS n FROM (SELECT u FROM unnest($1::text[]) AS u ORDER BY u) AS sorted
            """
    }

    enum Users: PreparedText {
        static let sql = "SELECT \(PostgresTransaction.userColumns) FROM users WHERE im_user_id = ANY($1)"
    }

    /// Not prepared: the plan PostgreSQL makes for any list of users (its generic plan) took
    /// 0.54 ms a batch in the ingest bench, the plan for the list at hand 0.09 ms.
    static let activeDigests = """
        SELECT im_user_id, \(PostgresTransaction.activeDigestColumns) FROM digests d
        WHERE im_user_id = ANY($1) AND state IN ('open', 'held') ORDER BY d.id FOR SHARE OF d
        """

    enum Facts: PreparedText {
        static let sql = """
            SELECT 'stored' AS kind, msg_key AS key, 0::bigint AS value FROM messages WHERE msg_key = ANY($1)
            UNION ALL SELECT 'tombstone', msg_key, expires_at FROM recall_tombstones WHERE msg_key = ANY($1)
            UNION ALL SELECT 'message_id', '', nextval(pg_get_serial_sequence('messages', 'id')) FROM generate_series(1, $2::bigint)
            UNION ALL SELECT 'digest_id', '', nextval(pg_get_serial_sequence('digests', 'id')) FROM generate_series(1, $3::bigint)
            """
    }

    enum InsertDigests: PreparedText {
        static let sql = """
            INSERT INTO digests (id, im_user_id, state, opened_at, window_start_at, last_message_at, due_at, urgent, updated_at)
            SELECT id, usr, 'open', opened, window_start, nullif(last, -1), due, urgent, at
            FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bool[], $8::bigint[])
                AS u(id, usr, opened, window_start, last, due, urgent, at)
            """
    }

    enum InsertMessages: PreparedText {
        static let sql = """
            INSERT INTO messages (id, msg_key, recipient, sender, msg_time, received_at, summary, urgent, digest_id)
            SELECT id, msg_key, recipient, sender, msg_time, received_at, summary, urgent, nullif(digest, -1)
            FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[], $8::bool[], $9::bigint[])
                AS u(id, msg_key, recipient, sender, msg_time, received_at, summary, urgent, digest)
            """
    }

    enum UpdateDigests: PreparedText {
        static let sql = """
            UPDATE digests d SET last_message_at = coalesce(nullif(u.last, -1), d.last_message_at),
                due_at = CASE WHEN d.state = 'open' THEN coalesce(nullif(u.due, -1), d.due_at) ELSE d.due_at END,
                urgent = d.urgent OR u.urgent, updated_at = u.at
            FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bool[], $5::bigint[]) AS u(id, last, due, urgent, at)
            WHERE d.id = u.id
            """
    }

    enum InsertEvents: PreparedText {
        static let sql = """
            INSERT INTO digest_events (digest_id, at, kind, detail)
            SELECT digest, at, kind, detail FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[]) WITH ORDINALITY
                AS u(digest, at, kind, detail, n)
            ORDER BY n
            """
    }
}
