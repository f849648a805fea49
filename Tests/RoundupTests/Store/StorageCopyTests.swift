import Foundation
import GRDB
import Testing

@testable import Roundup

/// What `StorageCopyTests.populate` put in the SQLite file, by id.
struct CopyFixture: Sendable {
    var openDigest: Int64
    var sentDigest: Int64
    var sendingDigest: Int64
    var heldDigest: Int64
    var groupMessage: Int64
    var pendingGroupMessage: Int64
    var recipients: [String]
    var digests: [Int64] { [openDigest, sentDigest, sendingDigest, heldDigest] }
    /// A C2C message stored in the file, to offer again after the copy.
    var storedMessage: NewMessage
    var storedGroupMessage: NewGroupMessage
}

@Suite("roundup storage copy: SQLite into PostgreSQL")
struct StorageCopyTests {
    static let sentMsgID = "2415919104"

    /// A database as a running service leaves it: users and credits (with the applied event
    /// keys), an open digest with joined messages, a sent digest with its log and sent event, a
    /// digest cut off while sending, a held one, group messages (fanned out and pending) with
    /// per-member copies, read marks, a tombstone and a recalled message whose text is erased,
    /// send pauses and the access token. Text includes CJK and emoji.
    static func populate(_ store: RoundupStore) async throws -> CopyFixture {
        try await store.write { tx in
            let users = [
                User(imUserID: "parent_1", openid: "o_parent_1", name: "王小明家长", profile: "vip", createdAt: t0, updatedAt: t0),
                User(imUserID: "parent_2", openid: "o_parent_2", name: "Ana", profile: nil, createdAt: t0, updatedAt: t0 + 5),
                User(imUserID: "parent_3", openid: "o_parent_3", name: nil, profile: nil, createdAt: t0, updatedAt: t0),
                User(imUserID: "Zoë_parent", openid: nil, name: "Zoë 🌷", profile: nil, createdAt: t0, updatedAt: t0),
                User(imUserID: "teacher_1", openid: nil, name: "李老师", profile: nil, createdAt: t0, updatedAt: t0),
            ]
            for u in users { try tx.saveUser(u) }
            _ = try tx.applyCredit(openid: "o_parent_1", templateID: "TPL1", change: .add(3), eventKey: "push:o_parent_1:1700000000", now: t0)
            _ = try tx.applyCredit(openid: "o_parent_2", templateID: "TPL1", change: .subscribe, eventKey: "admin:idem-7", now: t0)
            _ = try tx.applyCredit(openid: "o_parent_3", templateID: "TPL1", change: .add(1), eventKey: nil, now: t0)
            _ = try tx.applyCredit(openid: "o_parent_3", templateID: "TPL2", change: .revoke, eventKey: "push:o_parent_3:1700000001", now: t0)

            // An open digest with two joined messages (one urgent) and an unjoined one for an online user.
            let open = try tx.openDigest(for: "parent_1", windowStart: t0, dueAt: t0 + 600_000, now: t0, note: "first message")
            let m1 = try #require(try tx.insertMessage(NewMessage(
                msgKey: "k-1", recipient: "parent_1", sender: "teacher_1", msgTime: 1_764_000_000, receivedAt: t0, summary: "明天带水彩笔 🎨")))
            let m2 = try #require(try tx.insertMessage(NewMessage(
                msgKey: "k-2", recipient: "parent_1", sender: "teacher_1", msgTime: 1_764_000_010, receivedAt: t0 + 10_000,
                summary: "Field trip: bring \"lunch\"\nand a hat", urgent: true)))
            try tx.join(messages: [m1, m2], to: open)
            try tx.updateDigestTiming(open, lastMessageAt: t0 + 10_000, dueAt: t0 + 60_000, urgent: true, now: t0 + 10_000)
            let unjoined = NewMessage(msgKey: "k-online", recipient: "Zoë_parent", sender: "teacher_1", msgTime: 1_764_000_020,
                                      receivedAt: t0 + 20_000, summary: "seen live")
            _ = try tx.insertMessage(unjoined)

            // A sent digest: its message delivered, its log, the msgid and WeChat's sent event.
            let sent = try tx.openDigest(for: "parent_2", windowStart: t0, dueAt: t0 + 1000, now: t0, note: "first message")
            let m3 = try #require(try tx.insertMessage(NewMessage(
                msgKey: "k-3", recipient: "parent_2", sender: "teacher_1", msgTime: 1_764_000_030, receivedAt: t0, summary: "Homework")))
            try tx.join(messages: [m3], to: sent)
            #expect(try tx.markSending(sent, template: "TPL1", body: "{\"touser\":\"o_parent_2\"}", now: t0 + 1000))
            try tx.setResult(sent, errcode: "0", errmsg: "ok", msgid: sentMsgID)
            #expect(try tx.moveDigest(sent, from: .sending, to: .sent, now: t0 + 1200))
            try tx.finishMessages(ofDigest: sent, status: .delivered, now: t0 + 1200)
            _ = try tx.recordSentEvent(SentEventRecord(msgID: sentMsgID, openid: "o_parent_2", templateID: "TPL1", errorCode: 0,
                                                       errorStatus: "success", createTime: 1_764_000_002), now: t0 + 2000)

            // A digest cut off while sending: it must not be resent after the copy.
            let sending = try tx.openDigest(for: "parent_3", windowStart: t0, dueAt: t0 + 1000, now: t0, note: "first message")
            let m4 = try #require(try tx.insertMessage(NewMessage(
                msgKey: "k-4", recipient: "parent_3", sender: "teacher_1", msgTime: 1_764_000_040, receivedAt: t0, summary: "Exam on Friday")))
            try tx.join(messages: [m4], to: sending)
            #expect(try tx.markSending(sending, template: "TPL1", body: "{\"touser\":\"o_parent_3\"}", now: t0 + 1000))

            // A digest held for an unbound user.
            let held = try tx.openDigest(for: "Zoë_parent", windowStart: t0, dueAt: t0 + 1000, now: t0, note: "first message")
            #expect(try tx.moveDigest(held, from: .open, to: .held, reason: .unbound, now: t0 + 1000, note: "no openid bound"))

            // Group messages: one fanned out to two members, one still pending.
            let group = NewGroupMessage(groupID: "@TGS#class3", msgSeq: 77, groupType: "Public", sender: "teacher_1", msgTime: 1_764_000_050,
                                        receivedAt: t0 + 50_000, summary: "@王小明家长 请签字", atAll: false, mentions: ["parent_1", "parent_2"], urgent: true)
            let gid = try #require(try tx.insertGroupMessage(group))
            let copy1 = try #require(try tx.insertMessage(
                NewMessage(msgKey: "", recipient: "parent_1", sender: "teacher_1", msgTime: 1_764_000_050, receivedAt: t0 + 50_000,
                           summary: "@王小明家长 请签字", urgent: true), senderNameCard: "李老师（班主任）", groupMessageID: gid))
            try tx.join(messages: [copy1], to: open)
            _ = try tx.insertMessage(
                NewMessage(msgKey: "", recipient: "Zoë_parent", sender: "teacher_1", msgTime: 1_764_000_050, receivedAt: t0 + 50_000,
                           summary: "@王小明家长 请签字"), senderNameCard: nil, groupMessageID: gid)
            try tx.finishFanout(gid, state: "done", at: t0 + 51_000)
            let pendingGroup = try #require(try tx.insertGroupMessage(NewGroupMessage(
                groupID: "@TGS#class3", msgSeq: 78, groupType: "Public", sender: "teacher_1", msgTime: 1_764_000_060,
                receivedAt: t0 + 60_000, summary: "all hands", atAll: true, mentions: [], urgent: false)))

            // Read marks, a recalled message with its text erased, a tombstone for a late one.
            try tx.setReadMark(recipient: "parent_1", peer: "teacher_1", lastReadTime: 1_764_000_005)
            try tx.setReadMark(recipient: "Zoë_parent", peer: "@TGS#class3", lastReadTime: 1_764_000_055)
            let recalled = try #require(try tx.insertMessage(NewMessage(
                msgKey: "k-recalled", recipient: "parent_2", sender: "teacher_1", msgTime: 1_764_000_070, receivedAt: t0 + 70_000, summary: "oops")))
            try tx.setStatus(of: [recalled], to: .recalled, at: t0 + 71_000, eraseText: true)
            try tx.addTombstone(msgKey: "k-late", to: "parent_1", expiresAt: t0 + 86_400_000)

            // Sending pauses and the access token.
            try tx.setSendPause(.quota, until: t0 + 86_400_000, reason: "45009 quota", now: t0)
            try tx.setSendPause(.template("TPL2"), until: nil, reason: "40037 template id", now: t0)
            try tx.saveAccessToken("ACCESS_TOKEN_abc", expiresAt: t0 + 7_200_000, now: t0)

            return CopyFixture(
                openDigest: open, sentDigest: sent, sendingDigest: sending, heldDigest: held, groupMessage: gid,
                pendingGroupMessage: pendingGroup, recipients: ["parent_1", "parent_2", "parent_3", "Zoë_parent"],
                storedMessage: unjoined, storedGroupMessage: group)
        }
    }

    /// Row counts of every copied table, read with each engine's own SQL.
    static func sqliteCounts(_ store: RoundupStore) throws -> [String: Int] {
        try store.sqlite!.writer.read { db in
            try Dictionary(uniqueKeysWithValues: CopyTable.all.map { ($0.name, try Int.fetchOne(db, sql: "SELECT count(*) FROM \($0.name)") ?? -1) })
        }
    }

    static func postgresCounts(_ store: RoundupStore) async throws -> [String: Int] {
        try await store.read { tx in
            let pg = try #require(tx as? PostgresTransaction)
            return try Dictionary(uniqueKeysWithValues: (CopyTable.all.map(\.name) + ["instances"]).map {
                ($0, Int(try #require(try pg.one("SELECT count(*) AS n FROM \($0)")).int64("n")))
            })
        }
    }

    /// A populated SQLite file and a fresh PostgreSQL store, or nil when PostgreSQL tests are skipped.
    static func setUp() async throws -> (source: TempStore, fixture: CopyFixture, target: RoundupStore)? {
        guard let url = try await PostgresTestServer.freshDatabaseURL() else { return nil }
        let source = try TempStore()
        let fixture = try await populate(source.store)
        let target = try RoundupStore.open(EngineUnderTest.postgresql.postgresSettings(url))
        return (source, fixture, target)
    }

    @Test("every table arrives row for row: ids, references, flags, text and the duplicate guards; a sending digest becomes in_doubt")
    func copiesEverything() async throws {
        guard let (source, f, target) = try await Self.setUp() else { return }
        defer { source.remove(); target.postgres?.shutdown() }
        let copySource = try SQLiteCopySource.open(path: source.path)
        let result = try await StorageCopy.run(from: copySource, to: target, now: t0 + 900_000)

        // The report: every table in order, the counts the SQLite file has, a SHA-256 each.
        let counts = try Self.sqliteCounts(source.store)
        #expect(result.tables.map(\.table) == CopyTable.all.map(\.name))
        for t in result.tables {
            #expect(t.rows == counts[t.table], "\(t.table)")
            #expect(t.checksum.count == 64 && t.checksum.allSatisfy(\.isHexDigit), "\(t.table)")
        }
        #expect(counts["messages"] == 8 && counts["users"] == 5 && counts["credits"] == 4 && counts["applied_events"] == 3)
        #expect(result.inDoubt == [f.sendingDigest])

        // The target's counts: the same, plus the one log line of the in_doubt change.
        var expected = counts
        expected["digest_events", default: 0] += 1
        expected["instances"] = 0
        #expect(try await Self.postgresCounts(target) == expected)

        let s = source.store
        let sameOnBoth: @Sendable (any StoreTransaction) throws -> String = { tx in
            var out: [String] = []
            out.append("\(try tx.users().sorted { $0.imUserID < $1.imUserID })")
            out.append("\(try tx.credits(openid: nil))")
            for r in f.recipients { out.append("\(try tx.messages(recipient: r))") }
            for d in [f.openDigest, f.sentDigest, f.heldDigest] {
                out.append("\(String(describing: try tx.digest(d)))")
                out.append("\(try tx.digestLog(d).map { "\($0.at) \($0.kind) \($0.detail)" })")
                out.append("\(try tx.digestMessages(d))")
                out.append("\(String(describing: try tx.digestTimingFacts(d)))")
            }
            out.append("\(try tx.digestSummaries(.states(DigestState.allCases.filter { $0 != .sending && $0 != .inDoubt }, user: nil), limit: nil))")
            out.append("\(try tx.pendingGroupMessages(limit: 10))")
            out.append("\(String(describing: try tx.groupMessage(groupID: "@TGS#class3", msgSeq: 77)))")
            out.append("\(String(describing: try tx.readMark(recipient: "parent_1", peer: "teacher_1")))")
            out.append("\(String(describing: try tx.readMark(recipient: "Zoë_parent", peer: "@TGS#class3")))")
            out.append("\(try tx.sendPauses().entries.map { "\($0.key.rawValue) \(String(describing: $0.value))" }.sorted())")
            out.append("\(String(describing: try tx.cachedAccessToken()))")
            out.append("\(String(describing: try tx.sentEvent(openid: "o_parent_2", templateID: "TPL1", createdBetween: 0, and: .max)))")
            out.append("\(String(describing: try tx.digestID(msgid: Self.sentMsgID)))")
            return out.joined(separator: "\n")
        }
        let before = try await s.read(sameOnBoth)
        let after = try await target.read(sameOnBoth)
        #expect(after == before)
        #expect(before.contains("王小明家长") && before.contains("李老师（班主任）") && before.contains("Zoë 🌷"))

        // The duplicate guards hold in the target: nothing stored twice, nothing recalled revived.
        let guards = try await target.write { tx in
            [
                try tx.storeMessage(f.storedMessage, digest: nil),
                try tx.insertGroupMessage(f.storedGroupMessage) != nil,
                try tx.markApplied(eventKey: "push:o_parent_1:1700000000", now: t0),
                try tx.markApplied(eventKey: "admin:idem-7", now: t0),
                try tx.insertSentEvent(SentEventRecord(msgID: Self.sentMsgID, openid: "o_parent_2", templateID: "TPL1", errorCode: 0,
                                                       errorStatus: "success", createTime: 1_764_000_002), now: t0),
                try tx.isTombstoned(msgKey: "k-late", now: t0) == false,
                try tx.messageExists(msgKey: "k-recalled") == false,
            ]
        }
        #expect(guards == Array(repeating: false, count: 7))
        #expect(try await target.read { tx in try tx.messages(recipient: "parent_2").first { $0.msgKey == "k-recalled" }?.hasText } == false)

        // The sending digest is in_doubt, with the reason in its log; nothing else changed on it.
        let (was, now, log) = try await (
            s.read { tx in try tx.digest(f.sendingDigest) }, target.read { tx in try tx.digest(f.sendingDigest) },
            target.read { tx in try tx.digestLog(f.sendingDigest).map { "\($0.kind) \($0.detail)" } })
        #expect(was?.state == .sending)
        #expect(now?.state == .inDoubt)
        #expect(now?.updatedAt == t0 + 900_000)
        #expect(now?.openedAt == was?.openedAt && now?.dueAt == was?.dueAt)
        #expect(log.last?.hasPrefix("state in_doubt: copied from SQLite by roundup storage copy") == true)
        #expect(log.last?.contains("cannot know whether WeChat delivered it") == true)
        #expect(Array(log.dropLast()) == (try await s.read { tx in try tx.digestLog(f.sendingDigest).map { "\($0.kind) \($0.detail)" } }))
        // Not resent: an instance claims the due open digest, never the in_doubt one.
        try await target.write { tx in
            try (tx as? PostgresTransaction)?.heartbeat(host: "test", pid: 1, version: RoundupVersion.current, fingerprint: "f")
        }
        #expect(try await target.claimDueDigests(now: t0 + 10_000_000, limit: 10).map(\.id) == [f.openDigest])
        // The digests_created_open trigger is back on.
        await #expect(throws: (any Error).self) {
            try await target.write { tx in try (tx as? PostgresTransaction)?.run(
                "INSERT INTO digests (im_user_id, state, opened_at, window_start_at, updated_at) VALUES ('x', 'sent', 1, 1, 1)") }
        }
    }

    @Test("after the copy the sequences continue past the copied ids: a new digest, message, log line and group message get fresh ids")
    func sequencesContinue() async throws {
        guard let (source, f, target) = try await Self.setUp() else { return }
        defer { source.remove() }
        _ = try await StorageCopy.run(from: try SQLiteCopySource.open(path: source.path), to: target, now: t0 + 900_000)
        target.postgres?.shutdown()

        // A new store on the database, as `serve` would open it after the move.
        let reopened = try EngineUnderTest.postgresql.reopen(target)
        defer { reopened.postgres?.shutdown() }
        let (digest, message, group, sentEvent) = try await reopened.write { tx in
            let d = try tx.openDigest(for: "fresh_user", windowStart: t0, dueAt: t0 + 1000, now: t0, note: "first message")
            let m = try #require(try tx.insertMessage(NewMessage(
                msgKey: "k-new", recipient: "fresh_user", sender: "teacher_1", msgTime: 1, receivedAt: t0, summary: "new")))
            try tx.join(messages: [m], to: d)
            let g = try #require(try tx.insertGroupMessage(NewGroupMessage(
                groupID: "@TGS#class3", msgSeq: 79, groupType: "Public", sender: "teacher_1", msgTime: 1, receivedAt: t0,
                summary: "next", atAll: false, mentions: [], urgent: false)))
            let e = try tx.insertSentEvent(SentEventRecord(msgID: "999", openid: "o_new", templateID: "TPL1", errorCode: 0,
                                                           errorStatus: nil, createTime: 1), now: t0)
            return (d, m, g, e)
        }
        let maxima = try await reopened.read { tx in
            let pg = try #require(tx as? PostgresTransaction)
            return try ["digests", "messages", "group_messages", "digest_events", "wechat_sent_events"].map {
                try #require(try pg.one("SELECT max(id) AS n FROM \($0)")).int64("n")
            }
        }
        #expect(digest == f.digests.max()! + 1)
        #expect(message == maxima[1] && message > 8)
        #expect(group == f.pendingGroupMessage + 1)
        #expect(sentEvent)
        #expect(try await reopened.read { tx in try tx.digestLog(digest).map(\.kind) } == ["opened"])
        #expect(try await reopened.read { tx in try tx.messageCount(digest: digest) } == 1)
        #expect(maxima[0] == digest && maxima[2] == group)
    }

    @Test("a second copy into the now non-empty target is refused, naming the tables, and changes nothing")
    func refusesNonEmptyTarget() async throws {
        guard let (source, _, target) = try await Self.setUp() else { return }
        defer { source.remove(); target.postgres?.shutdown() }
        _ = try await StorageCopy.run(from: try SQLiteCopySource.open(path: source.path), to: target, now: t0)
        let before = try await Self.postgresCounts(target)
        let digestsBefore = try await target.read { tx in try tx.digestSummaries(.states(DigestState.allCases, user: nil), limit: nil) }

        let error = await #expect(throws: StorageCopyError.self) {
            _ = try await StorageCopy.run(from: try SQLiteCopySource.open(path: source.path), to: target, now: t0 + 5)
        }
        guard case .targetNotEmpty(_, let tables) = error else {
            Issue.record("expected targetNotEmpty, got \(String(describing: error))")
            return
        }
        #expect(tables.first == "users" && tables.contains("messages") && tables.contains("access_token"))
        #expect(error?.description.contains("already holds Roundup data") == true)
        #expect(try await Self.postgresCounts(target) == before)
        #expect(try await target.read { tx in try tx.digestSummaries(.states(DigestState.allCases, user: nil), limit: nil) } == digestsBefore)
    }

    @Test("a target with a single row in any table, even only a live instance, is refused")
    func refusesOneRow() async throws {
        guard let (source, _, target) = try await Self.setUp() else { return }
        defer { source.remove(); target.postgres?.shutdown() }
        try await target.write { tx in
            try (tx as? PostgresTransaction)?.heartbeat(host: "web-1", pid: 42, version: RoundupVersion.current, fingerprint: "f")
        }
        await #expect(throws: StorageCopyError.targetNotEmpty(location: target.postgres!.location, tables: ["instances"])) {
            _ = try await StorageCopy.run(from: try SQLiteCopySource.open(path: source.path), to: target, now: t0)
        }
        #expect(try await Self.postgresCounts(target)["users"] == 0)
    }

    @Test("a value PostgreSQL cannot take (text in an integer column) fails the whole copy: the target stays empty")
    func badValueRollsBack() async throws {
        guard let (source, f, target) = try await Self.setUp() else { return }
        defer { source.remove(); target.postgres?.shutdown() }
        try await source.store.sqlite!.writer.write { db in
            try db.execute(sql: "UPDATE digests SET attempts = 'many' WHERE id = ?", arguments: [f.heldDigest])
        }
        await #expect(throws: StorageCopyError.badValue(table: "digests", column: "attempts", row: "id \(f.heldDigest)", found: "text")) {
            _ = try await StorageCopy.run(from: try SQLiteCopySource.open(path: source.path), to: target, now: t0)
        }
        #expect(try await Self.postgresCounts(target).values.allSatisfy { $0 == 0 })
        // The digests trigger was re-enabled by the rollback: a copy after fixing the file works.
        try await source.store.sqlite!.writer.write { db in
            try db.execute(sql: "UPDATE digests SET attempts = 0 WHERE id = ?", arguments: [f.heldDigest])
        }
        let result = try await StorageCopy.run(from: try SQLiteCopySource.open(path: source.path), to: target, now: t0)
        #expect(result.totalRows > 0)
    }

    @Test("the copy covers exactly the columns both schemas share; PostgreSQL adds only its claim columns and instances")
    func catalogueMatchesSchemas() async throws {
        // SQLite: opening a fresh file as a source checks every table and column against the catalogue.
        let fresh = try TempStore()
        defer { fresh.remove() }
        _ = try SQLiteCopySource.open(path: fresh.path)
        let sqliteTables = try await fresh.store.sqlite!.writer.read { db in
            try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'grdb_migrations'")
        }
        #expect(Set(sqliteTables) == Set(CopyTable.all.map(\.name)).union(CopyTable.sqliteOnly))

        guard let url = try await PostgresTestServer.freshDatabaseURL() else { return }
        let target = try RoundupStore.open(EngineUnderTest.postgresql.postgresSettings(url))
        defer { target.postgres?.shutdown() }
        let columns = try await target.read { tx in
            let pg = try #require(tx as? PostgresTransaction)
            return try pg.run("SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns WHERE table_schema = 'public'")
                .rows.map { (try $0.string("t"), try $0.string("c")) }
        }
        var byTable: [String: Set<String>] = [:]
        for (t, c) in columns { byTable[t, default: []].insert(c) }
        #expect(Set(byTable.keys) == Set(CopyTable.all.map(\.name) + CopyTable.postgresOnly + ["roundup_migrations"]))
        let extras: [String: Set<String>] = ["digests": ["claimed_by"], "group_messages": ["fanout_claimed_by", "fanout_claim_until"]]
        for table in CopyTable.all {
            #expect(byTable[table.name, default: []].subtracting(table.columnNames) == extras[table.name, default: []], "\(table.name)")
            #expect(Set(table.columnNames).isSubset(of: byTable[table.name, default: []]), "\(table.name)")
        }
    }

    @Test("text keys are read back in byte order whatever the target's collation, as SQLite orders them")
    func byteOrderWhateverCollation() async throws {
        guard let (source, _, target) = try await Self.setUp() else { return }
        defer { source.remove(); target.postgres?.shutdown() }
        // An ICU collation orders "parent_1" before "Zoë_parent"; bytes (and SQLite) the other way round.
        let collation = try await target.read { tx in
            try (tx as? PostgresTransaction)?.one("SELECT collname::text AS c FROM pg_collation WHERE collname = 'und-x-icu'")?.string("c")
        }
        guard let collation else {
            print("skipped: the PostgreSQL server has no ICU collation")
            return
        }
        try await target.write { tx in
            let pg = try #require(tx as? PostgresTransaction)
            for (table, column) in [("users", "im_user_id"), ("read_marks", "recipient"), ("read_marks", "peer"), ("credits", "openid")] {
                try pg.run("ALTER TABLE \(table) ALTER COLUMN \(column) TYPE text COLLATE \"\(collation)\"")
            }
        }
        let ordered = try await target.read { tx in
            try (tx as? PostgresTransaction)?.run("SELECT x FROM (VALUES ('parent_1'), ('Zoë_parent')) v(x) ORDER BY x COLLATE \"\(collation)\"")
                .rows.map { try $0.string("x") }
        }
        #expect(ordered == ["parent_1", "Zoë_parent"])
        let result = try await StorageCopy.run(from: try SQLiteCopySource.open(path: source.path), to: target, now: t0)
        #expect(result.tables.first { $0.table == "users" }?.rows == 5)
    }

    @Test("a file whose serve lease is held is refused, and while a copy has the file open serve cannot take it")
    func leaseHeld() async throws {
        let temp = try TempStore()
        defer { temp.remove() }
        var lease: ServeLease? = try ServeLease.acquire(store: temp.store, now: t0)
        #expect(throws: StorageCopyError.serveRunning(path: temp.path, pid: Int(getpid()))) {
            _ = try SQLiteCopySource.open(path: temp.path)
        }
        #expect(StorageCopyError.serveRunning(path: temp.path, pid: 7).description.contains("stop roundup serve first"))
        withExtendedLifetime(lease) {}
        lease = nil

        let source = try SQLiteCopySource.open(path: temp.path)
        #expect(throws: LeaseError.self) { _ = try ServeLease.acquire(store: temp.store, now: t0) }
        withExtendedLifetime(source) {}
    }

    @Test("a missing file, a file that is not SQLite, an SQLite file without Roundup's schema and one from a newer Roundup are refused")
    func notARoundupDatabase() async throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let missing = dir.appendingPathComponent("nope.sqlite").path
        #expect(throws: StorageCopyError.sourceMissing(path: missing)) { _ = try SQLiteCopySource.open(path: missing) }
        #expect(!FileManager.default.fileExists(atPath: missing))

        let text = dir.appendingPathComponent("notes.txt").path
        try String(repeating: "not a database\n", count: 100).write(toFile: text, atomically: true, encoding: .utf8)
        let other = dir.appendingPathComponent("other.sqlite").path
        try await DatabaseQueue(path: other).write { db in try db.execute(sql: "CREATE TABLE things (id INTEGER PRIMARY KEY)") }
        for path in [text, other] {
            do {
                _ = try SQLiteCopySource.open(path: path)
                Issue.record("\(path) was accepted")
            } catch let error as StorageCopyError {
                guard case .notRoundupDatabase(let p, _) = error else {
                    Issue.record("unexpected \(error)")
                    continue
                }
                #expect(p == path)
                #expect(error.description.contains("is not a Roundup SQLite database"))
            }
        }

        let newer = try TempStore()
        defer { newer.remove() }
        try await newer.store.sqlite!.writer.write { db in
            try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v99-from-the-future')")
        }
        #expect(throws: StorageCopyError.sourceNewer(path: newer.path, migration: "v99-from-the-future")) {
            _ = try SQLiteCopySource.open(path: newer.path)
        }
    }

    @Test("the checksum depends on every value, its type and the row order")
    func checksum() {
        func sum(_ rows: [[CopyValue]]) -> String {
            var c = TableChecksum()
            for r in rows { c.add(r) }
            return c.hex
        }
        let base: [[CopyValue]] = [[.integer(1), .text("a"), .bool(true), .null], [.integer(2), .text("b"), .bool(false), .text("")]]
        let variants: [[[CopyValue]]] = [
            [base[1], base[0]],
            [[.integer(1), .text("a"), .bool(false), .null], base[1]],
            [[.integer(1), .text("a"), .bool(true), .text("")], base[1]],
            [[.integer(1), .text("a"), .integer(1), .null], base[1]],
            [[.integer(1), .text("ab"), .bool(true), .null], [.integer(2), .text(""), .bool(false), .text("")]],
            [base[0]],
        ]
        #expect(sum(base) == sum(base))
        #expect(sum(base).count == 64)
        #expect(Set(variants.map(sum) + [sum(base)]).count == variants.count + 1)
        #expect(sum([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }
}
