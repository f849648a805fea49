/// `roundup instances`: who is running `serve` on this database. On SQLite that is at most one
/// process, the holder of the database's lock.
public enum InstancesReport {
    /// The report for an SQLite database.
    public static func sqlite(store: RoundupStore, now: Timestamp) throws -> Report {
        guard let holder = try ServeLease.holder(of: store) else {
            return Report(key: "instances", data: .array([]), text: "no roundup serve owns \(store.path ?? "this database") now")
        }
        let started = (now.milliseconds - holder.acquiredAt.milliseconds) / 1000
        let json = JSONValue.object([
            ("id", .string("\(holder.host):\(holder.pid)")), ("host", .string(holder.host)), ("pid", .int(Int64(holder.pid))),
            ("version", .null), ("started_at", .string(holder.acquiredAt.rfc3339)), ("heartbeat_age_seconds", .null),
            ("config_fingerprint", .null),
        ])
        let text = "roundup serve pid \(holder.pid) on \(holder.host) owns \(store.path ?? "the database") (started \(holder.acquiredAt.rfc3339), \(started) s ago)"
        return Report(key: "instances", data: .array([json]), text: text)
    }
}
