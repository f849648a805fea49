import Foundation
import Testing

@testable import Roundup

/// The SQLite writer's cache of users, active digests and tombstones is only a hint: another
/// connection's commit (the CLI), a rollback, or a write it does not track must never leave it
/// answering what the database no longer holds.
@Suite("SQLite writer cache")
struct SQLiteWriterCacheTests {
    /// The serve's store and a second store on the same file, as the CLI opens it.
    static func twoConnections() throws -> (temp: TempStore, serve: RoundupStore, cli: RoundupStore) {
        let temp = try TempStore()
        return (temp, temp.store, try RoundupStore.open(path: temp.path))
    }

    @Test("a digest the CLI cancels is not joined afterwards: the writer sees the other connection's commit")
    func otherConnectionCancels() throws {
        let (temp, serve, cli) = try Self.twoConnections()
        defer { temp.remove() }
        let id = try serve.write { tx in try tx.insertDigest(for: "u1", windowStart: t0, dueAt: t0 + 60_000, now: t0) }
        // Read through the writer, so that it is cached.
        #expect(try serve.write { tx in try tx.activeDigest(for: "u1")?.id } == id)
        try cli.write { tx in _ = try tx.moveDigest(id, from: .open, to: .cancelled, reason: .operator, now: t0, note: "cli") }
        #expect(try serve.write { tx in try tx.activeDigest(for: "u1") } == nil, "the cancelled digest is still the active one")
        #expect(serve.sqlite?.cache.counts.activeDigests == 1, "the fresh answer (none) is cached again")
    }

    @Test("a binding the CLI makes is seen by the next write, and a user the writer saves replaces the cached one")
    func otherConnectionBinds() throws {
        let (temp, serve, cli) = try Self.twoConnections()
        defer { temp.remove() }
        #expect(try serve.write { tx in try tx.user("p1") } == nil)
        _ = try cli.write { tx in try tx.updateUser("p1", UserUpdate(openid: .set("o1"), profile: .set("kindergarten")), now: t0) }
        #expect(try serve.write { tx in try tx.user("p1")?.profile } == "kindergarten")
        _ = try serve.write { tx in try tx.updateUser("p1", UserUpdate(profile: .set("clinic")), now: t0) }
        #expect(try serve.write { tx in try tx.user("p1")?.profile } == "clinic")
    }

    @Test("a digest just opened is cached as the row the insert wrote, and follows its first join")
    func openedDigestIsCached() throws {
        let temp = try TempStore()
        defer { temp.remove() }
        let store = temp.store
        let cache = try #require(store.sqlite?.cache)
        let id = try store.write { tx in try tx.insertDigest(for: "u1", windowStart: t0, dueAt: t0 + 60_000, now: t0) }
        let opened = try #require(cache.activeDigest(of: "u1") ?? nil, "the new digest is not cached")
        #expect(opened.id == id)
        try store.write { tx in
            let m = NewMessage(msgKey: "k1", recipient: "u1", sender: "t", msgTime: 1, receivedAt: t0, summary: "x")
            let message = try #require(try tx.insertMessage(m))
            try tx.join(messages: [message], to: id)
            try tx.updateDigestTiming(id, lastMessageAt: t0 + 5, dueAt: nil, urgent: true, now: t0 + 5)
        }
        let cached = cache.activeDigest(of: "u1") ?? nil
        cache.clear()
        let read = try store.write { tx in try tx.activeDigest(for: "u1") }
        #expect(cached != nil)
        #expect(cached == read, "the cached digest is not the row")
    }

    @Test("what a rolled-back transaction or savepoint cached is gone")
    func rollback() throws {
        let temp = try TempStore()
        defer { temp.remove() }
        let store = temp.store
        struct Undo: Error {}
        #expect(throws: Undo.self) {
            try store.write { tx in
                let before = try tx.activeDigest(for: "u2")
                #expect(before == nil)
                _ = try tx.insertDigest(for: "u2", windowStart: t0, dueAt: t0, now: t0)
                #expect(try tx.activeDigest(for: "u2") != nil)
                throw Undo()
            }
        }
        #expect(try store.write { tx in try tx.activeDigest(for: "u2") } == nil, "the rolled-back digest is still cached")
        let afterSavepoint = try store.write { tx -> ActiveDigest? in
            do {
                try tx.inSavepoint {
                    _ = try tx.insertDigest(for: "u3", windowStart: t0, dueAt: t0, now: t0)
                    _ = try tx.activeDigest(for: "u3")
                    throw Undo()
                }
            } catch is Undo {}
            return try tx.activeDigest(for: "u3")
        }
        #expect(afterSavepoint == nil, "the digest of the rolled-back savepoint is still cached")
    }

    @Test("the cached pending count and due time follow joins, re-timings and removals exactly")
    func exactFacts() throws {
        let temp = try TempStore()
        defer { temp.remove() }
        let store = temp.store
        let config = try ConfigLoader(environment: [:]).load(yaml: "digest:\n  window: 10m\n", source: "test").config
        let lifecycle = DigestLifecycle(config: config, now: t0)
        let policy = DigestPolicy()
        var ids: [Int64] = []
        for i in 0..<5 {
            try store.write { tx in
                let m = NewMessage(msgKey: "k\(i)", recipient: "u1", sender: "t", msgTime: 1, receivedAt: t0, summary: "x")
                let id = try #require(try tx.insertMessage(m))
                ids.append(id)
                try lifecycle.join(tx, user: "u1", messages: [id], from: "t", windowStart: t0, urgent: i == 3, policy: policy)
            }
        }
        // Two are read in the app: they leave the digest.
        try store.write { tx in
            try tx.setStatus(of: Array(ids.prefix(2)), to: .read, at: t0)
            let d = try #require(try tx.activeDigest(for: "u1"))
            try lifecycle.removed(tx, digests: [d.id, d.id], reason: .read, detail: "read")
        }
        let cached = try store.write { tx in try tx.activeDigest(for: "u1") }
        let fresh = try store.read { tx in try tx.activeDigest(for: "u1") }
        #expect(cached == fresh)
        #expect(cached?.pendingCount == 3)
        #expect(cached?.urgent == true)
    }

    @Test("recall tombstones: skipped while none exists, found once one is added, and forgotten when purged")
    func tombstones() throws {
        let temp = try TempStore()
        defer { temp.remove() }
        let store = temp.store
        #expect(try store.write { tx in try tx.isTombstoned(msgKey: "k", now: t0) } == false)
        #expect(store.sqlite?.cache.anyTombstone == false)
        try store.write { tx in try tx.addTombstone(msgKey: "k", to: "u1", expiresAt: t0 + 1_000) }
        #expect(try store.write { tx in try tx.isTombstoned(msgKey: "k", now: t0) } == true)
        _ = try store.write { tx in try tx.purgeText(finishedBefore: t0, now: t0 + 2_000) }
        #expect(try store.write { tx in try tx.isTombstoned(msgKey: "k", now: t0) } == false)
        // A tombstone another connection adds is seen.
        let cli = try RoundupStore.open(path: temp.path)
        try cli.write { tx in try tx.addTombstone(msgKey: "k2", to: "u1", expiresAt: t0 + 1_000) }
        #expect(try store.write { tx in try tx.isTombstoned(msgKey: "k2", now: t0) } == true)
    }

    @Test("a presence change's facts: known only between transactions, and a stored message makes 'nothing unjoined' unknown")
    func idleFacts() throws {
        let temp = try TempStore()
        defer { temp.remove() }
        let store = temp.store
        let engine = try #require(store.sqlite)
        #expect(engine.idleWriterFacts(user: "u1") == WriterFacts(), "nothing is known before anything was read")
        let (digest, unjoined, during) = try store.write { tx in
            (try tx.activeDigest(for: "u1"), try tx.unjoinedMessages(recipient: "u1"), engine.idleWriterFacts(user: "u1"))
        }
        #expect(digest == nil && unjoined.isEmpty)
        #expect(during == nil, "facts were given out while a write transaction ran")
        #expect(engine.idleWriterFacts(user: "u1") == WriterFacts(activeDigest: false, unjoinedMessages: false))
        try store.write { tx in
            _ = try tx.insertMessage(NewMessage(msgKey: "k1", recipient: "u1", sender: "t", msgTime: 1, receivedAt: t0, summary: "x"))
        }
        #expect(engine.idleWriterFacts(user: "u1")?.unjoinedMessages == nil, "a message stored outside a digest left 'none unjoined'")
        #expect(try store.write { tx in try tx.unjoinedMessages(recipient: "u1").count } == 1)
        #expect(engine.idleWriterFacts(user: "u1")?.unjoinedMessages == nil)
        _ = try store.write { tx in try tx.insertDigest(for: "u1", windowStart: t0, dueAt: t0, now: t0) }
        #expect(engine.idleWriterFacts(user: "u1")?.activeDigest != false, "a new digest left 'no active digest'")

        // Another connection's commit is seen by the next transaction, which drops everything.
        #expect(try store.write { tx in try tx.activeDigest(for: "u2") } == nil)
        #expect(engine.idleWriterFacts(user: "u2")?.activeDigest == false)
        let cli = try RoundupStore.open(path: temp.path)
        _ = try cli.write { tx in try tx.insertDigest(for: "u2", windowStart: t0, dueAt: t0, now: t0) }
        try store.write { _ in }
        #expect(engine.idleWriterFacts(user: "u2")?.activeDigest == nil)

        // A transaction that rolled back leaves nothing known.
        struct Undo: Error {}
        #expect(throws: Undo.self) {
            try store.write { tx in
                _ = try tx.activeDigest(for: "u3")
                throw Undo()
            }
        }
        #expect(engine.idleWriterFacts(user: "u3") == nil)
    }
}
