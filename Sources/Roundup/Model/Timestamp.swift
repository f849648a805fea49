import Foundation

/// Instants as Roundup stores them: integer milliseconds since the Unix epoch, UTC. Due times are
/// absolute so that digests that came due while Roundup was down are due at start.
public struct Timestamp: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var milliseconds: Int64

    public init(milliseconds: Int64) { self.milliseconds = milliseconds }

    public init(_ date: Date) {
        self.milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
    }

    public init(seconds: Int64) { self.milliseconds = seconds * 1000 }

    public var date: Date { Date(timeIntervalSince1970: Double(milliseconds) / 1000) }

    /// RFC 3339 in UTC with second precision, the form every `--json` output uses.
    public var rfc3339: String {
        date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: false).timeZone(separator: .omitted))
    }

    public var description: String { rfc3339 }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool { lhs.milliseconds < rhs.milliseconds }

    public static func + (lhs: Timestamp, rhs: Int64) -> Timestamp { Timestamp(milliseconds: lhs.milliseconds + rhs) }
    public static func - (lhs: Timestamp, rhs: Int64) -> Timestamp { Timestamp(milliseconds: lhs.milliseconds - rhs) }
}
