import Dispatch
import Foundation
import Testing

@testable import Roundup

/// A group-commit batch whose jobs say what they touch (`WriteHints`): PostgreSQL reads those facts
/// for the whole batch and holds its writes until the end. The digest rules must not notice.
@Suite("Group commit: prepared batches")
struct GroupCommitBatchTests {
    static let yaml = """
        digest:
          window: 10m
          max_messages: 3
          profiles:
            fast:
              window: 1m
        """

    /// Ingests one C2C message as the ingestor does: tombstone, recipient's profile, insert, join.
    static func ingest(_ tx: any StoreTransaction, _ config: RoundupConfig, key: String, to user: String, urgent: Bool = false) throws -> String {
        if try tx.isTombstoned(msgKey: key, now: t0) { return "recalled" }
        let policy = config.digest.policy(forProfile: try tx.user(user)?.profile)
        let m = NewMessage(msgKey: key, recipient: user, sender: "teacher", msgTime: 1, receivedAt: t0, summary: "about \(key)", urgent: urgent)
        guard let id = try tx.insertMessage(m) else { return "duplicate" }
        try DigestLifecycle(config: config, now: t0).join(tx, user: user, messages: [id], from: "teacher", windowStart: t0, urgent: urgent, policy: policy)
        return "stored"
    }

    /// The same starting point in each store: u1 has an open digest with one message, u3 has the
    /// `fast` profile, "old" is stored and "gone" was recalled before it arrived.
    static func seed(_ store: RoundupStore, _ config: RoundupConfig) async throws {
        try await store.write { tx in
            try tx.saveUser(User(imUserID: "u3", profile: "fast", createdAt: t0, updatedAt: t0))
            try tx.addTombstone(msgKey: "gone", to: "u2", expiresAt: t0 + 60_000)
            _ = try Self.ingest(tx, config, key: "old", to: "u1")
        }
    }

    static let jobs: [(key: String, user: String, urgent: Bool)] = [
        ("a", "u1", false), ("b", "u2", false), ("c", "u2", false), ("old", "u1", false), ("b", "u2", false),
        ("gone", "u2", false), ("d", "u3", false), ("e", "u1", true), ("f", "u1", false),
    ]

    /// What the store holds about the users, without ids (they differ between stores).
    static func picture(_ store: RoundupStore) async throws -> [String] {
        try await store.read { tx in
            var lines: [String] = []
            for user in ["u1", "u2", "u3"] {
                for m in try tx.messages(recipient: user) {
                    lines.append("\(user) message \(m.msgKey ?? "-") \(m.status) joined=\(m.digestID != nil)")
                }
                for d in try tx.digests(for: user) {
                    let a = try tx.activeDigest(for: user)
                    lines.append("\(user) digest \(d.state) due=\(d.dueAt?.milliseconds ?? -1) window=\(d.windowStartAt.milliseconds) "
                                 + "pending=\(a?.pendingCount ?? -1) urgent=\(a?.urgent ?? false) last=\(a?.lastMessageAt?.milliseconds ?? -1)")
                    lines += try tx.digestLog(d.id).map { "\(user) log \($0.kind): \($0.detail)" }
                }
            }
            return lines
        }
    }

    @Test("a prepared batch of C2C messages leaves exactly what the same jobs leave one transaction each", arguments: EngineUnderTest.allCases)
    func sameAsOneByOne(engine: EngineUnderTest) async throws {
        let config = try ConfigLoader(environment: [:]).load(yaml: Self.yaml, source: "test").config
        guard let (alone, _, removeAlone) = try await engine.makeStore(poolSize: 2) else { return }
        defer { removeAlone() }
        guard let (batched, _, removeBatched) = try await engine.makeStore(poolSize: 2) else { return }
        defer { removeBatched() }
        try await Self.seed(alone, config)
        try await Self.seed(batched, config)

        var aloneOutcomes: [String] = []
        let aloneStatements = alone.postgres?.statementsSent ?? 0
        let committer = GroupCommitter(store: alone)
        for j in Self.jobs {
            aloneOutcomes.append(try await committer.perform(timeout: .seconds(60)) { tx in
                try Self.ingest(tx, config, key: j.key, to: j.user, urgent: j.urgent)
            })
        }

        // All jobs queue behind a held writer, so they share one prepared batch.
        let together = GroupCommitter(store: batched)
        let hold = await WriterHold.start(together)
        let before = together.committedTransactions
        let batchedStatements = batched.postgres?.statementsSent ?? 0
        let outcomes = Task {
            try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for (i, j) in Self.jobs.enumerated() {
                    group.addTask {
                        // In order: each job queues after the one before it.
                        try await Task.sleep(for: .milliseconds(20 * i))
                        let outcome = try await together.perform(timeout: .seconds(60), hints: WriteHints(users: [j.user], msgKeys: [j.key])) { tx in
                            try Self.ingest(tx, config, key: j.key, to: j.user, urgent: j.urgent)
                        }
                        return (i, outcome)
                    }
                }
                var all: [(Int, String)] = []
                for try await o in group { all.append(o) }
                return all.sorted { $0.0 < $1.0 }.map(\.1)
            }
        }
        #expect(try await hold.waitForQueue(Self.jobs.count), "the jobs did not all queue behind the held writer")
        try await hold.release()
        let batchedOutcomes = try await outcomes.value
        #expect(together.committedTransactions - before == 2, "the jobs did not share one transaction")
        if let a = alone.postgres, let b = batched.postgres {
            // One by one, each job costs about eight statements; the batch about ten in all.
            let oneByOne = a.statementsSent - aloneStatements, together = b.statementsSent - batchedStatements
            #expect(together * 4 < oneByOne, "the batch sent \(together) statements, one by one \(oneByOne)")
        }

        #expect(aloneOutcomes == ["stored", "stored", "stored", "duplicate", "duplicate", "recalled", "stored", "stored", "stored"])
        #expect(batchedOutcomes == aloneOutcomes)
        let expected = try await Self.picture(alone)
        #expect(expected.contains { $0.hasPrefix("u1 digest open") && $0.contains("pending=4 urgent=true") }, "\(expected)")
        let got = try await Self.picture(batched)
        #expect(got == expected, "differs: \(got.difference(from: expected).map { "\($0)" })")
    }

    @Test("a job in a prepared batch that asks what the batch did not prepare for sees the batch's earlier writes", arguments: EngineUnderTest.allCases)
    func unpreparedReadSeesHeldWrites(engine: EngineUnderTest) async throws {
        let config = try ConfigLoader(environment: [:]).load(yaml: Self.yaml, source: "test").config
        guard let (store, _, remove) = try await engine.makeStore(poolSize: 2) else { return }
        defer { remove() }
        let seen = try await store.write { tx in
            try tx.prepareBatch([WriteHints(users: ["u1"], msgKeys: ["a"])])
            _ = try Self.ingest(tx, config, key: "a", to: "u1")
            // Not prepared for: the held message and digest are written first, then read.
            let messages = try tx.messages(recipient: "u1").map(\.msgKey)
            let log = try tx.digests(for: "u1").first.map { try tx.digestLog($0.id).map(\.kind) }
            // After that, the batch's facts are gone: the next job reads the database.
            _ = try Self.ingest(tx, config, key: "b", to: "u1")
            try tx.flushBatch()
            return (messages, log)
        }
        #expect(seen.0 == ["a"])
        #expect(seen.1 == ["opened", "message"])
        #expect(try await store.read { tx in try tx.activeDigest(for: "u1")?.pendingCount } == 2)
    }

    @Test("a message that joins a due digest after its messages were read for the body stops the send from starting: the next pass sends it too", arguments: EngineUnderTest.allCases)
    func joinWhileRendering(engine: EngineUnderTest) async throws {
        let config = try ConfigLoader(environment: [:]).load(yaml: Self.yaml, source: "test").config
        // A long instance timeout: the send right needs a live heartbeat, and a loaded machine is slow.
        guard let (store, _, remove) = try await engine.makeStore(instanceTimeout: 3_600, poolSize: 2) else { return }
        defer { remove() }
        _ = try await store.write { tx in try Self.ingest(tx, config, key: "a", to: "u1") }
        // Claimed as the scheduler claims it (on PostgreSQL the send right needs the claim).
        let due = try await store.write { tx in try tx.claimDueDigests(now: t0 + 3_600_000, limit: 10) }
        let id = try #require(due.first?.id)
        let rendered = try await store.read { tx in try tx.digestMessages(id).map(\.id) }
        // Between the read and the mark, another message joins (a batch on PostgreSQL).
        _ = try await store.write { tx in
            try tx.prepareBatch([WriteHints(users: ["u1"], msgKeys: ["b"])])
            let outcome = try Self.ingest(tx, config, key: "b", to: "u1")
            try tx.flushBatch()
            return outcome
        }
        #expect(try await store.write { tx in try tx.markSending(id, rendered: rendered, template: "T", body: "{}", now: t0) } == false,
                "the send started from a body without the message that joined")
        #expect(try await store.read { tx in try tx.activeDigest(for: "u1") }?.pendingCount == 2)
        let again = try await store.read { tx in try tx.digestMessages(id).map(\.id) }
        #expect(again.count == 2)
        #expect(try await store.write { tx in try tx.markSending(id, rendered: again, template: "T", body: "{}", now: t0) })
    }

    @Test("PostgreSQL: a send cannot start while a batch that joins a message to its digest is uncommitted; it waits, sees the message, and does not start")
    func sendWaitsForJoiningBatch() async throws {
        let config = try ConfigLoader(environment: [:]).load(yaml: Self.yaml, source: "test").config
        // A long instance timeout: the send right needs a live heartbeat, and the server ends a
        // session idle in a transaction after half of it.
        guard let (store, _, remove) = try await EngineUnderTest.postgresql.makeStore(instanceTimeout: 3_600, poolSize: 4) else { return }
        defer { remove() }
        _ = try await store.write { tx in try Self.ingest(tx, config, key: "a", to: "u1") }
        let due = try await store.write { tx in try tx.claimDueDigests(now: t0 + 3_600_000, limit: 10) }
        let id = try #require(due.first?.id)
        let rendered = try await store.read { tx in try tx.digestMessages(id).map(\.id) }
        let commit = DispatchSemaphore(value: 0)
        let (joined, joining) = AsyncStream<Void>.makeStream()
        async let ingest = store.write { tx in
            // The batch has read the open digest and joined the message in memory; its writes
            // (and the digest row's update) are not sent yet.
            try tx.prepareBatch([WriteHints(users: ["u1"], msgKeys: ["b"])])
            let outcome = try Self.ingest(tx, config, key: "b", to: "u1")
            joining.yield()
            _ = commit.wait(timeout: .now() + 30)
            try tx.flushBatch()
            return outcome
        }
        for await _ in joined { break }
        async let mark = store.write { tx in
            // Long enough for the check below to see it wait, however loaded the machine.
            try (tx as? PostgresTransaction)?.run("SET LOCAL lock_timeout = '30s'")
            return try tx.markSending(id, rendered: rendered, template: "T", body: "{}", now: t0)
        }
        // The send waits for the batch's share lock on the digest row.
        var waiting = false
        for _ in 0..<200 where !waiting {
            waiting = try await store.read { tx in
                try (tx as? PostgresTransaction)?.one("""
                    SELECT count(*) AS n FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                    WHERE NOT l.granted AND a.datname = current_database()
                    """)?.int64("n") ?? 0
            } > 0
            if !waiting { try await Task.sleep(for: .milliseconds(25)) }
        }
        commit.signal()
        #expect(waiting, "the send did not wait for the uncommitted join")
        #expect(try await ingest == "stored")
        #expect(try await mark == false, "the send started from a body without the message that joined")
        #expect(try await store.read { tx in try tx.digestState(id) } == .open)
    }

    static func hints(_ key: String) -> WriteHints { WriteHints(users: ["u1"], msgKeys: [key]) }

    @Test("when another instance stores a MsgKey of the batch meanwhile, the batch runs again with a savepoint per job: that job is a duplicate, the others are stored")
    func heldWritesFail() async throws {
        let engine = EngineUnderTest.postgresql
        let config = try ConfigLoader(environment: [:]).load(yaml: Self.yaml, source: "test").config
        guard let (store, _, remove) = try await engine.makeStore(poolSize: 2) else { return }
        defer { remove() }
        let other = try engine.reopen(store)
        defer { other.postgres?.shutdown() }
        let committer = GroupCommitter(store: store)
        let firstRuns = CallCounter()
        let hold = await WriterHold.start(committer)
        async let first = committer.perform(timeout: .seconds(60), hints: Self.hints("k1")) { tx in
            firstRuns.increment()
            // After the batch read that k2 is new, another instance stores it.
            try other.write { otx in
                _ = try otx.storeMessage(NewMessage(msgKey: "k2", recipient: "u1", sender: "x", msgTime: 1, receivedAt: t0, summary: "y"), digest: nil)
            }
            return try Self.ingest(tx, config, key: "k1", to: "u1")
        }
        _ = try await hold.waitForQueue(1)
        async let second = committer.perform(timeout: .seconds(60), hints: Self.hints("k2")) { tx in try Self.ingest(tx, config, key: "k2", to: "u1") }
        _ = try await hold.waitForQueue(2)
        async let third = committer.perform(timeout: .seconds(60), hints: Self.hints("k3")) { tx in try Self.ingest(tx, config, key: "k3", to: "u1") }
        #expect(try await hold.waitForQueue(3), "the jobs did not queue behind the held writer, in order")
        try await hold.release()
        let outcomes = try await [first, second, third]
        #expect(outcomes == ["stored", "duplicate", "stored"])
        #expect(firstRuns.value == 2, "the batch did not run again")
        let stored = try await store.read { tx in try tx.messages(recipient: "u1").map { "\($0.msgKey ?? "-") joined=\($0.digestID != nil)" } }
        #expect(stored.sorted() == ["k1 joined=true", "k2 joined=false", "k3 joined=true"])
        #expect(try await store.read { tx in try tx.activeDigest(for: "u1")?.pendingCount } == 2)
    }
}
