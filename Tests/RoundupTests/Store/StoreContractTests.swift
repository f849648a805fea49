import Foundation
import Testing
@testable import Roundup

/// A store of each engine for the contract tests: SQLite in a temporary file, PostgreSQL in a
/// fresh database of the test server (nil, with the reason printed, when PostgreSQL tests are
/// skipped outside CI).
enum EngineUnderTest: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case sqlite, postgresql

    var testDescription: String { rawValue }

    /// A new, empty store, and how to remove it. On PostgreSQL its heartbeat lives an hour unless
    /// a test says otherwise, so that a loaded machine cannot fence its sends in the middle of a test.
    func makeStore(instanceTimeout: Double = 3_600, poolSize: Int = 4) async throws -> (store: RoundupStore, lease: InstanceLease?, remove: @Sendable () -> Void)? {
        switch self {
        case .sqlite:
            let temp = try TempStore()
            return (temp.store, nil, { temp.remove() })
        case .postgresql:
            guard let url = try await PostgresTestServer.freshDatabaseURL() else {
                print("skipped on PostgreSQL: \(PostgresTestServer.skipReason ?? "no server")")
                return nil
            }
            let lease = InstanceLease(timeoutSeconds: instanceTimeout)
            var settings = try postgresSettings(url)
            settings.poolSize = poolSize
            let store = try RoundupStore.open(settings, lease: lease)
            // Registered, as `serve` does before its first claim.
            try await store.write { tx in
                try (tx as? PostgresTransaction)?.heartbeat(host: "test", pid: 1, version: RoundupVersion.current, fingerprint: "f")
            }
            return (store, lease, { store.postgres?.shutdown() })
        }
    }

    /// A second store on the same database (another connection pool, another instance).
    func reopen(_ store: RoundupStore, instanceTimeout: Double = 3_600) throws -> RoundupStore {
        if let path = store.path { return try RoundupStore.open(path: path) }
        guard let engine = store.postgres else { throw StoreError.cannotOpen(path: "?", reason: "no engine") }
        return RoundupStore(engine: try PostgresEngine.open(
            configuration: engine.configuration, location: engine.location, poolSize: 4, lease: InstanceLease(timeoutSeconds: instanceTimeout)))
    }

    func postgresSettings(_ url: String) throws -> StorageSettings {
        var s = StorageSettings()
        s.url = try PostgresURL(parsing: url)
        s.poolSize = 4
        return s
    }
}

@Suite("Store contract, on every engine")
struct StoreContractTests {
    @Test("each MsgKey is stored once, even from two stores writing at the same time", arguments: EngineUnderTest.allCases)
    func msgKeyUnique(engine: EngineUnderTest) async throws {
        guard let (store, _, remove) = try await engine.makeStore() else { return }
        defer { remove() }
        let other = try engine.reopen(store)
        let keys = (0..<40).map { "key_\($0)" }
        let inserted = try await withThrowingTaskGroup(of: Int.self) { group in
            for (i, s) in [store, other, store, other].enumerated() {
                group.addTask {
                    var n = 0
                    for key in keys {
                        let m = NewMessage(msgKey: key, recipient: "parent_\(i)", sender: "teacher", msgTime: 1, receivedAt: t0, summary: "hi")
                        if try await s.write({ tx in try tx.storeMessage(m, digest: nil) }) { n += 1 }
                    }
                    return n
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(inserted == keys.count)
        let counts = try await store.read { tx in try keys.map { try tx.messageCount(msgKey: $0) } }
        #expect(counts == Array(repeating: 1, count: keys.count))
        other.postgres?.shutdown()
    }

    @Test("a user has at most one open or held digest, even with concurrent openers", arguments: EngineUnderTest.allCases)
    func oneActiveDigest(engine: EngineUnderTest) async throws {
        guard let (store, _, remove) = try await engine.makeStore() else { return }
        defer { remove() }
        let other = try engine.reopen(store)
        let opened = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<12 {
                let s = i.isMultiple(of: 2) ? store : other
                group.addTask {
                    (try? await s.write { tx in try tx.insertDigest(for: "parent_1", windowStart: t0, dueAt: t0 + 600_000, now: t0) }) != nil
                }
            }
            return await group.reduce(into: 0) { $0 += $1 ? 1 : 0 }
        }
        #expect(opened == 1)
        await #expect(throws: StoreError.activeDigestExists(user: "parent_1")) {
            try await store.write { tx in try tx.insertDigest(for: "parent_1", windowStart: t0, dueAt: t0, now: t0) }
        }
        let id = try #require(try await store.read { tx in try tx.activeDigest(for: "parent_1")?.id })
        #expect(try await store.write { tx in try tx.moveDigest(id, from: .open, to: .held, reason: .unbound, now: t0) })
        await #expect(throws: StoreError.self) {
            try await store.write { tx in try tx.insertDigest(for: "parent_1", windowStart: t0, dueAt: t0, now: t0) }
        }
        #expect(try await store.write { tx in try tx.moveDigest(id, from: .held, to: .cancelled, reason: .userOnline, now: t0) })
        _ = try await store.write { tx in try tx.insertDigest(for: "parent_1", windowStart: t0, dueAt: t0, now: t0) }
        other.postgres?.shutdown()
    }

    @Test("state changes are compare-and-set and logged; the schema refuses what the state machine forbids",
          arguments: EngineUnderTest.allCases)
    func compareAndSet(engine: EngineUnderTest) async throws {
        guard let (store, _, remove) = try await engine.makeStore() else { return }
        defer { remove() }
        let id = try await store.write { tx in try tx.openDigest(for: "u", windowStart: t0, dueAt: t0 + 1000, now: t0, note: "due") }
        #expect(try await store.write { tx in try tx.moveDigest(id, from: .open, to: .sending, now: t0) })
        #expect(try await store.write { tx in try tx.moveDigest(id, from: .open, to: .sending, now: t0) } == false)
        #expect(try await store.write { tx in try tx.moveDigest(id, from: .sending, to: .sent, now: t0, note: "msgid 42") })
        let log = try await store.read { tx in try tx.digestLog(id).map { "\($0.kind): \($0.detail)" } }
        #expect(log == ["opened: due", "state: sending", "state: sent: msgid 42"])
        // Past the Swift check, straight to the schema: the trigger refuses sent → open.
        await #expect(throws: StoreError.illegalTransition(from: .sent, to: .open)) {
            try await store.write { tx in try tx.setDigestState(id, from: .sent, to: .open, reason: nil, now: t0) }
        }
        // And the CHECK refuses a held digest without a hold reason.
        let other = try await store.write { tx in try tx.insertDigest(for: "v", windowStart: t0, dueAt: t0, now: t0) }
        await #expect(throws: (any Error).self) {
            try await store.write { tx in try tx.setDigestState(other, from: .open, to: .held, reason: nil, now: t0) }
        }
    }

    @Test("users merge, openids stay unique, a roster may swap them", arguments: EngineUnderTest.allCases)
    func users(engine: EngineUnderTest) async throws {
        guard let (store, _, remove) = try await engine.makeStore() else { return }
        defer { remove() }
        _ = try await store.write { tx in try tx.updateUser("a", UserUpdate(openid: .set("o1"), name: .set("王芳")), now: t0) }
        let merged = try await store.write { tx in try tx.updateUser("a", UserUpdate(profile: .set("clinic")), now: t0 + 1) }
        #expect(merged.openid == "o1" && merged.name == "王芳" && merged.profile == "clinic" && merged.createdAt == t0)
        await #expect(throws: StoreError.openidBoundElsewhere(openid: "o1", boundTo: "a")) {
            try await store.write { tx in _ = try tx.updateUser("b", UserUpdate(openid: .set("o1")), now: t0) }
        }
        _ = try await store.write { tx in try tx.updateUser("b", UserUpdate(openid: .set("o2")), now: t0) }
        let result = try await store.write { tx in
            try tx.importRoster([RosterEntry(imUserID: "a", openid: "o2", name: "王芳", profile: "clinic"),
                                 RosterEntry(imUserID: "b", openid: "o1", name: nil, profile: nil),
                                 RosterEntry(imUserID: "c", openid: nil, name: "C", profile: nil)], now: t0 + 2)
        }
        #expect(result == RosterImportResult(created: 1, updated: 2, unchanged: 0))
        #expect(try await store.read { tx in try tx.users().map { "\($0.imUserID)=\($0.openid ?? "-")" } } == ["a=o2", "b=o1", "c=-"])
    }

    @Test("a credit change applies once per event key", arguments: EngineUnderTest.allCases)
    func creditsOnce(engine: EngineUnderTest) async throws {
        guard let (store, _, remove) = try await engine.makeStore() else { return }
        defer { remove() }
        for _ in 0..<3 {
            _ = try await store.applyCreditAsync(openid: "o1", templateID: "T", change: .add(2), eventKey: "push-1", now: t0)
        }
        _ = try await store.applyCreditAsync(openid: "o1", templateID: "T", change: .spend, eventKey: nil, now: t0)
        #expect(try await store.read { tx in try tx.credit(openid: "o1", templateID: "T")?.count } == 1)
        #expect(try await store.read { tx in try tx.statusSnapshot(now: t0).creditsByTemplate } == ["T": 1])
    }

    @Test("messages join a digest, and the send path and the summaries read them back alike", arguments: EngineUnderTest.allCases)
    func joinAndRead(engine: EngineUnderTest) async throws {
        guard let (store, _, remove) = try await engine.makeStore() else { return }
        defer { remove() }
        let digest = try await store.write { tx -> Int64 in
            _ = try tx.updateUser("teacher", UserUpdate(name: .set("李老师")), now: t0)
            _ = try tx.updateUser("p1", UserUpdate(openid: .set("o1")), now: t0)
            let id = try tx.openDigest(for: "p1", windowStart: t0, dueAt: t0 + 1000, now: t0, note: "due")
            var ids: [Int64] = []
            for i in 0..<3 {
                let m = NewMessage(msgKey: "k\(i)", recipient: "p1", sender: "teacher", msgTime: 100 + Int64(i), receivedAt: t0 + Int64(i), summary: "m\(i)")
                if let mid = try tx.insertMessage(m) { ids.append(mid) }
            }
            try tx.join(messages: ids, to: id)
            #expect(try tx.insertMessage(NewMessage(msgKey: "k0", recipient: "p1", sender: "teacher", msgTime: 1, receivedAt: t0, summary: "x")) == nil)
            return id
        }
        let due = try await store.claimDueDigests(now: t0 + 1000, limit: 10)
        #expect(due.map(\.id) == [digest])
        #expect(due.first?.openid == "o1")
        let messages = try await store.digestMessagesAsync(digest)
        #expect(messages.map(\.summary) == ["m0", "m1", "m2"])
        #expect(messages.first?.senderName == "李老师")
        let summary = try #require(try await store.read { tx in try tx.digestSummaries(.active(user: "p1"), limit: nil).first })
        #expect(summary.messages == 3 && summary.senders == ["李老师"] && summary.openidBound && summary.firstAt == t0)
        #expect(try await store.read { tx in try tx.operatorStats().pendingMessages } == 3)
    }

    @Test("expiring a digest's old messages and moving its pending ones touch only its pending messages", arguments: EngineUnderTest.allCases)
    func pendingOfDigest(engine: EngineUnderTest) async throws {
        guard let (store, _, remove) = try await engine.makeStore() else { return }
        defer { remove() }
        let (x, y, ids) = try await store.write { tx -> (Int64, Int64, [Int64]) in
            let x = try tx.openDigest(for: "p1", windowStart: t0, dueAt: t0, now: t0, note: "x")
            let y = try tx.openDigest(for: "p2", windowStart: t0, dueAt: t0, now: t0, note: "y")
            var ids: [Int64] = []
            for (i, at) in [t0, t0 + 10, t0, t0].enumerated() {
                let m = NewMessage(msgKey: "k\(i)", recipient: i == 3 ? "p2" : "p1", sender: "t", msgTime: 1, receivedAt: at, summary: "m")
                ids.append(try #require(try tx.insertMessage(m)))
            }
            try tx.join(messages: Array(ids.prefix(3)), to: x)
            try tx.join(messages: [ids[3]], to: y)
            try tx.setStatus(of: [ids[2]], to: .read, at: t0 + 1)
            return (x, y, ids)
        }
        #expect(try await store.write { tx in try tx.expireMessages(ofDigest: x, receivedBefore: t0 + 5, now: t0 + 20) } == 1)
        #expect(try await store.write { tx in try tx.movePendingMessages(from: x, to: y) } == 1)
        let rows = try await store.read { tx in try tx.messages(recipient: "p1") + tx.messages(recipient: "p2") }
        let byID = Dictionary(uniqueKeysWithValues: rows.map { ($0.id, "\($0.status) \($0.digestID == x ? "x" : $0.digestID == y ? "y" : "-")") })
        #expect(ids.map { byID[$0] } == ["expired x", "pending y", "read x", "pending y"])
        #expect(try await store.read { tx in try tx.pendingCount(digest: y) } == 2)
    }

    @Test("summaries of many digests read together give each digest its own senders, in order of their first message", arguments: EngineUnderTest.allCases)
    func summariesSenders(engine: EngineUnderTest) async throws {
        guard let (store, _, remove) = try await engine.makeStore() else { return }
        defer { remove() }
        let senders: [String: [String]] = ["p1": ["t2", "t1", "t2"], "p2": ["t1"], "p3": []]
        try await store.write { tx in
            _ = try tx.updateUser("t1", UserUpdate(name: .set("李老师")), now: t0)
            for (user, from) in senders.sorted(by: { $0.key < $1.key }) {
                let id = try tx.openDigest(for: user, windowStart: t0, dueAt: t0, now: t0, note: "due")
                var ids: [Int64] = []
                for (i, sender) in from.enumerated() {
                    let m = NewMessage(msgKey: "\(user)-\(i)", recipient: user, sender: sender, msgTime: 100 + Int64(i), receivedAt: t0, summary: "m")
                    if let mid = try tx.insertMessage(m) { ids.append(mid) }
                }
                try tx.join(messages: ids, to: id)
            }
        }
        let all = try await store.read { tx in try tx.digestSummaries(.states([.open], user: nil), limit: nil) }
        #expect(Dictionary(uniqueKeysWithValues: all.map { ($0.imUserID, $0.senders) }) == ["p1": ["t2", "李老师"], "p2": ["李老师"], "p3": []])
    }
}
