import Foundation
import Logging
import Synchronization
import Testing

@testable import Roundup

/// A presence batch that cancels several digests must take their row locks in id order, the
/// order an ingest batch share-locks its users' digests in; otherwise the two can wait for each
/// other, and PostgreSQL breaks the cycle after a second by failing one of them.
@Suite("PostgreSQL: presence cancellations lock in id order")
struct PresenceLockOrderTests {
    @Test("a batch cancelling two digests, the later one first in the batch, waits on the lower id and holds nothing above it")
    func cancelsInIdOrder() async throws {
        guard let (a, _, remove) = try await EngineUnderTest.postgresql.makeStore(instanceTimeout: 3_600, poolSize: 4) else { return }
        defer { remove() }
        let b = try EngineUnderTest.postgresql.reopen(a, instanceTimeout: 3_600)
        defer { b.postgres?.shutdown() }
        try await a.write { tx in
            try (tx as? PostgresTransaction)?.heartbeat(host: "test", pid: 1, version: RoundupVersion.current, fingerprint: "f")
            for user in ["u1", "u2"] { _ = try tx.insertDigest(for: user, windowStart: t0, dueAt: t0, now: t0) }
        }
        let due = try await a.claimDueDigests(now: t0 + 1, limit: 10).sorted { $0.id < $1.id }
        try #require(due.count == 2)
        let (low, high) = (due[0], due[1])

        let presence = PresenceMap()
        for user in ["u1", "u2"] { _ = presence.confirm(user: user, online: true) }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let config = RoundupConfig(server: .init(), storage: .init(), wechat: .init(), im: .init(), templates: [], digest: .init())
        let sender = DigestSender(store: a, committer: GroupCommitter(store: a), presence: presence, config: LiveConfig(config),
                                  clock: ManualWallClock(t0.date), metrics: RoundupMetrics(), logger: logger, imAPI: nil, wechat: nil)
        let template = TemplateConfig(id: "T", fields: [])

        // Another transaction share-locks the lower digest, as an ingest batch would, and once the
        // presence batch waits for it, asks for the higher one without waiting.
        let lowLocked = LockedFlag()
        let higherFree = try await withThrowingTaskGroup(of: Bool?.self) { group in
            group.addTask {
                try await b.write { tx -> Bool? in
                    let pg = try #require(tx as? PostgresTransaction)
                    try pg.run("SELECT id FROM digests WHERE id = $1 FOR SHARE", low.id)
                    lowLocked.value.store(true, ordering: .sequentiallyConsistent)
                    var waiting = false, polls = 0
                    while !waiting && polls < 500 {
                        polls += 1
                        waiting = try pg.one("""
                            SELECT count(*) AS n, pg_sleep(0.01) FROM pg_stat_activity
                            WHERE datname = current_database() AND wait_event_type = 'Lock'
                            """)?.int64("n") ?? 0 > 0
                    }
                    guard waiting else { return nil }
                    return (try? pg.inSavepoint { try pg.run("SELECT id FROM digests WHERE id = $1 FOR SHARE NOWAIT", high.id) }) != nil
                }
            }
            group.addTask {
                for _ in 0..<1_000 where !lowLocked.value.load(ordering: .sequentiallyConsistent) { try await Task.sleep(for: .milliseconds(5)) }
                #expect(await sender.confirmPresence([(high, template), (low, template)], cfg: config).isEmpty)
                return nil
            }
            var answer: Bool??
            for try await result in group where result != nil { answer = result }
            return answer
        }
        #expect(higherFree == .some(true), "the presence batch held the higher digest while it waited for the lower one")
        #expect(try await a.read { tx in [try tx.digestState(low.id), try tx.digestState(high.id)] } == [.cancelled, .cancelled])
    }
}

/// Set by one task once a row lock is held; another waits for it.
final class LockedFlag: Sendable {
    let value = Atomic<Bool>(false)
}
