import PostgresNIO

extension CopyValue: PGArgument {
    func bind(into binds: inout PostgresBindings) throws {
        switch self {
        case .null: binds.appendNull()
        case .integer(let n): binds.append(n)
        case .text(let s): binds.append(s)
        case .bool(let b): binds.append(b)
        }
    }
}

/// The PostgreSQL side of `roundup storage copy`: checking that the target is empty, inserting
/// rows in batches with their ids, and reading them back in the order SQLite read them.
extension PostgresTransaction {
    /// Every Roundup table: the copied ones and those only PostgreSQL has.
    private static var roundupTables: [String] { CopyTable.all.map(\.name) + CopyTable.postgresOnly }

    /// Keeps every other writer out of the Roundup tables until this transaction ends (reads go on).
    func lockForCopy() throws {
        try run("SET LOCAL lock_timeout = 0")
        try run("LOCK TABLE \(Self.roundupTables.joined(separator: ", ")) IN EXCLUSIVE MODE")
    }

    /// The Roundup tables that hold at least one row, in copy order.
    func tablesWithRows() throws -> [String] {
        let sql = Self.roundupTables.enumerated()
            .map { i, t in "SELECT \(i) AS n, '\(t)'::text AS name WHERE EXISTS (SELECT 1 FROM \(t))" }
            .joined(separator: " UNION ALL ") + " ORDER BY n"
        return try run(sql).rows.map { try $0.string("name") }
    }

    /// Digests are created `open` (a trigger checks it); copied ones arrive in every state, so
    /// the check is off for this transaction's inserts (the change is transactional, and needs
    /// the table's owner: the role that migrated it).
    func disableCreatedOpenCheck() throws {
        try run("ALTER TABLE digests DISABLE TRIGGER digests_created_open")
    }

    func enableCreatedOpenCheck() throws {
        try run("ALTER TABLE digests ENABLE TRIGGER digests_created_open")
    }

    /// Inserts rows as they are, ids included, in one multi-row statement.
    func insert(_ rows: [[CopyValue]], into table: CopyTable) throws {
        guard !rows.isEmpty else { return }
        let width = table.columns.count
        var tuples: [String] = []
        tuples.reserveCapacity(rows.count)
        var arguments: [any PGArgument] = []
        arguments.reserveCapacity(rows.count * width)
        for (r, row) in rows.enumerated() {
            let base = r * width
            tuples.append("(" + (1...width).map { "$\(base + $0)" }.joined(separator: ",") + ")")
            for value in row { arguments.append(value) }
        }
        _ = try run("INSERT INTO \(table.name) (\(table.columnNames.joined(separator: ", "))) VALUES \(tuples.joined(separator: ","))",
                arguments: arguments)
    }

    /// Makes each identity sequence hand out ids past the largest copied one (1 for an empty table).
    func resetIdentities() throws {
        for table in CopyTable.all where table.identity {
            try run("SELECT setval(pg_get_serial_sequence('\(table.name)', 'id'), coalesce(max(id), 0) + 1, false) FROM \(table.name)")
        }
    }

    /// Streams `table`'s rows in key order, `batch` at a time, through a cursor. Text keys are
    /// ordered by byte (`COLLATE "C"`), as SQLite orders them, whatever the database's collation.
    func readBack(_ table: CopyTable, batch: Int, _ each: ([[CopyValue]]) throws -> Void) throws {
        let kinds = Dictionary(uniqueKeysWithValues: table.columns.map { ($0.name, $0.kind) })
        let order = table.key.map { kinds[$0] == .text ? "\($0) COLLATE \"C\"" : $0 }.joined(separator: ", ")
        try run("DECLARE roundup_copy_check NO SCROLL CURSOR FOR SELECT \(table.columnNames.joined(separator: ", ")) FROM \(table.name) ORDER BY \(order)")
        while true {
            let rows = try run("FETCH FORWARD \(batch) FROM roundup_copy_check").rows
            if rows.isEmpty { break }
            try each(try rows.map { row in try table.columns.map { try Self.copyValue(row, $0) } })
            if rows.count < batch { break }
        }
        try run("CLOSE roundup_copy_check")
    }

    private static func copyValue(_ row: PGRow, _ column: CopyColumn) throws -> CopyValue {
        switch column.kind {
        case .integer: return try row.int64OrNil(column.name).map(CopyValue.integer) ?? .null
        case .text: return try row.stringOrNil(column.name).map(CopyValue.text) ?? .null
        case .bool: return try row.decode(column.name, as: Bool?.self).map(CopyValue.bool) ?? .null
        }
    }
}
