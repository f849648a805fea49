import GRDB

/// Counts that describe the state of the whole service, for metrics and `roundup stats`.
public struct StatusSnapshot: Sendable, Equatable {
    public var pendingMessages: Int
    public var openDigests: Int
    public var held: [String: Int]
    /// How long the most overdue open digest has been due (0 when none is overdue).
    public var oldestOverdueSeconds: Double
    public var creditsByTemplate: [String: Int]
}

extension RoundupStore {
    /// One consistent read of the service's counts.
    public func statusSnapshot(now: Timestamp) throws -> StatusSnapshot {
        try writer.read { db in
            let pending = try Int.cachedOne(db, sql: "SELECT COUNT(*) FROM messages WHERE status = 'pending'") ?? 0
            let open = try Int.cachedOne(db, sql: "SELECT COUNT(*) FROM digests WHERE state = 'open'") ?? 0
            var held: [String: Int] = [:]
            for row in try Row.cachedAll(db, sql: "SELECT reason, COUNT(*) AS n FROM digests WHERE state = 'held' GROUP BY reason") {
                held[row["reason"]] = row["n"]
            }
            let oldest = try Int64.cachedOne(db, sql: "SELECT min(due_at) FROM digests WHERE state = 'open'")
            let overdue = oldest.map { max(0, Double(now.milliseconds - $0) / 1000) } ?? 0
            var credits: [String: Int] = [:]
            for row in try Row.cachedAll(db, sql: "SELECT template_id, SUM(count) AS n FROM credits GROUP BY template_id") {
                credits[row["template_id"]] = row["n"]
            }
            return StatusSnapshot(pendingMessages: pending, openDigests: open, held: held, oldestOverdueSeconds: overdue, creditsByTemplate: credits)
        }
    }
}
