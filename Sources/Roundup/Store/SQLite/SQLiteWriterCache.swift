import GRDB
import Synchronization

/// What the ingest path reads for every message, kept in memory by the writer connection: each
/// user's row, each user's open or held digest (with its pending count), the users known to have
/// no message outside a digest, and whether any recall tombstone exists. A C2C message then costs
/// a message insert, its join and one digest update, instead of also reading the user, the digest
/// and the tombstones; a Login or Logout that would change nothing needs no transaction at all
/// (`idleFacts`).
///
/// The cache is a hint that stays right by three rules:
/// - **Other writers.** `serve` is not the only writer: the CLI (`flush`, `cancel`, `retry`,
///   `users bind`, `users import`) writes the same file. Each write transaction first reads
///   `PRAGMA data_version`, which changes when another connection has committed; then everything
///   is dropped.
/// - **This writer.** Every write primitive of `SQLiteTransaction` either keeps the cache exact
///   (a join adds to the pending count, a re-timing updates the due time) or drops what it may
///   have changed. A primitive that is not known to leave the cached facts alone drops it all.
/// - **Rollbacks.** A transaction or savepoint that rolls back, or a commit that fails, drops
///   everything: the cache may hold what was undone.
///
/// It is used only inside write transactions, on the writer connection, one at a time; the
/// mutex makes it safe to drop from anywhere. Each map holds at most `maxEntries` users and is
/// emptied when full (the next reads fill it again), which bounds its memory. A user's digest and
/// whether they have unjoined messages share one entry, so their id is kept once.
final class SQLiteWriterCache: Sendable {
    static let maxEntries = 200_000

    private struct State {
        var users: [String: User?] = [:]
        /// Users' digests and unjoined messages, as far as known.
        var facts: [String: UserFacts] = [:]
        var userOfDigest: [Int64: String] = [:]
        /// Whether any row is in `recall_tombstones` (expired ones included); nil: not known.
        var anyTombstone: Bool?
        var dataVersion: Int64 = .min
        /// The last transaction that used the cache committed.
        var committed = true
        /// A write transaction is running on the writer connection.
        var writing = false

        mutating func clear() {
            users.removeAll(keepingCapacity: true)
            facts.removeAll(keepingCapacity: true)
            userOfDigest.removeAll(keepingCapacity: true)
            anyTombstone = nil
        }

        /// Room for one more user's facts: all of them are dropped when the map is full.
        mutating func makeRoomForFacts(of user: String) {
            guard facts.count >= SQLiteWriterCache.maxEntries, facts[user] == nil else { return }
            facts.removeAll(keepingCapacity: true)
            userOfDigest.removeAll(keepingCapacity: true)
        }

        /// The user's known open or held digest, only when one is known to exist.
        func knownDigest(of user: String) -> ActiveDigest? {
            guard case .some(.some(let d)) = facts[user]?.digest else { return nil }
            return d
        }

        mutating func update(_ user: String, _ change: (inout UserFacts) -> Void) {
            guard var f = facts[user] else { return }
            change(&f)
            facts[user] = f.isEmpty ? nil : f
        }
    }

    /// What is known of one user (one entry for both facts, so a user's id is kept once).
    struct UserFacts {
        /// Their open or held digest: `.some(nil)` means "none", nil means "not known".
        var digest: ActiveDigest?? = nil
        /// No pending message of theirs is outside a digest.
        var noUnjoined = false

        var isEmpty: Bool {
            if case .none = digest { return !noUnjoined }
            return false
        }
    }

    private let state = Mutex(State())

    /// Starts a write transaction: drops everything when another connection committed since the
    /// last one, or when the last one did not commit. Call it as the transaction's first
    /// statement, so the version read is the one of the snapshot the transaction works on.
    func begin(_ db: Database) throws {
        let version = try Int64.cachedOne(db, sql: "PRAGMA data_version") ?? 0
        state.withLock { s in
            if !s.committed || s.dataVersion != version { s.clear() }
            s.dataVersion = version
            s.committed = false
        }
    }

    /// The transaction that began last committed: what it cached is true.
    func didCommit() { state.withLock { $0.committed = true } }

    /// A write transaction starts on the writer connection (before `begin`, before any statement
    /// or any of its work runs).
    func enter() { state.withLock { $0.writing = true } }

    /// The write transaction has committed or rolled back, and the cache says so.
    func leave() { state.withLock { $0.writing = false } }

    /// What the cache knows of `user`, only while no write transaction runs and the last one
    /// committed: then nothing this process has not committed is in it, and a transaction that
    /// starts later reads, after this call, whatever its caller changed before it (the same lock
    /// orders both).
    func idleFacts(user: String) -> WriterFacts? {
        state.withLock { s -> WriterFacts? in
            guard !s.writing, s.committed else { return nil }
            let f = s.facts[user]
            let active: Bool? = f?.digest.map { $0 != nil }
            return WriterFacts(activeDigest: active, unjoinedMessages: f?.noUnjoined == true ? false : nil)
        }
    }

    /// Drops everything (a rollback, or a write whose effect on the cached facts is not tracked).
    func clear() { state.withLock { $0.clear() } }

    // MARK: users

    /// The cached user: `.some(nil)` means "no such user", nil means "not cached".
    func user(_ id: String) -> User?? { state.withLock { $0.users[id] } }

    func remember(user id: String, _ user: User?) {
        state.withLock { s in
            if s.users.count >= Self.maxEntries { s.users.removeAll(keepingCapacity: true) }
            s.users[id] = .some(user)
        }
    }

    func forget(user id: String) { state.withLock { _ = $0.users.removeValue(forKey: id) } }

    // MARK: active digests

    /// The cached open or held digest: `.some(nil)` means "none", nil means "not cached".
    func activeDigest(of user: String) -> ActiveDigest?? { state.withLock { $0.facts[user]?.digest } }

    func remember(activeDigestOf user: String, _ digest: ActiveDigest?) {
        state.withLock { s in
            s.makeRoomForFacts(of: user)
            s.facts[user, default: UserFacts()].digest = .some(digest)
            if let digest { s.userOfDigest[digest.id] = user }
        }
    }

    /// A digest was inserted for `user`: "none" no longer holds.
    func forget(activeDigestOf user: String) {
        state.withLock { s in
            if let id = s.knownDigest(of: user)?.id { s.userOfDigest.removeValue(forKey: id) }
            s.update(user) { $0.digest = nil }
        }
    }

    /// Something about this digest changed that the cache does not track.
    func forget(digest id: Int64) {
        state.withLock { s in
            if let user = s.userOfDigest.removeValue(forKey: id) { s.update(user) { $0.digest = nil } }
        }
    }

    /// `count` pending messages joined the digest.
    func joined(_ count: Int, to id: Int64) {
        state.withLock { s in
            guard let user = s.userOfDigest[id], var d = s.knownDigest(of: user) else { return }
            d.pendingCount += count
            s.facts[user]?.digest = .some(d)
        }
    }

    /// The same change `updateDigestTiming` makes to the row.
    func retimed(_ id: Int64, lastMessageAt: Timestamp?, dueAt: Timestamp?, urgent: Bool) {
        state.withLock { s in
            guard let user = s.userOfDigest[id], var d = s.knownDigest(of: user) else { return }
            if let lastMessageAt { d.lastMessageAt = lastMessageAt }
            if let dueAt, d.state == .open { d.dueAt = dueAt }
            d.urgent = d.urgent || urgent
            s.facts[user]?.digest = .some(d)
        }
    }

    // MARK: unjoined messages

    /// A read found no pending message of `user` outside a digest.
    func remember(noUnjoinedOf user: String) {
        state.withLock { s in
            s.makeRoomForFacts(of: user)
            s.facts[user, default: UserFacts()].noUnjoined = true
        }
    }

    /// A message to `user` was stored, outside a digest until it joins one.
    func insertedMessage(to user: String) { state.withLock { s in s.update(user) { $0.noUnjoined = false } } }

    // MARK: tombstones

    var anyTombstone: Bool? { state.withLock { $0.anyTombstone } }

    func remember(anyTombstone: Bool?) { state.withLock { $0.anyTombstone = anyTombstone } }

    /// Entries held now, for tests and the bench.
    var counts: (users: Int, activeDigests: Int) {
        state.withLock { s in
            (s.users.count, s.facts.values.reduce(0) { n, f in
                if case .none = f.digest { return n }
                return n + 1
            })
        }
    }
}

/// The writer's cache outside a database, for `roundup-bench`: filled as ingest fills it, to
/// measure what it holds and costs at a given number of users.
public struct WriterCacheSample: Sendable {
    private let cache = SQLiteWriterCache()

    public init() {}

    /// Caches, for each of `users` users, its row (the id `id(i)`, a 28-character openid and a
    /// name) and an open digest, as a message to each would, and "nothing unjoined", as a Logout
    /// with nothing to join would (with an id string of its own, as a separate callback's is);
    /// returns the entries held after.
    @discardableResult
    public func fill(users: Int, id: (Int) -> String) -> (users: Int, activeDigests: Int) {
        let now = Timestamp(milliseconds: 1_700_000_000_000)
        for i in 0..<users {
            let user = id(i)
            let openid = "o" + String(repeating: "x", count: 27 - String(i).count) + String(i)
            cache.remember(user: user, User(imUserID: user, openid: openid, name: "家长\(i)", createdAt: now, updatedAt: now))
            cache.remember(activeDigestOf: user, ActiveDigest(
                id: Int64(i + 1), state: .open, reason: nil, windowStartAt: now, lastMessageAt: now, dueAt: now, urgent: false, pendingCount: 1))
            cache.remember(noUnjoinedOf: id(i))
        }
        return cache.counts
    }
}
