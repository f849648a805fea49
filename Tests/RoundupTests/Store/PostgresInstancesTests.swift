import Foundation
import Testing
@testable import Roundup

/// Several instances on one PostgreSQL database: claims, fencing and dead-instance reaping,
/// judged by the database's clock.
@Suite("PostgreSQL: several instances")
struct PostgresInstancesTests {
    /// Two instances on one fresh database, each registered with a live heartbeat.
    static func twoInstances(timeout: Double = 15) async throws -> (a: RoundupStore, b: RoundupStore)? {
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
        guard let (a, b) = try await Self.twoInstances(timeout: 10) else { return }
        defer { a.postgres?.shutdown(); b.postgres?.shutdown() }
        try await Self.openDue(a, users: 2)
        let claimed = try await a.claimDueDigests(now: t0 + 1, limit: 2).map(\.id)
        #expect(claimed.count == 2)
        #expect(try await a.write { tx in try tx.markSending(claimed[0], template: "T", body: "{}", now: t0) })
        // A stops renewing its heartbeat (as a SIGSTOPped process would); B keeps renewing. Wait
        // past the timeout by the database's clock.
        try await a.write { tx in try (tx as? PostgresTransaction)?.run("UPDATE instances SET heartbeat_at = now() - interval '11 seconds' WHERE id = $1", a.postgres!.lease.id) }
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
}
