import Foundation
import Logging
import Synchronization
import Testing
@testable import Roundup

/// What instances on one PostgreSQL database tell each other and share: wake-ups and presence
/// over LISTEN/NOTIFY, one access-token fetch, one housekeeper, one fan-out per group message.
@Suite("PostgreSQL: instances coordinate")
struct PostgresCoordinationTests {
    /// Waits (suspending) until `condition` holds or `seconds` pass; returns whether it held.
    static func eventually(_ seconds: Double, _ condition: @Sendable () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return condition()
    }

    // The product promises 1 s; the bound here is wider so that a loaded CI machine does not fail a
    // correct build (a notification normally arrives in a few milliseconds).
    @Test("a credit or a binding committed on one instance wakes the others, and presence travels in batches")
    func notifications() async throws {
        guard let (a, b) = try await PostgresInstancesTests.twoInstances() else { return }
        defer { a.postgres?.shutdown(); b.postgres?.shutdown() }
        let wakesAtB = CallCounter(), wakesAtA = CallCounter()
        let seenAtB = Mutex<[PresenceNote]>([])
        let logger = Logger(label: "test")
        let notifierA = PostgresNotifier(engine: a.postgres!, logger: logger, onWake: { wakesAtA.increment() }, onPresence: { _ in })
        let notifierB = PostgresNotifier(engine: b.postgres!, logger: logger, onWake: { wakesAtB.increment() },
                                         onPresence: { notes in seenAtB.withLock { $0 += notes } })
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await notifierA.run() }
            group.addTask { try await notifierB.run() }
            // Both listeners are up before anything is sent (a notification is not stored).
            #expect(await Self.eventually(20) { notifierA.isListening && notifierB.isListening })
            _ = try await a.applyCreditAsync(openid: "o1", templateID: "T", change: .add(1), eventKey: nil, now: t0)
            #expect(await Self.eventually(5) { wakesAtB.value == 1 })
            _ = try await a.write { tx in try tx.updateUser("p1", UserUpdate(openid: .set("o9")), now: t0) }
            #expect(await Self.eventually(5) { wakesAtB.value == 2 })
            // An instance does not wake itself through the database.
            #expect(wakesAtA.value == 0)
            for i in 0..<300 { notifierA.publish(PresenceNote(user: "user_\(i)_" + String(repeating: "x", count: 40), online: i % 2 == 0, eventTime: Int64(i))) }
            #expect(await Self.eventually(5) { seenAtB.withLock { $0.count } == 300 })
            let notes = seenAtB.withLock { $0 }
            #expect(notes.first == PresenceNote(user: "user_0_" + String(repeating: "x", count: 40), online: true, eventTime: 0))
            #expect(notes.last?.online == false && notes.last?.eventTime == 299)
            group.cancelAll()
        }
    }

    @Test("a credit spent on a send wakes no other instance (it cannot lift a hold); a credit granted does")
    func spendWakesNobody() async throws {
        guard let (a, b) = try await PostgresInstancesTests.twoInstances() else { return }
        defer { a.postgres?.shutdown(); b.postgres?.shutdown() }
        let engine = try #require(a.postgres)
        func statements(_ change: CreditChange) async throws -> Int {
            let before = engine.statementsSent
            _ = try await a.applyCreditAsync(openid: "o1", templateID: "T", change: change, eventKey: nil, now: t0)
            return engine.statementsSent - before
        }
        let grant = try await statements(.add(2))
        let spend = try await statements(.spend)
        // The same reads and writes; a grant adds its NOTIFY.
        #expect(grant == spend + 1, "a grant sent \(grant) statements, a spend \(spend)")
    }

    @Test("presence payloads stay under PostgreSQL's NOTIFY limit and keep every event")
    func payloadSplit() {
        let notes = (0..<500).map { PresenceNote(user: "u\($0)", online: $0 % 3 == 0, eventTime: 1_700_000_000_000 + Int64($0)) }
        let payloads = PostgresNotifier.presencePayloads(notes, from: "me")
        #expect(payloads.count > 1)
        #expect(payloads.allSatisfy { $0.utf8.count <= PostgresNotifier.payloadLimit && $0.hasPrefix("p:me\n") })
        #expect(payloads.map { $0.split(separator: "\n").count - 1 }.reduce(0, +) == 500)
    }

    @Test("two instances whose token ran out fetch one token from WeChat between them, and both use it")
    func oneTokenFetch() async throws {
        guard let (a, b) = try await PostgresInstancesTests.twoInstances() else { return }
        defer { a.postgres?.shutdown(); b.postgres?.shutdown() }
        let api = StubWeChatAPI(grants: [.success(AccessTokenGrant(accessToken: "shared-token", expiresIn: 7200))], latency: .milliseconds(300))
        let logger = Logger(label: "test")
        let managers = [a, b].map { store in
            AccessTokenManager(api: api, appID: "app", secret: "s",
                               cache: StoreAccessTokenCache(store: store, clock: SystemWallClock(), metrics: RoundupMetrics(), logger: logger))
        }
        let tokens = try await withThrowingTaskGroup(of: String.self) { group in
            for m in managers { group.addTask { try await m.token().value } }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(tokens == ["shared-token", "shared-token"])
        #expect(await api.fetches == 1)
    }

    @Test("housekeeping runs on one instance at a time")
    func exclusiveHousekeeping() async throws {
        guard let (a, b) = try await PostgresInstancesTests.twoInstances() else { return }
        defer { a.postgres?.shutdown(); b.postgres?.shutdown() }
        let holding = Atomic<Bool>(false), release = Atomic<Bool>(false)
        async let first: Bool = a.write { tx in
            let got = try tx.tryExclusive(.housekeeping)
            holding.store(true, ordering: .relaxed)
            // On the engine's own thread, not the cooperative pool: keep the lock a moment.
            while !release.load(ordering: .relaxed) { usleep(5_000) }
            return got
        }
        #expect(await Self.eventually(5) { holding.load(ordering: .relaxed) })
        let second = try await b.write { tx in try tx.tryExclusive(.housekeeping) }
        release.store(true, ordering: .relaxed)
        #expect(try await first)
        #expect(second == false)
        #expect(try await b.write { tx in try tx.tryExclusive(.housekeeping) })
    }

    @Test("a group message two instances fan out at once is fanned out by one of them")
    func fanoutOnce() async throws {
        guard let (a, b) = try await PostgresInstancesTests.twoInstances() else { return }
        defer { a.postgres?.shutdown(); b.postgres?.shutdown() }
        let id = try #require(try await a.write { tx in
            try tx.insertGroupMessage(NewGroupMessage(groupID: "g", msgSeq: 1, groupType: "Public", sender: "t", msgTime: 1, receivedAt: t0,
                                                      summary: "hi", atAll: true, mentions: [], urgent: false))
        })
        let results = try await withThrowingTaskGroup(of: Bool.self) { group in
            for s in [a, b] {
                group.addTask {
                    try await s.write { tx in
                        guard try tx.lockPendingFanout(id) else { return false }
                        usleep(200_000)
                        try tx.finishFanout(id, state: "done", at: t0)
                        return true
                    }
                }
            }
            return try await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(results.filter { $0 }.count == 1 && results.count == 2)
    }
}
