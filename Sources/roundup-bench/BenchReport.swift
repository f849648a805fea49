import Foundation
import Roundup

/// What a figure is measured in; decides how it is printed.
enum BenchUnit: String, Sendable {
    case perSecond = "/s"
    case milliseconds = "ms"
    case seconds = "s"
    case bytes = "B"
    case megabytes = "MB"
    case count = ""
    case percent = "%"
    case microseconds = "µs"
    /// A plain number with two decimals (so many per something).
    case ratio = "×"
}

/// The goal a figure is held to (issue 7).
enum BenchTarget: Sendable {
    case atLeast(Double)
    case atMost(Double)
    case exactly(Double)

    func isMet(by value: Double) -> Bool {
        switch self {
        case .atLeast(let t): return value >= t
        case .atMost(let t): return value <= t
        case .exactly(let t): return value == t
        }
    }

    func describe(_ unit: BenchUnit) -> String {
        switch self {
        case .atLeast(let t): return "≥ " + BenchRow.format(t, unit)
        case .atMost(let t): return "≤ " + BenchRow.format(t, unit)
        case .exactly(let t): return "= " + BenchRow.format(t, unit)
        }
    }
}

/// One line of the result table.
struct BenchRow: Sendable {
    var scenario: String
    var metric: String
    var value: Double
    var unit: BenchUnit
    var target: BenchTarget?

    var met: Bool? { target?.isMet(by: value) }

    /// A value with its unit, thousands separated where it helps.
    static func format(_ value: Double, _ unit: BenchUnit) -> String {
        switch unit {
        case .perSecond: return grouped(value.rounded()) + "/s"
        case .milliseconds: return String(format: value < 10 ? "%.2f ms" : "%.1f ms", value)
        case .seconds: return String(format: value < 10 ? "%.2f s" : "%.1f s", value)
        case .bytes: return grouped(value.rounded()) + " B"
        case .megabytes: return String(format: "%.1f MB", value)
        case .count: return grouped(value.rounded())
        case .percent: return String(format: "%.0f %%", value)
        case .microseconds: return String(format: "%.0f µs", value)
        case .ratio: return String(format: "%.2f", value)
        }
    }

    /// 1234567 → "1,234,567".
    static func grouped(_ value: Double) -> String {
        guard value.isFinite else { return "\(value)" }
        let negative = value < 0
        var digits = String(Int64(abs(value)))
        var out = ""
        while digits.count > 3 {
            out = "," + digits.suffix(3) + out
            digits.removeLast(3)
        }
        return (negative ? "-" : "") + digits + out
    }
}

/// Every figure of a run, and the correctness failures that make the exit status 1.
struct BenchReport: Sendable {
    private(set) var rows: [BenchRow] = []
    /// One sentence per correctness failure (a lost or duplicated message, a send not made once).
    private(set) var failures: [String] = []

    mutating func add(_ scenario: String, _ metric: String, _ value: Double, _ unit: BenchUnit, target: BenchTarget? = nil) {
        rows.append(BenchRow(scenario: scenario, metric: metric, value: value, unit: unit, target: target))
    }

    /// A count that must be zero (or another exact value) for the run to be correct.
    mutating func check(_ scenario: String, _ metric: String, _ value: Int, expected: Int = 0, failure: String) {
        add(scenario, metric, Double(value), .count, target: .exactly(Double(expected)))
        if value != expected { failures.append("\(scenario): \(failure)") }
    }

    mutating func fail(_ scenario: String, _ why: String) { failures.append("\(scenario): \(why)") }

    /// The plain table: scenario, metric, value, target, met.
    func table() -> String {
        let header = ["scenario", "metric", "value", "target", "met"]
        let cells = rows.map { row -> [String] in
            [row.scenario, row.metric, BenchRow.format(row.value, row.unit), row.target?.describe(row.unit) ?? "",
             row.met.map { $0 ? "yes" : "NO" } ?? ""]
        }
        let widths = header.indices.map { c in ([header[c]] + cells.map { $0[c] }).map(\.count).max() ?? 0 }
        func line(_ cols: [String]) -> String {
            cols.enumerated().map { c, text in
                // Values and targets read best right-aligned.
                let pad = String(repeating: " ", count: widths[c] - text.count)
                return c == 2 || c == 3 ? pad + text : text + pad
            }.joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }
        var out = [line(header), widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")]
        out += cells.map(line)
        if failures.isEmpty {
            out.append("\ncorrectness: every check passed")
        } else {
            out.append("\ncorrectness: FAILED")
            out += failures.map { "  " + $0 }
        }
        return out.joined(separator: "\n")
    }

    /// The same as JSON: `{"schema":1,"build","quick","settings",rows:[…],"correct","failures"}`.
    func json(build: String, quick: Bool, settings: [(String, JSONValue)]) -> String {
        let items: [JSONValue] = rows.map { row in
            .object([
                ("scenario", .string(row.scenario)), ("metric", .string(row.metric)), ("value", .double(row.value)),
                ("unit", .string(row.unit.rawValue)), ("display", .string(BenchRow.format(row.value, row.unit))),
                ("target", .string(row.target?.describe(row.unit))), ("met", row.met.map(JSONValue.bool) ?? .null),
            ])
        }
        return JSONValue.object([
            ("schema", .int(1)), ("build", .string(build)), ("quick", .bool(quick)), ("settings", .object(settings)),
            ("rows", .array(items)), ("correct", .bool(failures.isEmpty)), ("failures", .array(failures.map(JSONValue.string))),
        ]).serialized
    }
}
