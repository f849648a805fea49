extension Report {
    /// What `roundup storage copy` prints: per table the rows and checksum, copied and read back
    /// equal, then the digests that became `in_doubt`. JSON:
    /// `{"schema":1,"tables":[{"table","rows","checksum"}],"in_doubt":[id…]}`.
    public init(storageCopy result: StorageCopyResult, from source: String, to target: String) {
        let tables = JSONValue.array(result.tables.map { t in
            .object([("table", .string(t.table)), ("rows", .int(Int64(t.rows))), ("checksum", .string(t.checksum))])
        })
        json = .object([("schema", .int(Report.schemaVersion)), ("tables", tables), ("in_doubt", .array(result.inDoubt.map { .int($0) }))])
        let table = TextTable(headers: ["TABLE", "ROWS", "SHA-256"], rows: result.tables.map { [$0.table, String($0.rows), $0.checksum] })
        var lines = [
            table.render(width: 120),
            "copied \(result.totalRows) rows in \(result.tables.count) tables from \(source) into \(target); "
                + "every table read back before the commit has the same rows and checksum",
        ]
        if !result.inDoubt.isEmpty {
            // The first ten ids; --json lists them all.
            let shown = result.inDoubt.prefix(10).map { "#\($0)" }.joined(separator: ", ")
            let ids = result.inDoubt.count > 10 ? "\(shown) and \(result.inDoubt.count - 10) more" : shown
            let one = result.inDoubt.count == 1
            lines.append("\(result.inDoubt.count) digest\(one ? " that was sending is" : "s that were sending are") now in_doubt (\(ids)): "
                + "the copy cannot know whether WeChat delivered \(one ? "it" : "them"), so \(one ? "it is" : "they are") not resent; see roundup dead")
        }
        text = lines.joined(separator: "\n")
    }
}
