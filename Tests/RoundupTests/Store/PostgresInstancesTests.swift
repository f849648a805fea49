import Foundation
import Synchronization
import Testing
@testable import Roundup

/// Several instances on one PostgreSQL database: claims, fencing and dead-instance reaping,
/// judged by the database's clock.
@Suite("PostgreSQL: several instances")
struct PostgresInstancesTests {
    /// Two instances on one fresh database, each registered with a live heartbeat. The timeout
    /// is long: a test judges heartbeats it backdates itself, never how fast a loaded machine
    /// gets from one statement to the next (an instance whose heartbeat is older than half the
    /// timeout may not send, and a full parallel test run can stall a test for seconds).
    static func twoInstances(timeout: Double = 3_600) async throws -> (a: RoundupStore, b: RoundupStore)? {
        guard let (a, _, _) = try await EngineUnderTest.postgresql.makeStore(instanceTimeout: timeout) else { return nil }
        let b = try EngineUnderTest.postgresql.reopen(a, instanceTimeout: timeout)
        for s in [a, b] {
            try await s.write { tx in try (tx as? PostgresTransaction)?.heartbeat(host: "test", pid: 1, version: RoundupVersion.current, fingerprint: "f") }
        }
        return (a, b)
    }

    static func openDue(_ store: RoundupStore, users: Int) async throws {
        try await store.write { tx in
            for i in 0..<users { _ = try tx.insertDigest(for: "u\(i)", windowStart: t0, dueAt: t0, now: t0) }
        }
    }

    @Test("two instances claiming at once never get the same digest, and together get all")
    func claimsAreExclusive() async throws {
        guard let (a, b) = try await Self.twoInstances() else { return }
        defer { a.postgres?.shutdown(); b.postgres?.shutdown() }
        try await Self.openDue(a, users: 60)
        let (fromA, fromB) = try await withThrowingTaskGroup(of: (Bool, [Int64]).self) { group in
            for (isA, s) in [(true, a), (false, b)] {
                group.addTask {
                    var got: [Int64] = []
                    got = try await s.claimDueDigests(now: t0 + 1, limit: 40).map(\.id)
                    return (isA, got)
                }
            }
            var x: [Int64] = [], y: [Int64] = []
            for try await (isA, ids) in group { if isA { x = ids } else { y = ids } }
            return (x, y)
        }
        #expect(Set(fromA).isDisjoint(with: fromB))
        #expect(Set(fromA).union(fromB).count == 60)
        #expect(fromA.count <= 40 && fromB.count <= 40)
        // What A holds, B does not get while A is live (an instance sees its own claims again
        // on its next pass; its scheduler skips those in flight).
        #expect(Set(try await b.claimDueDigests(now: t0 + 1, limit: 100).map(\.id)) == Set(fromB))
    }

    @Test("a claim leaves out the digests in flight and does not write again the rows it already holds")
    func claimLeavesInFlightAlone() async throws {
        guard let (a, b) = try await Self.twoInstances() else { return }
        defer { a.postgres?.shutdown(); b.postgres?.shutdown() }
        try await Self.openDue(a, users: 3)
        let ids = try await a.claimDueDigests(now: t0 + 1, limit: 3).map(\.id)
        #expect(ids.count == 3)
        // A row's version (xmin) changes whenever it is written, and a write holds the row's
        // lock until the claim commits, which a send's fencing lock would wait for.
        func versions() async throws -> [Int64] {
            try await a.read { tx in
                try (tx as! PostgresTransaction).run("SELECT xmin::text::bigint AS v FROM digests WHERE id = ANY($1) ORDER BY id", ids).rows.map { try $0.int64("v") }
            }
        }
        let before = try await versions()
        let again = try await a.claimDueDigests(now: t0 + 1, limit: 10, excluding: [ids[0]]).map(\.id)
        #expect(again == Array(ids.dropFirst()))
        #expect(try await versions() == before)
        // B still gets none of them: A's claims stand.
        #expect(try await b.claimDueDigests(now: t0 + 1, limit: 10).isEmpty)
    }

    @Test("the fencing statement finds its digests by primary key, even in a generic plan on stale statistics")
    func fenceByPrimaryKey() async throws {
        // A long timeout: 2,000 digests take a while on a loaded machine, and the heartbeats
        // registered at the start must still count at the end.
        guard let (a, b) = try await Self.twoInstances(timeout: 600) else { return }
        defer { a.postgres?.shutdown(); b.postgres?.shutdown() }
        // A burst of digests the statistics have not seen yet (nothing has analysed the table),
        // all claimed by A: the plainer text's generic plan combined the due and claimed indexes
        // here and visited every one of them for each send batch.
        try await Self.openDue(a, users: 2_000)
        #expect(try await a.claimDueDigests(now: t0 + 1, limit: 2_000).count == 2_000)
        let plan = try await a.write { tx in
            let pg = try #require(tx as? PostgresTransaction)
            try pg.run("SET LOCAL plan_cache_mode = force_generic_plan")
            let arity = PostgresTransaction.SendRights.arity
            try pg.run("PREPARE fence_probe(text, float8, \(Array(repeating: "bigint", count: arity).joined(separator: ", "))) AS \(PostgresTransaction.SendRights.sql)")
            defer { _ = try? pg.run("DEALLOCATE fence_probe") }
            let ids = ([5, 6, 7] + Array(repeating: 7, count: arity - 3)).map(String.init).joined(separator: ", ")
            return try pg.run("EXPLAIN EXECUTE fence_probe('\(a.postgres!.lease.id)', 15, \(ids))").rows
                .map { try $0.string("QUERY PLAN") }.joined(separator: "\n")
        }
        #expect(plan.contains("digests_pkey"), "\(plan)")
        for other in ["digests_due", "digests_claimed", "digests_by_state"] { #expect(!plan.contains(other), "\(plan)") }
        // And the statement still means what it did: A holds the rights, B none.
        let ids = try await a.read { tx in try tx.digestIDs(in: .open) }
        #expect(try await a.write { tx in try tx.holdsSendRight(ids[4]) })
        #expect(try await b.write { tx in try tx.holdsSendRight(ids[4]) } == false)
        // PostgreSQL plans it once per connection: after five runs with a plan for the values
        // at hand, the generic plan costs no more and is kept (with an array of ids it was
        // planned afresh on every run).
        let plans = try await a.write { tx in
            let pg = try #require(tx as? PostgresTransaction)
            for id in ids.prefix(12) { #expect(try pg.holdsSendRight(id)) }
            return try pg.run("""
                SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE '%d.claimed_by = $1) IS TRUE%'
                """).rows.map { (generic: try $0.int64("generic_plans"), custom: try $0.int64("custom_plans")) }
        }
        #expect(plans.count == 1)
        #expect(plans.first.map { $0.custom <= 5 && $0.generic >= 7 } == true, "\(plans)")
    }

    @Test("fencing: only the claimer with a live heartbeat may mark a digest sending")
    func fencing() async throws {
        guard let (a, b) = try await Self.twoInstances() else { return }
        defer { a.postgres?.shutdown(); b.postgres?.shutdown() }
        try await Self.openDue(a, users: 1)
        let id = try #require(try await a.claimDueDigests(now: t0 + 1, limit: 1).first?.id)
        #expect(try await b.write { tx in try tx.markSending(id, template: "T", body: "{}", now: t0) } == false)
        #expect(try await a.write { tx in try tx.markSending(id, template: "T", body: "{}", now: t0) })
        #expect(try await a.read { tx in try tx.digestState(id) } == .sending)
    }

    @Test("a stalled instance is taken for dead: another takes over its claims, its sends become in_doubt, and it can send nothing it lost")
    func deadInstance() async throws {
        guard let (a, b) = try await Self.twoInstances() else { return }
        defer { a.postgres?.shutdown(); b.postgres?.shutdown() }
        try await Self.openDue(a, users: 2)
        let claimed = try await a.claimDueDigests(now: t0 + 1, limit: 2).map(\.id)
        try #require(claimed.count == 2)
        #expect(try await a.write { tx in try tx.markSending(claimed[0], template: "T", body: "{}", now: t0) })
        // A stops renewing its heartbeat (as a SIGSTOPped process would); B keeps renewing. Wait
        // past the timeout by the database's clock.
        try await a.write { tx in try (tx as? PostgresTransaction)?.run("UPDATE instances SET heartbeat_at = now() - interval '3601 seconds' WHERE id = $1", a.postgres!.lease.id) }
        // B renews its own heartbeat (its InstanceHeartbeat would, every timeout/5).
        try await b.write { tx in try (tx as? PostgresTransaction)?.heartbeat(host: "test", pid: 2, version: RoundupVersion.current, fingerprint: "f") }
        let reaped = try await b.recoverInterruptedSendsAsync(now: t0 + 5)
        #expect(reaped == [claimed[0]])
        #expect(try await b.read { tx in try tx.digestState(claimed[0]) } == .inDoubt)
        #expect(try await b.claimDueDigests(now: t0 + 5, limit: 10).map(\.id) == [claimed[1]])
        // A wakes up and renews: what B took over stays B's, so A's send is refused.
        try await a.write { tx in try (tx as? PostgresTransaction)?.heartbeat(host: "test", pid: 1, version: RoundupVersion.current, fingerprint: "f") }
        try await b.write { tx in try (tx as? PostgresTransaction)?.heartbeat(host: "test", pid: 2, version: RoundupVersion.current, fingerprint: "f") }
        #expect(try await a.write { tx in try tx.markSending(claimed[1], template: "T", body: "{}", now: t0) } == false)
        #expect(try await b.write { tx in try tx.markSending(claimed[1], template: "T", body: "{}", now: t0) })
    }

    @Test("a graceful stop releases unstarted claims and leaves the instance list")
    func resign() async throws {
        guard let (a, b) = try await Self.twoInstances() else { return }
        defer { a.postgres?.shutdown(); b.postgres?.shutdown() }
        try await Self.openDue(a, users: 3)
        #expect(try await a.claimDueDigests(now: t0 + 1, limit: 3).count == 3)
        #expect(try await InstanceHeartbeat.liveInstances(b).count == 2)
        try await a.write { tx in try (tx as? PostgresTransaction)?.resign() }
        #expect(try await InstanceHeartbeat.liveInstances(b).map(\.id) == [b.postgres!.lease.id])
        #expect(try await b.claimDueDigests(now: t0 + 1, limit: 10).count == 3)
    }

    @Test("an instance older than the schema refuses to start and names the version it needs")
    func tooOld() async throws {
        guard let (a, _, _) = try await EngineUnderTest.postgresql.makeStore() else { return }
        defer { a.postgres?.shutdown() }
        try await a.write { tx in
            try (tx as? PostgresTransaction)?.run(
                "INSERT INTO roundup_migrations (id, name, requires_version, applied_by_version) VALUES (999, 'future', '99.0.0', '99.0.0')")
        }
        #expect {
            _ = try EngineUnderTest.postgresql.reopen(a)
        } throws: { error in
            "\(error)".contains("needs Roundup 99.0.0 or newer; this is \(RoundupVersion.current)")
        }
    }
    @Test("a stalled peer holding one user's lock fails only the job that needs that user, within lock_timeout, and the rest of the group commit goes on")
    func stalledLockHolder() async throws {
        guard let url = try await PostgresTestServer.freshDatabaseURL() else { return }
        defer { Task { await PostgresTestServer.dropDatabase(url) } }
        let store = try RoundupStore.open(try EngineUnderTest.postgresql.postgresSettings(url), lease: InstanceLease(timeoutSeconds: 15))
        defer { store.postgres?.shutdown() }
        // Another session takes u1's lock and keeps it for 8 s, like an instance that stalled
        // while it worked on u1 (the user lock is the one activeDigest takes).
        let holder = Task { try await PostgresTestServer.psql(url, ["SELECT pg_advisory_lock(hashtextextended('u1', 0)), pg_sleep(8)"]) }
        let held = try await poll(timeout: 20) {
            try await store.read { tx in
                try (tx as? PostgresTransaction)?.one("""
                    SELECT count(*) AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                    WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database() AND l.pid <> pg_backend_pid()
                    """)?.int64("n") ?? 0
            } > 0
        }
        try #require(held, "the other session never took the lock")
        let committer = GroupCommitter(store: store)
        let started = ContinuousClock.now
        async let blocked: Result<Void, any Error> = {
            do {
                try await committer.perform(timeout: .seconds(20)) { tx in _ = try tx.activeDigest(for: "u1") }
                return .success(())
            } catch { return .failure(error) }
        }()
        async let free: Duration = {
            try await committer.perform(timeout: .seconds(20)) { tx in
                _ = try tx.activeDigest(for: "u2")
                _ = try tx.insertDigest(for: "u2", windowStart: t0, dueAt: t0 + 60_000, now: t0)
            }
            return ContinuousClock.now - started
        }()
        let (u1, u2After) = try await (blocked, free)
        // Without lock_timeout both would wait the 8 s the holder keeps the lock.
        #expect(u2After < .seconds(5), "u2's job waited \(u2After) for another user's lock")
        switch u1 {
        case .success: Issue.record("u1's job ran although another session held u1's lock")
        case .failure(let error): #expect(RoundupStore.isLockContention(error), "\(error)")
        }
        #expect(try await store.read { tx in try tx.activeDigest(for: "u2") } != nil)
        _ = try? await holder.value
    }
    @Test("a statement on a connection the server has closed fails at once instead of waiting for ever, and the next transaction gets a new connection")
    func closedConnectionFails() async throws {
        guard let (store, _, remove) = try await EngineUnderTest.postgresql.makeStore(poolSize: 2) else { return }
        let finished = Mutex<Result<Void, any Error>?>(nil)
        // The server ends this session 200 ms into its idle transaction; the next statement is sent
        // on a closed connection. Before the fix it waited for an answer for ever.
        let attempt = Task {
            do {
                try await store.write { tx in
                    let pg = try #require(tx as? PostgresTransaction)
                    try pg.run("SET LOCAL idle_in_transaction_session_timeout = 200")
                    _ = DispatchSemaphore(value: 0).wait(timeout: .now() + 1.5)
                    try pg.run("SELECT 1")
                }
                finished.withLock { $0 = .success(()) }
            } catch {
                finished.withLock { $0 = .failure(error) }
            }
        }
        let done = try await poll(timeout: 30) { finished.withLock { $0 != nil } }
        try #require(done, "the statement on the closed connection is still waiting after 30 s")
        _ = await attempt.value
        switch finished.withLock({ $0 }) {
        case .failure(let error): #expect(RoundupStore.explain(error).contains("connection"), "\(error)")
        default: Issue.record("the statement on a closed connection succeeded")
        }
        #expect(try await store.read { tx in try tx.activeDigest(for: "u1") } == nil, "the store did not recover")
        remove()
    }
}
