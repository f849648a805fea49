import Foundation

/// How the operator's tables and sentences show instants: wall time in `digest.timezone`
/// (`16:05` today, `3月4日 16:05` another day, with the year when it differs) and due times
/// relative to now (`in 4m`, `2m ago`).
public struct OperatorTime: Sendable {
    public let now: Timestamp
    public let timeZone: TimeZone

    public init(now: Timestamp, timeZone: TimeZone) {
        self.now = now
        self.timeZone = timeZone
    }

    /// `16:05` on today's date in the zone, else `3月4日 16:05` (`2024年3月4日 16:05` in another year).
    public func clock(_ t: Timestamp) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute], from: t.date)
        let today = calendar.dateComponents([.year, .month, .day], from: now.date)
        let hm = "\(Self.twoDigits(c.hour ?? 0)):\(Self.twoDigits(c.minute ?? 0))"
        if (c.year, c.month, c.day) == (today.year, today.month, today.day) { return hm }
        let date = "\(c.month ?? 0)月\(c.day ?? 0)日 \(hm)"
        return c.year == today.year ? date : "\(c.year ?? 0)年\(date)"
    }

    /// `in 4m`, `2m ago`, or `now` within a second.
    public func relative(_ t: Timestamp) -> String {
        let delta = t.milliseconds - now.milliseconds
        if abs(delta) < 1000 { return "now" }
        let text = Self.duration(seconds: abs(delta) / 1000)
        return delta > 0 ? "in \(text)" : "\(text) ago"
    }

    /// `16:10 (in 4m)`.
    public func clockAndRelative(_ t: Timestamp) -> String { "\(clock(t)) (\(relative(t)))" }

    /// A short duration: `45s`, `4m`, `2h5m`, `3d4h`.
    public static func duration(seconds s: Int64) -> String {
        switch s {
        case ..<60: return "\(s)s"
        case ..<3600: return "\(s / 60)m"
        case ..<86_400:
            let m = (s % 3600) / 60
            return m == 0 ? "\(s / 3600)h" : "\(s / 3600)h\(m)m"
        default:
            let h = (s % 86_400) / 3600
            return h == 0 ? "\(s / 86_400)d" : "\(s / 86_400)d\(h)h"
        }
    }

    static func twoDigits(_ n: Int) -> String { n < 10 ? "0\(n)" : String(n) }
}

/// Names joined for a sentence: `A`, `A and B`, `A, B and C`, `A, B, C and 2 others`.
func spokenList(_ names: [String]) -> String {
    switch names.count {
    case 0: return "nobody"
    case 1: return names[0]
    case 2...3: return names.dropLast().joined(separator: ", ") + " and " + names[names.count - 1]
    default: return names.prefix(3).joined(separator: ", ") + " and \(names.count - 3) others"
    }
}

/// `1 message`, `7 messages`.
func plural(_ n: Int, _ word: String) -> String { "\(n) \(word)\(n == 1 ? "" : "s")" }
