/// `roundup instances`: who is running `serve` on this database. On SQLite that is at most one
/// process, the holder of the database's lock; on PostgreSQL every instance with a live heartbeat.
public enum InstancesReport {
    /// The report for whichever engine the store has.
    public static func make(store: RoundupStore, now: Timestamp) async throws -> Report {
        guard store.postgres != nil else { return try sqlite(store: store, now: now) }
        let rows = try await InstanceHeartbeat.liveInstances(store)
        let json = rows.map { r in
            JSONValue.object([
                ("id", .string(r.id)), ("host", .string(r.host)), ("pid", .int(Int64(r.pid))), ("version", .string(r.version)),
                ("started_at", .string(r.startedAt.rfc3339)), ("heartbeat_age_seconds", .double(r.heartbeatAgeSeconds)),
                ("config_fingerprint", .string(r.configFingerprint)),
            ])
        }
        var lines = ["ID                                    HOST                 PID      VERSION  HEARTBEAT  CONFIG"]
        for r in rows {
            lines.append([r.id.padding(toLength: 37, withPad: " ", startingAt: 0), r.host.padding(toLength: 20, withPad: " ", startingAt: 0),
                          String(r.pid).padding(toLength: 8, withPad: " ", startingAt: 0), r.version.padding(toLength: 8, withPad: " ", startingAt: 0),
                          String(format: "%.1f s", r.heartbeatAgeSeconds).padding(toLength: 10, withPad: " ", startingAt: 0), r.configFingerprint]
                .joined(separator: " "))
        }
        let text = rows.isEmpty ? "no roundup serve is running on this database" : lines.joined(separator: "\n")
        return Report(key: "instances", data: .array(json), text: text)
    }

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
