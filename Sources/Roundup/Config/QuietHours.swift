import Foundation

/// Times of day when no WeChat call may start (`digest.quiet_hours`), as half-open
/// ranges [start, end) of minutes after local midnight in `digest.timezone`. A range whose end
/// is not after its start crosses midnight (`21:30-07:00`).
public struct QuietHours: Sendable, Hashable, CustomStringConvertible {
    /// One range; minutes are 0..<1440.
    public struct Range: Sendable, Hashable {
        public let start: Int
        public let end: Int

        /// Whether the minute of day lies inside the range.
        public func contains(minuteOfDay m: Int) -> Bool {
            if start < end { return m >= start && m < end }
            return m >= start || m < end
        }
    }

    public let ranges: [Range]
    public static let none = QuietHours(ranges: [])

    public init(ranges: [Range]) { self.ranges = ranges }

    /// Parses `"21:30-07:00,12:00-13:30"`; the empty string means no quiet hours. Throws a
    /// sentence that names the bad part.
    public init(parsing text: String) throws(ConfigValueError) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.isEmpty { self.ranges = []; return }
        var ranges: [Range] = []
        for part in trimmed.split(separator: ",", omittingEmptySubsequences: false) {
            let piece = part.trimmingCharacters(in: .whitespaces)
            let ends = piece.split(separator: "-", omittingEmptySubsequences: false)
            guard ends.count == 2, let start = QuietHours.minutes(ends[0]), let end = QuietHours.minutes(ends[1]) else {
                throw ConfigValueError("\"\(piece)\" is not a range like 21:30-07:00")
            }
            guard start != end else {
                throw ConfigValueError("\"\(piece)\" starts and ends at the same time")
            }
            ranges.append(Range(start: start, end: end))
        }
        self.ranges = ranges
    }

    private static func minutes(_ text: Substring) -> Int? {
        let hm = text.trimmingCharacters(in: .whitespaces).split(separator: ":", omittingEmptySubsequences: false)
        guard hm.count == 2, (1...2).contains(hm[0].count), hm[1].count == 2,
              hm[0].allSatisfy({ $0.isASCII && $0.isNumber }), hm[1].allSatisfy({ $0.isASCII && $0.isNumber }),
              let h = Int(hm[0]), let m = Int(hm[1]), (0...23).contains(h), (0...59).contains(m)
        else {
            // 24:00 is a common way to write "until midnight".
            if hm.count == 2, hm[0] == "24", hm[1] == "00" { return 0 }
            return nil
        }
        return h * 60 + m
    }

    /// Whether the minute of day falls in any range.
    public func contains(minuteOfDay m: Int) -> Bool { ranges.contains { $0.contains(minuteOfDay: m) } }

    public var description: String {
        ranges.map { "\(QuietHours.format($0.start))-\(QuietHours.format($0.end))" }.joined(separator: ",")
    }

    private static func format(_ minutes: Int) -> String {
        let h = minutes / 60, m = minutes % 60
        return (h < 10 ? "0" : "") + "\(h):" + (m < 10 ? "0" : "") + "\(m)"
    }
}

/// A config value that does not parse, with a sentence saying why.
public struct ConfigValueError: Error, Sendable, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
}
