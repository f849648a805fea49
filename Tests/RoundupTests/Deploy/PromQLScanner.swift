import Foundation

/// Just enough of PromQL to find the metric names a query reads and, for each, the aggregation
/// that encloses it (`sum`, `max`, …). promtool checks that the queries parse; this only has to
/// tell metric names from functions, keywords and label names.
enum PromQLScanner {
    /// One metric selector in a query, with the nearest aggregation operator around it.
    struct Use: Equatable {
        let metric: String
        let aggregation: String?
    }

    static let aggregations: Set<String> = [
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile",
        "limitk", "limit_ratio",
    ]
    static let groupingKeywords: Set<String> = ["by", "without", "on", "ignoring", "group_left", "group_right"]
    static let keywords: Set<String> = groupingKeywords.union(["and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end"])

    private enum Token: Equatable {
        case identifier(String)
        case open
        case close
    }

    /// Every metric selector in the query, in order.
    static func uses(in query: String) -> [Use] {
        let tokens = tokenize(strip(query))
        var uses: [Use] = []
        var frames: [String?] = []  // the call each open parenthesis belongs to
        var pendingCall: String?
        var i = 0
        func next(_ j: Int) -> Token? { j < tokens.count ? tokens[j] : nil }
        while i < tokens.count {
            switch tokens[i] {
            case .open:
                frames.append(pendingCall)
                pendingCall = nil
            case .close:
                if !frames.isEmpty { frames.removeLast() }
            case .identifier(let name):
                if groupingKeywords.contains(name), next(i + 1) == .open {
                    // `by (a, b)`: label names, not metrics. Skip to the closing parenthesis.
                    var depth = 0
                    i += 1
                    repeat {
                        if tokens[i] == .open { depth += 1 } else if tokens[i] == .close { depth -= 1 }
                        i += 1
                    } while i < tokens.count && depth > 0
                    continue
                } else if keywords.contains(name) {
                    break
                } else if next(i + 1) == .open {
                    pendingCall = name
                } else if aggregations.contains(name), case .identifier(let k)? = next(i + 1), groupingKeywords.contains(k) {
                    // `sum by (x) (…)`: the call's parenthesis comes after the grouping clause.
                    pendingCall = name
                } else {
                    let enclosing = frames.reversed().compactMap { $0 }.first { aggregations.contains($0) }
                    uses.append(Use(metric: name, aggregation: enclosing))
                }
            }
            i += 1
        }
        return uses
    }

    /// The metric names a query reads.
    static func metricNames(in query: String) -> Set<String> { Set(uses(in: query).map(\.metric)) }

    /// The query without string literals, label matchers (`{…}`) and ranges (`[5m]`, `[1d:1m]`).
    private static func strip(_ query: String) -> String {
        var out = ""
        var quote: Character?
        var escaped = false
        var braces = 0, brackets = 0
        for c in query {
            if let q = quote {
                if escaped { escaped = false } else if c == "\\" { escaped = true } else if c == q { quote = nil }
                continue
            }
            switch c {
            case "\"", "'", "`": quote = c
            case "{": braces += 1
            case "}": braces -= 1
            case "[": brackets += 1
            case "]": brackets -= 1; out.append(" ")
            default:
                if braces == 0 && brackets == 0 { out.append(c) }
            }
        }
        return out
    }

    private static func tokenize(_ text: String) -> [Token] {
        var tokens: [Token] = []
        let chars = Array(text)
        var i = 0
        func isIdentStart(_ c: Character) -> Bool { c.isASCII && (c.isLetter || c == "_" || c == ":") }
        func isIdent(_ c: Character) -> Bool { c.isASCII && (c.isLetter || c.isNumber || c == "_" || c == ":") }
        while i < chars.count {
            let c = chars[i]
            if c == "(" {
                tokens.append(.open)
                i += 1
            } else if c == ")" {
                tokens.append(.close)
                i += 1
            } else if c.isASCII && c.isNumber || (c == "." && i + 1 < chars.count && chars[i + 1].isNumber) {
                // A number or duration: 60, 0.99, 1e3, 5m, 0x1F.
                while i < chars.count, chars[i].isASCII, chars[i].isLetter || chars[i].isNumber || chars[i] == "." { i += 1 }
            } else if isIdentStart(c) {
                var j = i
                while j < chars.count, isIdent(chars[j]) { j += 1 }
                tokens.append(.identifier(String(chars[i..<j])))
                i = j
            } else {
                i += 1
            }
        }
        return tokens
    }
}
