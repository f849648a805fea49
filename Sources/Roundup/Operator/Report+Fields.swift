extension Report {
    /// A report whose data sits under several keys of the versioned envelope, in order
    /// (`roundup show`: `digest`, `messages`, `log`, `body`).
    public init(fields: [(String, JSONValue)], text: String) {
        self.json = .object([("schema", .int(Report.schemaVersion))] + fields)
        self.text = text
    }
}
