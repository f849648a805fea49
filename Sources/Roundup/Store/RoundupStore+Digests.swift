import GRDB

/// A digest as stored, for the engine and the operator's views.
public struct DigestRow: Sendable, Equatable {
    public var id: Int64
    public var imUserID: String
    public var state: DigestState
    public var reason: DigestReason?
    public var openedAt: Timestamp
    public var windowStartAt: Timestamp
    public var dueAt: Timestamp?
    public var updatedAt: Timestamp
}

struct DigestRecord: Codable, FetchableRecord, TableRecord {
    static let databaseTableName = "digests"
    var id: Int64
    var im_user_id: String
    var state: String
    var reason: String?
    var opened_at: Int64
    var window_start_at: Int64
    var due_at: Int64?
    var updated_at: Int64

    var row: DigestRow {
        DigestRow(
            id: id, imUserID: im_user_id, state: DigestState(rawValue: state) ?? .dead,
            reason: reason.flatMap(DigestReason.init(rawValue:)), openedAt: Timestamp(milliseconds: opened_at),
            windowStartAt: Timestamp(milliseconds: window_start_at), dueAt: due_at.map(Timestamp.init(milliseconds:)),
            updatedAt: Timestamp(milliseconds: updated_at))
    }
}

extension RoundupStore {
    /// Opens a new digest for a user, due at `dueAt`; throws `activeDigestExists` when the user
    /// already has an open or held one (the schema's partial unique index decides, so two writers
    /// can never both succeed).
    public func openDigest(for user: String, windowStart: Timestamp, dueAt: Timestamp, now: Timestamp) throws -> Int64 {
        try write { tx in try tx.openDigest(for: user, windowStart: windowStart, dueAt: dueAt, now: now, note: "due \(dueAt.rfc3339)") }
    }

    /// Compare-and-set of a digest's state: changes it only if it is still `from`.
    /// Returns false when another writer moved it first; throws `illegalTransition` when the
    /// state machine forbids the change.
    @discardableResult
    public func moveDigest(
        _ id: Int64, from: DigestState, to: DigestState, reason: DigestReason? = nil, now: Timestamp, note: String = ""
    ) throws -> Bool {
        try write { tx in try tx.moveDigest(id, from: from, to: to, reason: reason, now: now, note: note) }
    }

    /// The digest with this id.
    public func digest(_ id: Int64) throws -> DigestRow? {
        try writer.read { db in try DigestRecord.fetchOne(db, key: id)?.row }
    }

    /// The decision log of a digest, oldest first: (time, kind, detail).
    public func digestLog(_ id: Int64) throws -> [(at: Timestamp, kind: String, detail: String)] {
        try writer.read { db in
            try Row.cachedAll(db, sql: "SELECT at, kind, detail FROM digest_events WHERE digest_id = ? ORDER BY id", arguments: [id])
                .map { (Timestamp(milliseconds: $0["at"]), $0["kind"], $0["detail"]) }
        }
    }
}
