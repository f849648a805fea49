/// What a read command prints: the same facts as a table for people and as one JSON object
/// for programs (`{"schema": 1, …}`).
public struct Report: Sendable {
    /// The JSON schema version; within a version keys are only ever added.
    public static let schemaVersion: Int64 = 1

    public let json: JSONValue
    public let text: String

    /// Wraps `data` under `key` in the versioned envelope.
    public init(key: String, data: JSONValue, text: String) {
        self.json = .object([("schema", .int(Report.schemaVersion)), (key, data)])
        self.text = text
    }

    /// The output for the chosen format, ending in a newline.
    public func rendered(json asJSON: Bool) -> String {
        (asJSON ? json.serialized : text) + "\n"
    }
}

/// An operation that could not be done, as one sentence for stderr (CLI exit 1).
public struct OperatorFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A command that cannot apply to this setup (exit 2, one sentence on stderr): for example
/// `roundup backup` on PostgreSQL.
public struct UsageFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
