import GRDB

extension SQLiteEngine {
    /// Copies the write-ahead log into the database file and truncates it to zero bytes, so that
    /// erased text (purged, recalled, a user erased) is no longer in the WAL; with
    /// `secure_delete` on every connection, freed pages are zeroed too. Readers holding an old
    /// snapshot block the truncation: it is retried a few times, then left to the next round.
    /// Returns whether the log was truncated.
    @discardableResult
    public func truncateWAL(tries: Int = 10) async -> Bool {
        guard path != nil else { return true }
        for attempt in 0..<tries {
            let busy = try? await writer.writeWithoutTransaction { db -> Bool in
                let row = try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)")
                return (row?[0] as Int?) != 0
            }
            if busy == false { return true }
            if attempt < tries - 1 { try? await Task.sleep(for: .milliseconds(50)) }
        }
        return false
    }
}
