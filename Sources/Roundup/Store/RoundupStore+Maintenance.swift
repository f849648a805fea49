import Foundation
import GRDB

extension RoundupStore {
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

    /// `PRAGMA quick_check`: an empty list when the database is sound, else SQLite's findings.
    public func quickCheck() throws -> [String] {
        let rows = try writer.read { db in try String.fetchAll(db, sql: "PRAGMA quick_check") }
        return rows == ["ok"] ? [] : rows
    }
}
