/// An aligned plain-text table that fits a terminal (80 columns by default), measuring text by
/// display columns: CJK and other East Asian wide characters take two, combining marks none.
public struct TextTable: Sendable {
    public var headers: [String]
    public var rows: [[String]]
    /// Columns that may be cut (with `…`) when the table is too wide, most expendable first.
    public var shrinkable: [Int]

    public init(headers: [String], rows: [[String]], shrinkable: [Int] = []) {
        self.headers = headers
        self.rows = rows
        self.shrinkable = shrinkable
    }

    /// The table as lines joined by newlines, at most `width` columns wide where shrinking can
    /// achieve it.
    public func render(width: Int = 80) -> String {
        let columnCount = headers.count
        var widths = (0..<columnCount).map { c in
            ([headers[c]] + rows.map { c < $0.count ? $0[c] : "" }).map(displayWidth).max() ?? 0
        }
        let gap = 2
        var total: Int { widths.reduce(0, +) + gap * max(columnCount - 1, 0) }
        // Shrink the expendable columns, widest first, never below their header or 6 columns.
        while total > width {
            guard let c = shrinkable
                .filter({ widths[$0] > max(displayWidth(headers[$0]), 6) })
                .max(by: { widths[$0] < widths[$1] })
            else { break }
            widths[c] -= min(total - width, widths[c] - max(displayWidth(headers[c]), 6))
        }
        var lines: [String] = []
        for row in [headers] + rows {
            var line = ""
            for c in 0..<columnCount {
                let cell = truncate(c < row.count ? row[c] : "", toWidth: widths[c])
                line += cell
                if c < columnCount - 1 {
                    line += String(repeating: " ", count: widths[c] - displayWidth(cell) + gap)
                }
            }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }
}

/// Terminal columns a string occupies.
public func displayWidth(_ text: String) -> Int {
    text.unicodeScalars.reduce(0) { $0 + scalarWidth($1) }
}

/// The string cut to at most `width` columns on a grapheme boundary, ending in `…` when cut.
public func truncate(_ text: String, toWidth width: Int) -> String {
    guard displayWidth(text) > width else { return text }
    guard width > 0 else { return "" }
    var out = ""
    var used = 0
    for ch in text {
        let w = displayWidth(String(ch))
        if used + w > width - 1 { break }
        out.append(ch)
        used += w
    }
    return out + "…"
}

/// 0 for combining and control characters, 2 for East Asian Wide/Fullwidth (and emoji), else 1.
func scalarWidth(_ s: Unicode.Scalar) -> Int {
    let v = s.value
    if v < 0x20 || (0x7F..<0xA0).contains(v) { return 0 }
    switch s.properties.generalCategory {
    case .nonspacingMark, .enclosingMark, .format: return 0
    default: break
    }
    if v == 0x200B { return 0 }
    let wide: [ClosedRange<UInt32>] = [
        0x1100...0x115F, 0x231A...0x231B, 0x2329...0x232A, 0x23E9...0x23EC, 0x23F0...0x23F0, 0x23F3...0x23F3,
        0x25FD...0x25FE, 0x2614...0x2615, 0x2648...0x2653, 0x267F...0x267F, 0x2693...0x2693, 0x26A1...0x26A1,
        0x26AA...0x26AB, 0x26BD...0x26BE, 0x26C4...0x26C5, 0x26CE...0x26CE, 0x26D4...0x26D4, 0x26EA...0x26EA,
        0x26F2...0x26F3, 0x26F5...0x26F5, 0x26FA...0x26FA, 0x26FD...0x26FD, 0x2705...0x2705, 0x270A...0x270B,
        0x2728...0x2728, 0x274C...0x274C, 0x274E...0x274E, 0x2753...0x2755, 0x2757...0x2757, 0x2795...0x2797,
        0x27B0...0x27B0, 0x27BF...0x27BF, 0x2B1B...0x2B1C, 0x2B50...0x2B50, 0x2B55...0x2B55,
        0x2E80...0x303E, 0x3041...0x33FF, 0x3400...0x4DBF, 0x4E00...0x9FFF, 0xA000...0xA4CF, 0xA960...0xA97F,
        0xAC00...0xD7A3, 0xF900...0xFAFF, 0xFE10...0xFE19, 0xFE30...0xFE6F, 0xFF00...0xFF60, 0xFFE0...0xFFE6,
        0x16FE0...0x16FE4, 0x17000...0x18AFF, 0x1B000...0x1B2FF, 0x1F004...0x1F004, 0x1F0CF...0x1F0CF,
        0x1F18E...0x1F18E, 0x1F191...0x1F19A, 0x1F200...0x1F251, 0x1F300...0x1F64F, 0x1F680...0x1F6FF,
        0x1F7E0...0x1F7EB, 0x1F90C...0x1F9FF, 0x1FA70...0x1FAFF, 0x20000...0x2FFFD, 0x30000...0x3FFFD,
    ]
    return wide.contains { $0.contains(v) } ? 2 : 1
}
