import Foundation
import GRDB

extension SQLiteEngine {
    /// An online copy of the database into a new file (created 0600), consistent even while
    /// `serve` writes (SQLite's backup API). Refuses to overwrite an existing file.
    public func backup(to destination: String) throws(StoreError) {
        guard !FileManager.default.fileExists(atPath: destination) else {
            throw .cannotOpen(path: destination, reason: "the file exists; choose a new name")
        }
        let fd = posixOpen(destination, O_CREAT | O_EXCL | O_WRONLY, 0o600)
        guard fd >= 0 else {
            throw .cannotOpen(path: destination, reason: String(cString: strerror(errno)))
        }
        posixClose(fd)
        do {
            let target = try DatabaseQueue(path: destination)
            try writer.backup(to: target)
        } catch {
            try? FileManager.default.removeItem(atPath: destination)
            throw .cannotOpen(path: destination, reason: RoundupStore.explain(error))
        }
    }

    /// `PRAGMA quick_check`: an empty list when the database is sound, else SQLite's findings
    /// (an error SQLite raises while checking, such as a page it cannot read, is one finding).
    public func quickCheck() throws -> [String] {
        do {
            return try SQLiteEngine.quickCheckFindings(writer)
        } catch let error as DatabaseError where SQLiteEngine.isDamage(error) {
            return [RoundupStore.explain(error)]
        }
    }

    /// Runs `PRAGMA quick_check` on a connection of `reader` (outside any transaction, on a
    /// reader of a pool, so `serve`'s writes go on) and returns its findings, none when it says
    /// `ok`. On some damage SQLite returns its findings and then fails the statement, or the read
    /// around it: the findings are kept, since they are what an operator needs.
    static func quickCheckFindings(_ reader: any DatabaseReader) throws -> [String] {
        var rows: [String] = []
        do {
            try reader.unsafeRead { db in
                let cursor = try String.fetchCursor(db, sql: "PRAGMA quick_check(20)")
                while let row = try cursor.next() { rows.append(row) }
            }
        } catch {
            guard !rows.isEmpty, isDamage(error) else { throw error }
        }
        if rows == ["ok"] { return [] }
        // SQLite heads the first finding with "*** in database main ***" and a newline.
        return rows.map {
            $0.replacingOccurrences(of: "*** in database main ***\n", with: "").replacingOccurrences(of: "\n", with: " ")
        }
    }

    /// The sentence `roundup check` and a refused open give for a damaged file: where it is,
    /// what SQLite found, and how to restore it (README, Backup and restore).
    public static func damageReport(path: String, _ check: QuickCheckOutcome, cause: String? = nil) -> String {
        let what: String
        switch check {
        case .findings(let findings) where !findings.isEmpty:
            let shown = findings.prefix(3).map { "\"\($0)\"" }.joined(separator: "; ")
            let more = findings.count > 3 ? " and \(findings.count - 3) more" : ""
            let opening = cause.map { "SQLite says \"\($0)\"; " } ?? ""
            what = "\(opening)PRAGMA quick_check found \(shown)\(more)"
        case .findings:
            what = "SQLite says \"\(cause ?? "damaged")\" though PRAGMA quick_check finds nothing"
        case .cannotRun(let error):
            what = "SQLite says \"\(cause ?? error)\" and PRAGMA quick_check cannot run on it"
                + (cause == nil || cause == error ? "" : " (\(error))")
        }
        return "the file is damaged or is not a SQLite database (\(what)); restore it from a backup: stop roundup serve, "
            + "move \(path) and its -wal and -shm files aside, copy your latest `roundup backup` file to \(path) and start again "
            + "(README: Backup and restore)"
    }

    /// What `PRAGMA quick_check` made of a file.
    public enum QuickCheckOutcome: Sendable, Equatable {
        /// It ran; an empty list means the file is sound.
        case findings([String])
        /// SQLite could not check the file at all (not a database, unreadable schema).
        case cannotRun(String)
    }

    /// For an error that means the database file is damaged (met after a successful open, when a
    /// query reaches a bad page), the sentence that says so and what to do; nil for any other error.
    public static func damageHint(for error: any Error) -> String? {
        guard isDamage(error) else { return nil }
        return "The database is damaged (SQLite says \"\(RoundupStore.explain(error))\"): run roundup check to see where, "
            + "then restore it from a backup (README: Backup and restore)."
    }

    /// Whether an error means the file itself is bad (SQLITE_CORRUPT, SQLITE_NOTADB), as opposed
    /// to a lock, a permission or a full disk.
    static func isDamage(_ error: any Error) -> Bool {
        guard let error = error as? DatabaseError else { return false }
        return error.resultCode == .SQLITE_CORRUPT || error.resultCode == .SQLITE_NOTADB
    }

    /// `PRAGMA quick_check` on a file that failed to open, over a plain connection that neither
    /// migrates nor changes the journal mode. Runs only after such a failure, never on a normal
    /// start (a full scan of a large database takes minutes).
    static func quickCheck(path: String, busyTimeout: Double) -> QuickCheckOutcome {
        var config = GRDB.Configuration()
        config.busyMode = .timeout(busyTimeout)
        config.label = "roundup-quick-check"
        do {
            return .findings(try quickCheckFindings(DatabaseQueue(path: path, configuration: config)))
        } catch {
            return .cannotRun(RoundupStore.explain(error))
        }
    }
}
