import Foundation
import GRDB
import Testing

@testable import Roundup

/// A temp-file store, WAL and all, removed when the test's scope ends.
struct TempStore {
    let dir: URL
    let path: String
    let store: RoundupStore

    init() throws {
        dir = try TestSupport.temporaryDirectory()
        path = dir.appendingPathComponent("data/roundup.sqlite").path
        store = try RoundupStore.open(path: path)
    }

    func remove() { try? FileManager.default.removeItem(at: dir) }
}

let t0 = Timestamp(milliseconds: 1_764_000_000_000)

extension StoreTransaction {
    /// Tests that set up a digest's state: marks it sending as rendered from what is pending now.
    func markSending(_ id: Int64, template: String, body: String, now: Timestamp) throws -> Bool {
        try markSending(id, rendered: try digestMessages(id).map(\.id), template: template, body: body, now: now)
    }
}

@Suite("SQLite store")
struct StoreTests {
    @Test("an empty file migrates to every migration, and reopening is a no-op")
    func migrations() throws {
        let temp = try TempStore()
        defer { temp.remove() }
        #expect(try temp.store.sqlite!.appliedMigrations() == ["v1-initial", "v2-housekeeping-indexes", "v3-constraints-without-in-lists"])
        let again = try RoundupStore.open(path: temp.path)
        #expect(try again.sqlite!.appliedMigrations() == ["v1-initial", "v2-housekeeping-indexes", "v3-constraints-without-in-lists"])
        let tables = try temp.store.sqlite!.writer.read { db in
            try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'grdb_%' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        }
        #expect(tables == [
            "access_token", "applied_events", "credits", "digest_events", "digests", "group_messages", "messages", "read_marks",
            "recall_tombstones", "send_pauses", "serve_lease", "users", "wechat_sent_events",
        ])
        let mode = try temp.store.sqlite!.writer.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
        #expect(mode == "wal")
        let fk = try temp.store.sqlite!.writer.read { db in try Int.fetchOne(db, sql: "PRAGMA foreign_keys") }
        #expect(fk == 1)
    }

    @Test("the database file is created 0600 in a 0700 folder")
    func permissions() throws {
        let temp = try TempStore()
        defer { temp.remove() }
        let fm = FileManager.default
        let fileMode = try #require(fm.attributesOfItem(atPath: temp.path)[.posixPermissions] as? Int)
        let dirMode = try #require(fm.attributesOfItem(atPath: (temp.path as NSString).deletingLastPathComponent)[.posixPermissions] as? Int)
        #expect(fileMode & 0o777 == 0o600)
        #expect(dirMode & 0o777 == 0o700)
    }

    @Test("synchronous=full is applied when configured")
    func synchronousFull() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try RoundupStore.open(path: dir.appendingPathComponent("db.sqlite").path, synchronous: .full)
        let level = try store.sqlite!.writer.read { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") }
        #expect(level == 2)
    }

    @Test("an unusable path is a clear error")
    func unusablePath() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let blocker = dir.appendingPathComponent("file")
        try Data("x".utf8).write(to: blocker)
        #expect(throws: StoreError.self) { try RoundupStore.open(path: blocker.appendingPathComponent("db.sqlite").path) }
    }

    @Test("each MsgKey is stored once, even from two connections writing at the same time")
    func msgKeyUnique() async throws {
        let temp = try TempStore()
        defer { temp.remove() }
        let other = try RoundupStore.open(path: temp.path)
        let keys = (0..<50).map { "key_\($0)" }
        let inserted = try await withThrowingTaskGroup(of: Int.self) { group in
            for (i, store) in [temp.store, other, temp.store, other].enumerated() {
                group.addTask {
                    var n = 0
                    for key in keys {
                        let m = NewMessage(msgKey: key, recipient: "parent_\(i)", sender: "teacher", msgTime: 1, receivedAt: t0, summary: "hi")
                        if try store.storeMessage(m) { n += 1 }
                    }
                    return n
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(inserted == keys.count)
        for key in keys { #expect(try temp.store.messageCount(msgKey: key) == 1) }
    }

    @Test("a user has at most one open or held digest, even with concurrent openers")
    func oneActiveDigest() async throws {
        let temp = try TempStore()
        defer { temp.remove() }
        let other = try RoundupStore.open(path: temp.path)
        let results = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<20 {
                let store = i.isMultiple(of: 2) ? temp.store : other
                group.addTask {
                    (try? store.openDigest(for: "parent_1", windowStart: t0, dueAt: t0 + 600_000, now: t0)) != nil
                }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(results.filter { $0 }.count == 1)
        #expect(throws: StoreError.activeDigestExists(user: "parent_1")) {
            try temp.store.openDigest(for: "parent_1", windowStart: t0, dueAt: t0, now: t0)
        }
        // Held still counts as active; a finished digest makes room for a new one.
        let found: Int64? = try await temp.store.sqlite!.writer.read { db in try Int64.fetchOne(db, sql: "SELECT id FROM digests") }
        let id = try #require(found)
        #expect(try temp.store.moveDigest(id, from: .open, to: .held, reason: .unbound, now: t0))
        #expect(throws: StoreError.self) { try temp.store.openDigest(for: "parent_1", windowStart: t0, dueAt: t0, now: t0) }
        #expect(try temp.store.moveDigest(id, from: .held, to: .cancelled, reason: .userOnline, now: t0))
        _ = try temp.store.openDigest(for: "parent_1", windowStart: t0, dueAt: t0, now: t0)
    }

    @Test("state changes are compare-and-set and logged")
    func compareAndSet() throws {
        let store = try RoundupStore.inMemory()
        let id = try store.openDigest(for: "u", windowStart: t0, dueAt: t0 + 1000, now: t0)
        #expect(try store.moveDigest(id, from: .open, to: .sending, now: t0))
        #expect(try store.moveDigest(id, from: .open, to: .sending, now: t0) == false)
        #expect(try store.moveDigest(id, from: .sending, to: .sent, now: t0, note: "msgid 42"))
        #expect(try store.digest(id)?.state == .sent)
        #expect(try store.digestLog(id).map(\.kind) == ["opened", "state", "state"])
        #expect(try store.digestLog(id).last?.detail == "sent: msgid 42")
        #expect(throws: StoreError.illegalTransition(from: .sent, to: .open)) {
            try store.moveDigest(id, from: .sent, to: .open, now: t0)
        }
    }

    /// Every state with a reason it may carry, for building rows in any state.
    static func reason(for state: DigestState) -> String? {
        switch state {
        case .held: return "unbound"
        case .cancelled: return "operator"
        default: return nil
        }
    }

    @Test("the schema's trigger allows exactly the transitions of DigestState.transitions", arguments: DigestState.allCases)
    func stateMachine(from: DigestState) throws {
        let store = try RoundupStore.inMemory()
        for to in DigestState.allCases {
            let allowed = try store.sqlite!.writer.write { db -> Bool in
                try db.execute(sql: "INSERT INTO digests (im_user_id, state, opened_at, window_start_at, due_at, updated_at) VALUES ('u\(to.rawValue)', 'open', 0, 0, 0, 0)")
                let id = db.lastInsertedRowID
                // Bring the row to `from` with the trigger lifted, then put the migrated trigger back.
                if from != .open {
                    try db.execute(sql: "DROP TRIGGER digests_state_machine")
                    try db.execute(sql: "UPDATE digests SET state = ?, reason = ? WHERE id = ?", arguments: [from.rawValue, Self.reason(for: from), id])
                    try db.execute(sql: "CREATE TRIGGER digests_state_machine BEFORE UPDATE OF state ON digests WHEN NOT (\(Schema.allowedTransitionsSQL)) BEGIN SELECT RAISE(ABORT, 'illegal digest state transition'); END")
                }
                do {
                    try db.execute(sql: "UPDATE digests SET state = ?, reason = ? WHERE id = ?", arguments: [to.rawValue, Self.reason(for: to), id])
                    try db.execute(sql: "DELETE FROM digests WHERE id = ?", arguments: [id])
                    return true
                } catch let e as DatabaseError where e.message?.contains("illegal digest state transition") == true {
                    try db.execute(sql: "DELETE FROM digests WHERE id = ?", arguments: [id])
                    return false
                }
            }
            #expect(allowed == from.canMove(to: to), "\(from.rawValue) → \(to.rawValue)")
        }
    }

    @Test("the trigger in the migrated database is the one the test checks")
    func triggerIsFrozen() throws {
        let store = try RoundupStore.inMemory()
        let sql = try store.sqlite!.writer.read { db in
            try String.fetchOne(db, sql: "SELECT sql FROM sqlite_master WHERE name = 'digests_state_machine'")
        }
        #expect(sql?.contains(Schema.allowedTransitionsSQL) == true)
    }

    @Test("states and reasons are spelled as documented, and a reason must match its state")
    func reasons() throws {
        let store = try RoundupStore.inMemory()
        let id = try store.openDigest(for: "u", windowStart: t0, dueAt: t0, now: t0)
        #expect(throws: StoreError.invalidReason(state: .held, reason: .userOnline)) {
            try store.moveDigest(id, from: .open, to: .held, reason: .userOnline, now: t0)
        }
        #expect(throws: StoreError.invalidReason(state: .held, reason: nil)) {
            try store.moveDigest(id, from: .open, to: .held, reason: nil, now: t0)
        }
        // The schema refuses the same rows on its own, NULL reasons included.
        for (state, reason) in [("held", "user_online"), ("held", nil), ("cancelled", "unbound"), ("cancelled", nil), ("sending", "read")] as [(String, String?)] {
            #expect(throws: (any Error).self) {
                try store.sqlite!.writer.write { db in
                    try db.execute(sql: "UPDATE digests SET state = ?, reason = ? WHERE id = ?", arguments: [state, reason, id])
                }
            }
        }
        #expect(try store.moveDigest(id, from: .open, to: .held, reason: .noCredit, now: t0))
        #expect(try store.digest(id)?.reason == .noCredit)
        #expect(DigestState.allCases.map(\.rawValue) == ["open", "held", "sending", "sent", "dry_run", "cancelled", "expired", "dead", "in_doubt"])
        #expect(DigestReason.allCases.map(\.rawValue) == ["unbound", "no_credit", "config_error", "user_online", "read", "recalled", "operator"])
    }
}

@Suite("Users in the store")
struct UserStoreTests {
    @Test("updates merge: keys left out stay, clear removes")
    func merge() throws {
        let store = try RoundupStore.inMemory()
        try store.updateUser("p1", UserUpdate(openid: .set("o1"), name: .set("王芳")), now: t0)
        let u = try store.updateUser("p1", UserUpdate(profile: .set("clinic")), now: t0 + 1)
        #expect(u.openid == "o1")
        #expect(u.name == "王芳")
        #expect(u.profile == "clinic")
        #expect(u.createdAt == t0)
        #expect(u.updatedAt == t0 + 1)
        let cleared = try store.updateUser("p1", UserUpdate(name: .clear), now: t0 + 2)
        #expect(cleared.name == nil)
        #expect(cleared.openid == "o1")
    }

    @Test("an openid bound to another user is refused")
    func openidConflict() throws {
        let store = try RoundupStore.inMemory()
        try store.updateUser("p1", UserUpdate(openid: .set("o1")), now: t0)
        #expect(throws: StoreError.openidBoundElsewhere(openid: "o1", boundTo: "p1")) {
            try store.updateUser("p2", UserUpdate(openid: .set("o1")), now: t0)
        }
        #expect(try store.user("p2") == nil)
    }

    @Test("unbinding keeps the user and clears the openid; unknown users give nil")
    func unbind() throws {
        let store = try RoundupStore.inMemory()
        try store.updateUser("p1", UserUpdate(openid: .set("o1"), name: .set("王芳")), now: t0)
        let u = try #require(try store.unbindUser("p1", now: t0))
        #expect(u.openid == nil)
        #expect(u.name == "王芳")
        #expect(try store.unbindUser("nobody", now: t0) == nil)
        try store.updateUser("p2", UserUpdate(openid: .set("o1")), now: t0)
    }

    @Test("a roster import creates, updates and lets openids swap inside one file")
    func rosterImport() throws {
        let store = try RoundupStore.inMemory()
        try store.updateUser("a", UserUpdate(openid: .set("o1"), name: .set("A")), now: t0)
        try store.updateUser("b", UserUpdate(openid: .set("o2"), name: .set("B")), now: t0)
        let result = try store.importRoster([
            RosterEntry(imUserID: "a", openid: "o2", name: "A", profile: nil),
            RosterEntry(imUserID: "b", openid: "o1", name: "B", profile: nil),
            RosterEntry(imUserID: "c", openid: nil, name: "C", profile: nil),
        ], now: t0 + 1)
        #expect(result == RosterImportResult(created: 1, updated: 2, unchanged: 0))
        #expect(try store.user("a")?.openid == "o2")
        #expect(try store.user("b")?.openid == "o1")
        let again = try store.importRoster([RosterEntry(imUserID: "c", openid: nil, name: "C", profile: nil)], now: t0 + 2)
        #expect(again == RosterImportResult(created: 0, updated: 0, unchanged: 1))
    }
}
