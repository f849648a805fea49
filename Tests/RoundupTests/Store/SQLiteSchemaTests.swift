import Foundation
import GRDB
import Testing

@testable import Roundup

@Suite("SQLite schema: constraints without IN lists")
struct SQLiteSchemaTests {
    /// The statements of ingest, fan-out and the send path that write the checked columns.
    static let hotStatements = [
        "INSERT INTO messages (msg_key, recipient, sender, msg_time, received_at, summary) VALUES ('k', 'r', 's', 1, 2, 'x') ON CONFLICT DO NOTHING",
        "INSERT INTO digests (im_user_id, state, opened_at, window_start_at, due_at, updated_at) VALUES ('u', 'open', 1, 1, 1, 1)",
        "UPDATE digests SET state = 'sending', sending_at = 1 WHERE id = 1",
        "UPDATE digests SET flush_requested = 1 WHERE id = 1",
        "UPDATE messages SET status = 'delivered', status_at = 1 WHERE digest_id = 1 AND status = 'pending'",
        "INSERT INTO group_messages (group_id, msg_seq, group_type, sender, msg_time, received_at) VALUES ('g', 1, 'Public', 's', 1, 1) ON CONFLICT DO NOTHING",
    ]

    /// How many temporary b-trees a statement builds each time it runs.
    static func ephemeralTables(_ db: Database, _ sql: String) throws -> Int {
        try Row.fetchAll(db, sql: "EXPLAIN " + sql).filter { ($0["opcode"] as String?) == "OpenEphemeral" }.count
    }

    @Test("no statement that writes a message or a digest builds a temporary b-tree for a constraint or the trigger")
    func noEphemeralTables() throws {
        let store = try RoundupStore.inMemory()
        let counts = try store.sqlite!.writer.read { db in try Self.hotStatements.map { try Self.ephemeralTables(db, $0) } }
        #expect(counts == Array(repeating: 0, count: Self.hotStatements.count))
    }

    @Test("a database from before the rewrite keeps its rows, and its constraints still refuse what they refused")
    func migratesAnEarlierDatabase() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let queue = try DatabaseQueue(path: dir.appendingPathComponent("old.sqlite").path)
        try Schema.migrator.migrate(queue, upTo: "v2-housekeeping-indexes")
        let before = try queue.write { db in
            let count = try Self.ephemeralTables(db, Self.hotStatements[0])
            try db.execute(sql: """
                INSERT INTO digests (id, im_user_id, state, opened_at, window_start_at, due_at, updated_at) VALUES (1, 'u', 'open', 1, 1, 1, 1);
                INSERT INTO messages (msg_key, recipient, sender, msg_time, received_at, summary, digest_id) VALUES ('k1', 'u', 's', 1, 1, 'x', 1);
                INSERT INTO group_messages (group_id, msg_seq, group_type, sender, msg_time, received_at) VALUES ('g', 1, 'Public', 's', 1, 1);
                """)
            return count
        }
        #expect(before == 1, "the earlier schema checks with an IN list")
        try Schema.migrator.migrate(queue)

        let (check, pending, counts) = try queue.read { db in
            (try String.fetchAll(db, sql: "PRAGMA integrity_check"),
             try Int.fetchOne(db, sql: "SELECT count(*) FROM messages WHERE digest_id = 1 AND status = 'pending'"),
             try Self.hotStatements.map { try Self.ephemeralTables(db, $0) })
        }
        #expect(check == ["ok"])
        #expect(pending == 1)
        #expect(counts == Array(repeating: 0, count: Self.hotStatements.count))
        try queue.write { db in
            // Each rewritten constraint still refuses what it refused.
            let refused = [
                "INSERT INTO messages (msg_key, recipient, sender, msg_time, received_at, status) VALUES ('k2', 'u', 's', 1, 1, 'lost')",
                "INSERT INTO digests (im_user_id, state, opened_at, window_start_at, due_at, updated_at) VALUES ('v', 'opened', 1, 1, 1, 1)",
                "UPDATE digests SET flush_requested = 3 WHERE id = 1",
                "UPDATE digests SET state = 'held' WHERE id = 1",
                "UPDATE digests SET state = 'held', reason = 'read' WHERE id = 1",
                "UPDATE digests SET state = 'cancelled', reason = 'unbound' WHERE id = 1",
                "UPDATE group_messages SET fanout_state = 'started'",
                "UPDATE digests SET state = 'sent' WHERE id = 1",
            ]
            for sql in refused {
                #expect(throws: DatabaseError.self, "\(sql)") { try db.execute(sql: sql) }
            }
            // And accepts what it accepted.
            try db.execute(sql: "UPDATE digests SET state = 'cancelled', reason = 'operator' WHERE id = 1")
            try db.execute(sql: "UPDATE messages SET status = 'dropped', status_at = 2 WHERE digest_id = 1")
            try db.execute(sql: "UPDATE group_messages SET fanout_state = 'skipped'")
            try db.execute(sql: "UPDATE digests SET flush_requested = 2 WHERE id = 1")
        }
        // A new connection reads the edited text.
        let again = try DatabaseQueue(path: dir.appendingPathComponent("old.sqlite").path)
        let (fresh, cancelled) = try again.read { db in
            (try Self.ephemeralTables(db, Self.hotStatements[0]), try Int.fetchOne(db, sql: "SELECT count(*) FROM digests WHERE state = 'cancelled'"))
        }
        #expect(fresh == 0)
        #expect(cancelled == 1)
    }
}
