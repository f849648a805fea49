import Foundation
import Testing

@testable import Roundup

/// The send path's two writes, `startSending` and `recordSent`, are one statement each on
/// PostgreSQL. They must leave exactly what the rule does step by step from the primitives.
@Suite("Send path: start and result in one statement")
struct SendStatementTests {
    static let yaml = """
        digest:
          window: 10m
        """

    /// Two users with the same digest of two messages, claimed for sending, and one credit each.
    static func seed(_ store: RoundupStore) async throws -> (a: Int64, b: Int64) {
        let config = try ConfigLoader(environment: [:]).load(yaml: Self.yaml, source: "test").config
        try await store.write { tx in
            for user in ["a", "b"] {
                try tx.saveUser(User(imUserID: user, openid: "o-\(user)", createdAt: t0, updatedAt: t0))
                _ = try tx.applyCredit(openid: "o-\(user)", templateID: "T", change: .add(2), eventKey: nil, now: t0)
                for n in 1...2 {
                    _ = try GroupCommitBatchTests.ingest(tx, config, key: "\(user)\(n)", to: user)
                }
            }
        }
        let due = try await store.write { tx in try tx.claimDueDigests(now: t0 + 3_600_000, limit: 10) }
        let a = try #require(due.first { $0.imUserID == "a" }?.id), b = try #require(due.first { $0.imUserID == "b" }?.id)
        return (a, b)
    }

    /// What the store holds about one user's digest, its messages and credit, without ids.
    static func picture(_ store: RoundupStore, user: String, digest: Int64) async throws -> [String] {
        try await store.read { tx in
            let s = try #require(try tx.digestSummaries(.id(digest), limit: nil).first)
            let facts = try #require(try tx.digestTimingFacts(digest))
            var lines = [
                "\(s.state) reason=\(s.reason?.rawValue ?? "-") template=\(s.templateID ?? "-") errcode=\(s.errcode ?? "-")",
                "errmsg=\(s.errmsg ?? "-") msgid=\(s.msgid ?? "-") finished=\(s.finishedAt?.milliseconds ?? -1) held=\(s.heldSince?.milliseconds ?? -1)",
                "attempts=\(facts.attempts) sending_at=\(facts.sendingAt?.milliseconds ?? -1) updated=\(facts.updatedAt.milliseconds)",
                "pending=\(try tx.pendingCount(digest: digest)) messages=\(s.messages)",
            ]
            lines += try tx.messages(recipient: user).map { "message \($0.msgKey.map { String($0.dropFirst()) } ?? "-") \($0.status) joined=\($0.digestID == digest)" }
            lines += try tx.digestLog(digest).map { "log \($0.at.milliseconds) \($0.kind): \($0.detail)" }
            lines += try tx.credits(openid: "o-\(user)").map { "credit \($0.templateID) \($0.count) \($0.subscribed) \($0.updatedAt.milliseconds)" }
            return lines.map { $0.replacingOccurrences(of: "o-\(user)", with: "o-X") }
        }
    }

    @Test("one statement each leaves exactly what the rule does step by step: sending, then sent with a credit spent", arguments: EngineUnderTest.allCases)
    func sameAsStepByStep(engine: EngineUnderTest) async throws {
        guard let (store, _, remove) = try await engine.makeStore(instanceTimeout: 3_600, poolSize: 2) else { return }
        defer { remove() }
        let (a, b) = try await Self.seed(store)
        let rendered = (a: try await store.read { tx in try tx.digestMessages(a).map(\.id) },
                        b: try await store.read { tx in try tx.digestMessages(b).map(\.id) })
        let line = "sending: template T"
        let statements = store.postgres?.statementsSent ?? 0
        #expect(try await store.write { tx in
            guard try tx.holdsSendRight(a) else { return false }
            return try tx.startSending(a, rendered: rendered.a, template: "T", body: #"{"touser":"o"}"#, now: t0 + 5, line: line)
        })
        if let pg = store.postgres {
            // BEGIN, the lock, the statement, COMMIT.
            #expect(pg.statementsSent - statements == 4)
        }
        #expect(try await store.write { tx in
            guard try tx.holdsSendRight(b) else { return false }
            return try tx.startSendingStepByStep(b, rendered: rendered.b, template: "T", body: #"{"touser":"o"}"#, now: t0 + 5, line: line)
        })
        let sending = try await Self.picture(store, user: "a", digest: a)
        #expect(sending.first == "sending reason=- template=T errcode=-")
        #expect(sending.contains { $0.hasSuffix("state: sending: template T") }, "\(sending)")
        let stepByStep = try await Self.picture(store, user: "b", digest: b)
        #expect(sending == stepByStep, "differs: \(sending.difference(from: stepByStep).map { "\($0)" })")

        let sent = "sent: errcode 0, msgid 7, 2 message(s)"
        #expect(try await store.write { tx in
            try tx.recordSent(a, msgid: "7", spend: CreditKey(openid: "o-a", templateID: "T"), now: t0 + 9, line: sent)
        })
        #expect(try await store.write { tx in
            try tx.recordSentStepByStep(b, msgid: "7", spend: CreditKey(openid: "o-b", templateID: "T"), now: t0 + 9, line: sent)
        })
        let done = try await Self.picture(store, user: "a", digest: a)
        #expect(done.first == "sent reason=- template=T errcode=0")
        #expect(done.contains("credit T 1 false \((t0 + 9).milliseconds)"), "\(done)")
        #expect(done.filter { $0.hasPrefix("message") }.allSatisfy { $0.contains(" delivered ") }, "\(done)")
        let doneStepByStep = try await Self.picture(store, user: "b", digest: b)
        #expect(done == doneStepByStep, "differs: \(done.difference(from: doneStepByStep).map { "\($0)" })")
    }

    @Test("PostgreSQL: the sends of one batch take their send rights in one statement; a digest this instance has not claimed is still refused")
    func sendRightsTogether() async throws {
        guard let (store, _, remove) = try await EngineUnderTest.postgresql.makeStore(instanceTimeout: 3_600, poolSize: 2) else { return }
        defer { remove() }
        let config = try ConfigLoader(environment: [:]).load(yaml: Self.yaml, source: "test").config
        let (a, b) = try await Self.seed(store)
        // c's digest is due too, but never claimed by this instance.
        _ = try await store.write { tx in try GroupCommitBatchTests.ingest(tx, config, key: "c1", to: "c") }
        let c = try #require(try await store.read { tx in try tx.activeDigest(for: "c") }?.id)
        let rendered = try await store.read { tx in try [a, b, c].map { try tx.digestMessages($0).map(\.id) } }

        let committer = GroupCommitter(store: store)
        let hold = await WriterHold.start(committer)
        let statements = try #require(store.postgres).statementsSent
        let started = Task {
            try await withThrowingTaskGroup(of: (Int64, Bool).self) { group in
                for (id, ids) in zip([a, b, c], rendered) {
                    group.addTask {
                        (id, try await committer.perform(timeout: .seconds(60), hints: WriteHints(users: [], sends: [id])) { tx in
                            try tx.markSending(id, rendered: ids, template: "T", body: "{}", now: t0 + 5)
                        })
                    }
                }
                var all: [Int64: Bool] = [:]
                for try await (id, ok) in group { all[id] = ok }
                return all
            }
        }
        #expect(try await hold.waitForQueue(3), "the sends did not all queue behind the held writer")
        try await hold.release()
        #expect(try await started.value == [a: true, b: true, c: false])
        // The held writer's COMMIT; then BEGIN, the three send rights, a start for a and for b,
        // COMMIT. With one lock statement per send it would be eight.
        let sent = try #require(store.postgres).statementsSent - statements
        #expect(sent == 6, "\(sent) statements")
        #expect(try await store.read { tx in try [a, b, c].map { try tx.digestState($0) } } == [.sending, .sending, .open])
    }

    @Test("the messages of many digests in one read are each digest's own read; a digest with none has no entry", arguments: EngineUnderTest.allCases)
    func manyDigestsRead(engine: EngineUnderTest) async throws {
        guard let (store, _, remove) = try await engine.makeStore(instanceTimeout: 3_600, poolSize: 2) else { return }
        defer { remove() }
        let (a, b) = try await Self.seed(store)
        let empty = try await store.write { tx in
            try tx.insertDigest(for: "c", windowStart: t0, dueAt: t0, now: t0)
        }
        let together = try await store.digestMessagesAsync(ofDigests: [a, b, empty, a])
        let one = try await store.read { tx in try [a, b].map { try tx.digestMessages($0) } }
        #expect(together.count == 2)
        #expect(together[a] == one[0])
        #expect(together[b] == one[1])
        #expect(one.allSatisfy { $0.count == 2 })
        #expect(together[empty] == nil)
    }

    @Test("neither statement changes anything when its check fails: a message joined since the body was rendered, a digest no longer sending", arguments: EngineUnderTest.allCases)
    func refusals(engine: EngineUnderTest) async throws {
        guard let (store, _, remove) = try await engine.makeStore(instanceTimeout: 3_600, poolSize: 2) else { return }
        defer { remove() }
        let (a, _) = try await Self.seed(store)
        let rendered = try await store.read { tx in try tx.digestMessages(a).map(\.id) }
        let before = try await Self.picture(store, user: "a", digest: a)
        // A body rendered from one of the two messages.
        #expect(try await store.write { tx in
            try tx.startSending(a, rendered: [rendered[0]], template: "T", body: "{}", now: t0 + 5, line: "sending")
        } == false)
        // Not sending yet: no result is recorded, no message delivered, no credit spent.
        #expect(try await store.write { tx in
            try tx.recordSent(a, msgid: "7", spend: CreditKey(openid: "o-a", templateID: "T"), now: t0 + 9, line: "sent")
        } == false)
        #expect(try await Self.picture(store, user: "a", digest: a) == before)
        // A spend of a credit row that does not exist leaves a row at 0, as the step-by-step rule does.
        #expect(try await store.write { tx in
            try tx.startSending(a, rendered: rendered.reversed(), template: "T", body: "{}", now: t0 + 5, line: "sending")
        })
        #expect(try await store.write { tx in
            try tx.recordSent(a, msgid: nil, spend: CreditKey(openid: "o-a", templateID: "U"), now: t0 + 9, line: "sent")
        })
        let credits = try await store.read { tx in try tx.credits(openid: "o-a") }.map { "\($0.templateID) \($0.count) \($0.subscribed)" }
        #expect(credits == ["T 2 false", "U 0 false"], "\(credits)")
    }

    @Test("PostgreSQL: a send statement whose first preparation on a connection fails spoils only that transaction; the next one, on a new connection, sends")
    func failedPreparation() async throws {
        // One connection, so the next transaction would get the same one back.
        guard let (store, _, remove) = try await EngineUnderTest.postgresql.makeStore(instanceTimeout: 3_600, poolSize: 1) else { return }
        defer { remove() }
        let (a, _) = try await Self.seed(store)
        let rendered = try await store.read { tx in try tx.digestMessages(a).map(\.id) }
        // The statement is first prepared inside an aborted transaction, so its preparation fails;
        // PostgresNIO keeps that failure for the connection's lifetime.
        await #expect(throws: (any Error).self) {
            try await store.write { tx in
                _ = try? (tx as! PostgresTransaction).run("SELECT 1 / 0")
                return try tx.startSending(a, rendered: rendered, template: "T", body: "{}", now: t0 + 5, line: "sending")
            }
        }
        #expect(try await store.write { tx in
            try tx.startSending(a, rendered: rendered, template: "T", body: "{}", now: t0 + 5, line: "sending")
        })
        #expect(try await store.read { tx in try tx.digestState(a) } == .sending)
    }
}
