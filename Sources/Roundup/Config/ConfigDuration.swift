import Foundation

/// A length of time written in the config as `500ms`, `30s`, `10m`, `2h`, `7d` or a sum of
/// those (`1h30m`) — see docs/configuration.md.
public struct ConfigDuration: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let milliseconds: Int64

    public init(milliseconds: Int64) { self.milliseconds = milliseconds }
    public static func seconds(_ s: Int64) -> ConfigDuration { .init(milliseconds: s * 1000) }
    public static func minutes(_ m: Int64) -> ConfigDuration { .init(milliseconds: m * 60_000) }
    public static func hours(_ h: Int64) -> ConfigDuration { .init(milliseconds: h * 3_600_000) }
    public static func days(_ d: Int64) -> ConfigDuration { .init(milliseconds: d * 86_400_000) }
    public static let zero = ConfigDuration(milliseconds: 0)

    public var seconds: Double { Double(milliseconds) / 1000 }
    /// Whole seconds, rounded down: the unit of durations in `--json` output.
    public var wholeSeconds: Int64 { milliseconds / 1000 }
    public var duration: Duration { .milliseconds(milliseconds) }

    private static let units: [(suffix: String, ms: Int64)] = [
        ("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000),
    ]

    /// Parses `10m`, `1h30m`, `500ms`; nil for anything else (bare numbers need a unit, so a
    /// forgotten `s` cannot silently mean milliseconds or minutes).
    public init?(parsing text: String) {
        var rest = Substring(text.trimmingCharacters(in: .whitespaces))
        guard !rest.isEmpty else { return nil }
        var total: Int64 = 0
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isASCII && $0.isNumber }
            guard !digits.isEmpty, digits.count <= 12, let value = Int64(digits) else { return nil }
            rest = rest.dropFirst(digits.count)
            let unitText = rest.prefix { $0.isASCII && $0.isLetter }
            guard let unit = ConfigDuration.units.first(where: { $0.suffix == unitText }) else { return nil }
            rest = rest.dropFirst(unitText.count)
            let (product, overflow) = value.multipliedReportingOverflow(by: unit.ms)
            guard !overflow else { return nil }
            total += product
        }
        self.milliseconds = total
    }

    /// The shortest exact spelling, e.g. `90s` → `1m30s`, `0` → `0s`.
    public var description: String {
        if milliseconds == 0 { return "0s" }
        var rest = milliseconds
        var out = ""
        for unit in ConfigDuration.units.reversed() where rest >= unit.ms {
            out += "\(rest / unit.ms)\(unit.suffix)"
            rest %= unit.ms
        }
        return out
    }

    public static func < (lhs: ConfigDuration, rhs: ConfigDuration) -> Bool { lhs.milliseconds < rhs.milliseconds }
}
