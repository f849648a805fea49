import Crypto
import Foundation

/// `roundup storage copy`: an SQLite database copied into an empty PostgreSQL database, in one
/// PostgreSQL transaction (all or nothing). Every table is copied row for row with its ids, so
/// references hold and the duplicate guards (MsgKeys, tombstones, read marks, applied event keys,
/// fan-out progress, send pauses) keep working; the identity sequences then continue past the
/// copied ids. Before it commits, each table is read back in the same order and its count and
/// checksum compared with the SQLite file's. Last, digests that were `sending` become `in_doubt`
/// (the copy cannot know whether WeChat delivered them), each with a line in its decision log.
///
/// `serve_lease` is SQLite's own (one `serve` per file) and is not copied.
public enum StorageCopy {
    /// The decision-log note of a digest that was `sending` in the SQLite file.
    static let inDoubtNote = "copied from SQLite by roundup storage copy while it was being sent: "
        + "the copy cannot know whether WeChat delivered it, so it is not resent"

    /// Copies the SQLite file `source` into the PostgreSQL store `store`, which must hold no rows
    /// in any Roundup table. Throws `StorageCopyError` with one sentence when it refuses or the
    /// read-back differs; any error leaves the target as it was.
    public static func run(from source: SQLiteCopySource, to store: RoundupStore, now: Timestamp) async throws -> StorageCopyResult {
        guard let postgres = store.postgres else { throw StorageCopyError.targetNotPostgreSQL }
        let location = postgres.location
        do {
            return try await store.write { any in
                guard let tx = any as? PostgresTransaction else { throw StorageCopyError.targetNotPostgreSQL }
                return try copy(from: source, into: tx, location: location, now: now)
            }
        } catch let error as StorageCopyError {
            throw error
        } catch let error as StoreError {
            throw error
        } catch {
            throw StorageCopyError.failed(reason: RoundupStore.explain(error))
        }
    }

    /// Refuses a target that holds rows in any Roundup table, as `run` would, without writing:
    /// for a caller that has work to do before the copy.
    public static func requireEmptyTarget(_ store: RoundupStore) async throws {
        guard let postgres = store.postgres else { throw StorageCopyError.targetNotPostgreSQL }
        let location = postgres.location
        let occupied = try await store.read { any in try (any as? PostgresTransaction)?.tablesWithRows() ?? [] }
        guard occupied.isEmpty else { throw StorageCopyError.targetNotEmpty(location: location, tables: occupied) }
    }

    /// The copy inside the target's transaction; throwing rolls every change back.
    static func copy(from source: SQLiteCopySource, into tx: PostgresTransaction, location: String, now: Timestamp) throws -> StorageCopyResult {
        try tx.lockForCopy()
        let occupied = try tx.tablesWithRows()
        guard occupied.isEmpty else { throw StorageCopyError.targetNotEmpty(location: location, tables: occupied) }

        var copied: [TableCopy] = []
        var sending: [Int64] = []
        try tx.disableCreatedOpenCheck()
        try source.read { reader in
            for table in CopyTable.all {
                var checksum = TableChecksum()
                try reader.rows(of: table, batch: table.batchRows) { batch in
                    for row in batch { checksum.add(row) }
                    if table.name == "digests" { sending += CopyTable.sendingDigestIDs(in: batch) }
                    try tx.insert(batch, into: table)
                }
                copied.append(TableCopy(table: table.name, rows: checksum.rows, checksum: checksum.hex))
            }
        }
        try tx.enableCreatedOpenCheck()
        try tx.resetIdentities()

        for (table, expected) in zip(CopyTable.all, copied) {
            var checksum = TableChecksum()
            try tx.readBack(table, batch: table.batchRows) { batch in
                for row in batch { checksum.add(row) }
            }
            let found = TableCopy(table: table.name, rows: checksum.rows, checksum: checksum.hex)
            guard found == expected else { throw StorageCopyError.verificationFailed(expected: expected, found: found) }
        }

        // The rule every engine uses for a send cut short: a checked, logged state change.
        for id in sending {
            guard try tx.moveDigest(id, from: .sending, to: .inDoubt, now: now, note: inDoubtNote) else {
                throw StorageCopyError.notMovedToInDoubt(digest: id)
            }
        }
        return StorageCopyResult(tables: copied, inDoubt: sending)
    }
}

/// What `roundup storage copy` did: each table's rows and checksum (the SQLite file's, equal to
/// what was read back from PostgreSQL before the commit), and the digests that were `sending`
/// and are now `in_doubt`.
public struct StorageCopyResult: Sendable, Equatable {
    public var tables: [TableCopy]
    public var inDoubt: [Int64]

    /// Rows copied, over every table.
    public var totalRows: Int { tables.reduce(0) { $0 + $1.rows } }
}

/// One table's copy: its row count and the SHA-256 (hex) of its rows in key order.
public struct TableCopy: Sendable, Equatable {
    public var table: String
    public var rows: Int
    public var checksum: String
}

/// Why `roundup storage copy` refused or failed; nothing was copied in any case.
public enum StorageCopyError: Error, Sendable, Equatable, CustomStringConvertible {
    case sourceMissing(path: String)
    /// The file is not an SQLite database Roundup wrote, with why in a few words.
    case notRoundupDatabase(path: String, why: String)
    /// The file has a migration this Roundup does not know.
    case sourceNewer(path: String, migration: String)
    /// A live `roundup serve` holds the file's lease.
    case serveRunning(path: String, pid: Int?)
    case targetNotPostgreSQL
    /// The target has rows in these Roundup tables.
    case targetNotEmpty(location: String, tables: [String])
    /// A value PostgreSQL's column cannot hold (say text in an integer column).
    case badValue(table: String, column: String, row: String, found: String)
    /// A table read back from PostgreSQL differs from the SQLite file.
    case verificationFailed(expected: TableCopy, found: TableCopy)
    /// A copied `sending` digest was no longer `sending` when it was to become `in_doubt`.
    case notMovedToInDoubt(digest: Int64)
    /// Either database failed during the copy (PostgreSQL refused a row, the connection broke).
    case failed(reason: String)

    public var description: String {
        switch self {
        case .sourceMissing(let path):
            return "There is no file \(path) to copy."
        case .notRoundupDatabase(let path, let why):
            return "\(path) is not a Roundup SQLite database (\(why)); nothing was copied."
        case .sourceNewer(let path, let migration):
            return "\(path) was written by a newer Roundup (its schema has migration \(migration), unknown to Roundup \(RoundupVersion.current)); copy it with that version."
        case .serveRunning(let path, let pid):
            return "roundup serve (pid \(pid.map(String.init) ?? "unknown")) is running on \(path): stop roundup serve first, so that nothing changes during the copy."
        case .targetNotPostgreSQL:
            return "roundup storage copy copies into PostgreSQL: set storage.url to the target database."
        case .targetNotEmpty(let location, let tables):
            return "\(location) already holds Roundup data (rows in \(tables.joined(separator: ", "))); roundup storage copy only fills an empty database, so nothing was copied."
        case .badValue(let table, let column, let row, let found):
            return "Row \(row) of \(table) holds \(found) in column \(column), which PostgreSQL cannot store there; nothing was copied."
        case .verificationFailed(let expected, let found):
            return "Table \(expected.table) read back from PostgreSQL differs from the SQLite file (\(found.rows) rows, checksum \(found.checksum), instead of \(expected.rows) rows, checksum \(expected.checksum)); nothing was copied."
        case .failed(let reason):
            return "The copy failed and nothing was copied: \(reason)."
        case .notMovedToInDoubt(let id):
            return "Digest #\(id) was sending in the SQLite file but could not be made in_doubt in PostgreSQL; nothing was copied."
        }
    }
}

// MARK: - the tables both engines share

/// One value of a copied row, in the three types the two schemas share (SQLite's 0/1 flags
/// travel as booleans).
enum CopyValue: Sendable, Equatable {
    case null
    case integer(Int64)
    case text(String)
    case bool(Bool)
}

/// A copied column: its name and the type its values travel as.
struct CopyColumn: Sendable {
    enum Kind: Sendable { case integer, text, bool }
    var name: String
    var kind: Kind
}

/// A table `roundup storage copy` copies: its columns (the ones both schemas have) and the key
/// whose order both engines read it in. PostgreSQL-only columns (`digests.claimed_by`, the
/// fan-out claim) start empty.
struct CopyTable: Sendable {
    var name: String
    var columns: [CopyColumn]
    /// The primary key's columns, in order.
    var key: [String]
    /// Whether `id` is an identity column whose sequence must continue past the copied ids.
    var identity: Bool

    /// Rows per INSERT: at most 1000, and within PostgreSQL's 65535 parameters per statement.
    var batchRows: Int { min(1000, 65535 / columns.count) }

    var columnNames: [String] { columns.map(\.name) }

    init(_ name: String, key: [String], identity: Bool = false, _ columns: [(String, CopyColumn.Kind)]) {
        self.name = name
        self.key = key
        self.identity = identity
        self.columns = columns.map { CopyColumn(name: $0.0, kind: $0.1) }
    }

    /// Every table in an order that inserts referenced rows first.
    static let all: [CopyTable] = [
        CopyTable("users", key: ["im_user_id"], [
            ("im_user_id", .text), ("openid", .text), ("name", .text), ("profile", .text), ("created_at", .integer), ("updated_at", .integer),
        ]),
        CopyTable("group_messages", key: ["id"], identity: true, [
            ("id", .integer), ("group_id", .text), ("msg_seq", .integer), ("group_type", .text), ("sender", .text),
            ("msg_time", .integer), ("received_at", .integer), ("summary", .text), ("at_all", .bool), ("mentions", .text),
            ("urgent", .bool), ("fanout_state", .text), ("fanout_cursor", .text), ("fanout_done_at", .integer),
        ]),
        CopyTable("digests", key: ["id"], identity: true, [
            ("id", .integer), ("im_user_id", .text), ("state", .text), ("reason", .text), ("opened_at", .integer),
            ("window_start_at", .integer), ("last_message_at", .integer), ("due_at", .integer), ("urgent", .bool),
            ("flush_requested", .integer), ("attempts", .integer), ("template_id", .text), ("errcode", .text), ("errmsg", .text),
            ("msgid", .text), ("body", .text), ("held_since", .integer), ("sending_at", .integer), ("finished_at", .integer),
            ("updated_at", .integer),
        ]),
        CopyTable("messages", key: ["id"], identity: true, [
            ("id", .integer), ("msg_key", .text), ("group_message_id", .integer), ("recipient", .text), ("sender", .text),
            ("sender_name_card", .text), ("msg_time", .integer), ("received_at", .integer), ("summary", .text), ("urgent", .bool),
            ("digest_id", .integer), ("status", .text), ("status_at", .integer),
        ]),
        CopyTable("digest_events", key: ["id"], identity: true, [
            ("id", .integer), ("digest_id", .integer), ("at", .integer), ("kind", .text), ("detail", .text),
        ]),
        CopyTable("recall_tombstones", key: ["msg_key"], [("msg_key", .text), ("to_account", .text), ("expires_at", .integer)]),
        CopyTable("read_marks", key: ["recipient", "peer"], [("recipient", .text), ("peer", .text), ("last_read_time", .integer)]),
        CopyTable("credits", key: ["openid", "template_id"], [
            ("openid", .text), ("template_id", .text), ("count", .integer), ("subscribed", .bool), ("updated_at", .integer),
        ]),
        CopyTable("applied_events", key: ["key"], [("key", .text), ("applied_at", .integer)]),
        CopyTable("wechat_sent_events", key: ["id"], identity: true, [
            ("id", .integer), ("msgid", .text), ("openid", .text), ("template_id", .text), ("error_code", .integer),
            ("error_status", .text), ("create_time", .integer), ("received_at", .integer),
        ]),
        CopyTable("send_pauses", key: ["key"], [("key", .text), ("until_at", .integer), ("reason", .text), ("since_at", .integer)]),
        CopyTable("access_token", key: ["id"], [("id", .integer), ("token", .text), ("expires_at", .integer), ("fetched_at", .integer)]),
    ]

    /// SQLite tables that are deliberately not copied.
    static let sqliteOnly: Set<String> = ["serve_lease"]
    /// PostgreSQL tables that must be empty too, though nothing is copied into them.
    static let postgresOnly = ["instances", "token_refresh_lease"]

    /// The ids of the `sending` digests among rows of `digests`.
    static func sendingDigestIDs(in rows: [[CopyValue]]) -> [Int64] {
        guard let digests = all.first(where: { $0.name == "digests" }),
              let idAt = digests.columnNames.firstIndex(of: "id"), let stateAt = digests.columnNames.firstIndex(of: "state")
        else { return [] }
        return rows.compactMap { row in
            guard row[stateAt] == .text(DigestState.sending.rawValue), case .integer(let id) = row[idAt] else { return nil }
            return id
        }
    }

    /// A row's key for messages: `id 17`, `openid o1, template_id T`.
    func describeKey(_ row: [CopyValue]) -> String {
        key.compactMap { k -> String? in
            guard let i = columnNames.firstIndex(of: k) else { return nil }
            switch row[i] {
            case .integer(let n): return "\(k) \(n)"
            case .text(let s): return "\(k) \(s)"
            case .bool(let b): return "\(k) \(b)"
            case .null: return "\(k) NULL"
            }
        }.joined(separator: ", ")
    }
}

/// A table's row count and the SHA-256 of its rows, each rendered canonically (a type tag per
/// value; integers as 8 bytes big-endian, text as its UTF-8 length and bytes, flags as one
/// byte), in the order they are added. The same rows in the same order give the same checksum
/// whichever engine they were read from.
struct TableChecksum {
    private var hasher = SHA256()
    private var buffer: [UInt8] = []
    private(set) var rows = 0

    mutating func add(_ row: [CopyValue]) {
        buffer.removeAll(keepingCapacity: true)
        for value in row {
            switch value {
            case .null:
                buffer.append(0)
            case .integer(let n):
                buffer.append(1)
                withUnsafeBytes(of: n.bigEndian) { buffer.append(contentsOf: $0) }
            case .text(let s):
                buffer.append(2)
                withUnsafeBytes(of: UInt32(truncatingIfNeeded: s.utf8.count).bigEndian) { buffer.append(contentsOf: $0) }
                buffer.append(contentsOf: s.utf8)
            case .bool(let b):
                buffer.append(3)
                buffer.append(b ? 1 : 0)
            }
        }
        buffer.withUnsafeBytes { hasher.update(bufferPointer: $0) }
        rows += 1
    }

    /// The checksum so far, as 64 hex digits.
    var hex: String {
        hasher.finalize().map { byte in
            let s = String(byte, radix: 16)
            return byte < 16 ? "0" + s : s
        }.joined()
    }
}
