import Foundation
import GRDB

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An SQLite database file opened read-only as the source of `roundup storage copy`.
///
/// Opening checks that it is a Roundup database this version can read (every copied table with
/// exactly the copied columns, no migration from a newer Roundup) and that no live `serve` holds
/// its lease. While the source is open it holds a shared lock on the lease file, so a `serve`
/// started during the copy refuses to start instead of writing what the copy would miss. Nothing
/// is written to the database file.
public final class SQLiteCopySource: Sendable {
    public let path: String
    private let queue: DatabaseQueue
    /// The lease file's descriptor holding the shared lock, or -1 when it could not be created.
    private let lockFD: Int32

    private init(path: String, queue: DatabaseQueue, lockFD: Int32) {
        self.path = path
        self.queue = queue
        self.lockFD = lockFD
    }

    deinit {
        if lockFD >= 0 { posixClose(lockFD) }
    }

    /// Opens the file at `path` for copying; throws `StorageCopyError` naming what is wrong.
    public static func open(path: String, busyTimeout: Double = 5) throws -> SQLiteCopySource {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), !isFolder.boolValue else {
            throw StorageCopyError.sourceMissing(path: path)
        }
        var config = GRDB.Configuration()
        config.readonly = true
        config.busyMode = .timeout(busyTimeout)
        config.label = "roundup-copy-source"
        let queue: DatabaseQueue
        do {
            queue = try DatabaseQueue(path: path, configuration: config)
            try queue.read { db in try checkSchema(db, path: path) }
        } catch let error as StorageCopyError {
            throw error
        } catch {
            throw StorageCopyError.notRoundupDatabase(path: path, why: "SQLite says \"\(RoundupStore.explain(error))\"")
        }
        let lockFD = try lockLease(path: path, queue: queue)
        return SQLiteCopySource(path: path, queue: queue, lockFD: lockFD)
    }

    /// Runs `body` in one read transaction: every table is read from the same snapshot.
    func read<T>(_ body: (SQLiteCopyReader) throws -> T) throws -> T {
        try queue.read { db in try body(SQLiteCopyReader(db: db)) }
    }

    /// Refuses a file that is not a Roundup database of a schema this version knows.
    private static func checkSchema(_ db: Database, path: String) throws {
        guard try db.tableExists("grdb_migrations") else {
            throw StorageCopyError.notRoundupDatabase(path: path, why: "it has no Roundup schema")
        }
        let applied = try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations")
        let known = Set(Schema.migrator.migrations)
        if let unknown = applied.first(where: { !known.contains($0) }) {
            throw StorageCopyError.sourceNewer(path: path, migration: unknown)
        }
        guard applied.contains("v1-initial") else {
            throw StorageCopyError.notRoundupDatabase(path: path, why: "its schema was never created")
        }
        let tables = Set(try String.fetchAll(db, sql: """
            SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'grdb_migrations'
            """))
        let expected = Set(CopyTable.all.map(\.name)).union(CopyTable.sqliteOnly)
        if let extra = tables.subtracting(expected).sorted().first {
            throw StorageCopyError.notRoundupDatabase(path: path, why: "it has a table \(extra) that Roundup does not know")
        }
        for table in CopyTable.all {
            guard tables.contains(table.name) else {
                throw StorageCopyError.notRoundupDatabase(path: path, why: "it has no table \(table.name)")
            }
            let columns = Set(try db.columns(in: table.name).map(\.name))
            if let missing = table.columnNames.first(where: { !columns.contains($0) }) {
                throw StorageCopyError.notRoundupDatabase(path: path, why: "its table \(table.name) has no column \(missing)")
            }
            if let extra = columns.subtracting(table.columnNames).sorted().first {
                throw StorageCopyError.notRoundupDatabase(path: path, why: "its table \(table.name) has a column \(extra) that Roundup does not know")
            }
        }
    }

    /// Takes a shared lock on the file's lease (`PATH.lock`, created 0600 as `serve` does when
    /// there is none yet), or throws `serveRunning` when a live `serve` holds it. Returns the
    /// descriptor, or -1 when the lease file cannot be created (a read-only folder: no `serve`
    /// can run there either).
    private static func lockLease(path: String, queue: DatabaseQueue) throws -> Int32 {
        let lockPath = path + ".lock"
        var fd = posixOpen(lockPath, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        if fd < 0 { fd = posixOpen(lockPath, O_RDONLY | O_CLOEXEC, 0) }
        guard fd >= 0 else { return -1 }
        guard flock(fd, LOCK_SH | LOCK_NB) == 0 else {
            posixClose(fd)
            let pid = try? queue.read { db in try Int.fetchOne(db, sql: "SELECT pid FROM serve_lease WHERE id = 1") }
            throw StorageCopyError.serveRunning(path: path, pid: pid ?? nil)
        }
        return fd
    }
}

/// Reads the copied tables of an SQLite database inside one read transaction.
struct SQLiteCopyReader {
    let db: Database

    /// Streams `table`'s rows in key order (SQLite's binary text order), `batch` rows at a time,
    /// each converted to the shared value types; a value of another type than its column's
    /// (text in an integer column, a blob) throws `badValue`.
    func rows(of table: CopyTable, batch: Int, _ each: ([[CopyValue]]) throws -> Void) throws {
        let sql = "SELECT \(table.columnNames.joined(separator: ", ")) FROM \(table.name) ORDER BY \(table.key.joined(separator: ", "))"
        let cursor = try Row.fetchCursor(db, sql: sql)
        var rows: [[CopyValue]] = []
        rows.reserveCapacity(batch)
        while let row = try cursor.next() {
            var values: [CopyValue] = []
            values.reserveCapacity(table.columns.count)
            for (i, column) in table.columns.enumerated() {
                let value: DatabaseValue = row[i]
                guard let converted = Self.convert(value, to: column.kind) else {
                    var partial = values
                    for j in i..<table.columns.count {
                        partial.append(Self.convert(row[j] as DatabaseValue, to: table.columns[j].kind) ?? .null)
                    }
                    throw StorageCopyError.badValue(
                        table: table.name, column: column.name, row: table.describeKey(partial), found: Self.describe(value))
                }
                values.append(converted)
            }
            rows.append(values)
            if rows.count == batch {
                try each(rows)
                rows.removeAll(keepingCapacity: true)
            }
        }
        if !rows.isEmpty { try each(rows) }
    }

    /// A stored value as the column's type, or nil when it is of another type. SQLite's 0/1
    /// flags become booleans.
    static func convert(_ value: DatabaseValue, to kind: CopyColumn.Kind) -> CopyValue? {
        switch (value.storage, kind) {
        case (.null, _): return .null
        case (.int64(let n), .integer): return .integer(n)
        case (.double(let d), .integer):
            guard d.rounded() == d, let n = Int64(exactly: d) else { return nil }
            return .integer(n)
        case (.string(let s), .text): return .text(s)
        case (.int64(let n), .bool): return .bool(n != 0)
        default: return nil
        }
    }

    /// A wrong value in a few words, without its content (it may be message text).
    static func describe(_ value: DatabaseValue) -> String {
        switch value.storage {
        case .null: return "NULL"
        case .int64: return "an integer"
        case .double: return "a real number"
        case .string: return "text"
        case .blob: return "a blob"
        }
    }
}
