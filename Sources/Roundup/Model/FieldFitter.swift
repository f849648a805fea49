/// Fits free text to a subscribe-message keyword type so that WeChat never answers 47003 for length
/// or charset. Lives in `Model/` because both the renderer (`Digest/`) and
/// `config check` (`Config/`, which proves every fallback fits) use it.
///
/// Every value is first cleaned (`clean(_:)`), then checked or cut per type. Characters are counted
/// as Unicode scalars, the stricter count; cuts fall on grapheme boundaries, so a cut value is always
/// a prefix of the cleaned text's `Character`s. Only `thing` and `name` are cut with `…`;
/// `character_string` and `letter` are cut silently; every other type is all-or-nothing (nil).
public enum FieldFitter {
    /// The value WeChat accepts for a keyword of this type, or nil when the text cannot fit (the
    /// caller then uses the field's fallback). Never longer than the type's limit; never empty.
    public static func fit(_ text: String, as type: KeywordType) -> String? {
        let cleaned = clean(text)
        guard !cleaned.isEmpty else { return nil }
        let scalars = cleaned.unicodeScalars
        switch type {
        case .thing:
            return cut(cleaned, limit: 20, ellipsis: true)
        case .name:
            // WeChat's rule: ≤ 10 when any Chinese appears (mixed text counts as Chinese), else ≤ 20.
            if let wide = cut(cleaned, limit: 20, ellipsis: true), !wide.unicodeScalars.contains(where: isCJK) {
                return wide
            }
            return cut(cleaned, limit: 10, ellipsis: true)
        case .phrase:
            return scalars.count <= 5 && scalars.allSatisfy(isHan) ? cleaned : nil
        case .characterString:
            return scalars.contains(where: isCJK) ? nil : cut(cleaned, limit: 32, ellipsis: false)
        case .number:
            return scalars.count <= 32 && isDecimal(scalars) ? cleaned : nil
        case .letter:
            return scalars.allSatisfy(isASCIILetter) ? cut(cleaned, limit: 32, ellipsis: false) : nil
        case .symbol:
            return scalars.count <= 5 && scalars.allSatisfy(isSymbol) ? cleaned : nil
        case .phoneNumber:
            let allowed = scalars.allSatisfy { isASCIIDigit($0) || "+-() ".unicodeScalars.contains($0) }
            return scalars.count <= 17 && allowed && scalars.contains(where: isASCIIDigit) ? cleaned : nil
        case .carNumber:
            return scalars.count <= 8 && isCarNumber(Array(scalars)) ? cleaned : nil
        case .time:
            return DateTimeFormat.isTime(cleaned) ? cleaned : nil
        case .date:
            return DateTimeFormat.isDate(cleaned) ? cleaned : nil
        case .amount, .enum:
            // Roundup has no currency value or enumerated value to offer.
            return nil
        }
    }

    /// The most Unicode scalars a value of this type may have; nil for `time`/`date` (a format, not
    /// a length) and the types Roundup cannot fit. `name` allows 20 only when it has no Chinese.
    public static func limit(for type: KeywordType) -> Int? {
        switch type {
        case .thing, .name: return 20
        case .phrase, .symbol: return 5
        case .characterString, .number, .letter: return 32
        case .phoneNumber: return 17
        case .carNumber: return 8
        case .time, .date, .amount, .enum: return nil
        }
    }

    /// What a value of this type must look like, in words, for `config check` messages.
    public static func rule(for type: KeywordType) -> String {
        switch type {
        case .thing: return "at most 20 characters, longer text is cut with …"
        case .name: return "at most 10 characters when it has Chinese, else 20"
        case .phrase: return "1 to 5 Chinese characters and nothing else"
        case .characterString: return "at most 32 digits, letters or symbols, no Chinese"
        case .number: return "at most 32 digits with at most one decimal point"
        case .letter: return "at most 32 letters A-Z or a-z"
        case .symbol: return "at most 5 symbols: no letters, digits, Chinese or spaces"
        case .phoneNumber: return "at most 17 digits and + - ( ) or spaces"
        case .carNumber: return "at most 8 letters or digits; only the first and last may be Chinese"
        case .time: return "a 24-hour time such as 16:05, 3月4日 16:05 or 2025年3月4日 16:05"
        case .date: return "a date such as 2025年3月4日, 3月4日 or 2025-03-04"
        case .amount, .enum: return "cannot be filled from messages"
        }
    }

    // MARK: - cleaning

    /// The text WeChat may see: emoji, controls and format characters removed, every run of
    /// whitespace (newlines and tabs included) one ASCII space, nothing at either end.
    public static func clean(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        var pendingSpace = false
        for scalar in text.unicodeScalars {
            if scalar.properties.isWhitespace {
                pendingSpace = true
            } else if !isRemoved(scalar) {
                if pendingSpace && !out.isEmpty { out.append(" ") }
                pendingSpace = false
                out.append(scalar)
            }
        }
        return String(out)
    }

    /// Scalars `clean(_:)` drops: C0/C1 controls (Cc), format characters (Cf, e.g. ZWJ, bidi marks,
    /// tags, BOM) and emoji. White_Space scalars never reach here: they become one space first.
    static func isRemoved(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .format: return true
        default: return isEmoji(scalar)
        }
    }

    /// The emoji rule, exactly: a scalar is removed when it is Extended_Pictographic
    /// (the table below; Swift has no public property for it) or Emoji_Presentation (which brings in
    /// regional indicators 1F1E6–1F1FF and skin tones 1F3FB–1F3FF), or when it only glues emoji
    /// together: ZWJ U+200D, variation selectors U+FE0E/U+FE0F, keycap U+20E3, tags E0020–E007F.
    /// ASCII digits, `#` and `*` are Emoji but neither property, so they stay (a keycap `1️⃣` → `1`).
    /// Plain `Emoji` alone is not used: every non-ASCII Emoji scalar is already in one of the two sets.
    static func isEmoji(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        if v < 0xA9 { return false }
        switch v {
        case 0x200D, 0xFE0E, 0xFE0F, 0x20E3, 0xE0020...0xE007F: return true
        default: break
        }
        return scalar.properties.isEmojiPresentation || isExtendedPictographic(v)
    }

    /// Whether a code point has Unicode's Extended_Pictographic property (binary search of the table).
    static func isExtendedPictographic(_ v: UInt32) -> Bool {
        var low = 0
        var high = extendedPictographic.count - 1
        while low <= high {
            let mid = (low + high) / 2
            let range = extendedPictographic[mid]
            if v < range.lowerBound {
                high = mid - 1
            } else if v > range.upperBound {
                low = mid + 1
            } else {
                return true
            }
        }
        return false
    }

    /// Extended_Pictographic from emoji-data.txt (Unicode 15.0), adjacent ranges merged. The property
    /// is stable: it already covers the reserved code points where future emoji will be assigned.
    static let extendedPictographic: [ClosedRange<UInt32>] = [
        0xA9...0xA9, 0xAE...0xAE, 0x203C...0x203C, 0x2049...0x2049, 0x2122...0x2122, 0x2139...0x2139,
        0x2194...0x2199, 0x21A9...0x21AA, 0x231A...0x231B, 0x2328...0x2328, 0x2388...0x2388, 0x23CF...0x23CF,
        0x23E9...0x23F3, 0x23F8...0x23FA, 0x24C2...0x24C2, 0x25AA...0x25AB, 0x25B6...0x25B6, 0x25C0...0x25C0,
        0x25FB...0x25FE, 0x2600...0x2605, 0x2607...0x2612, 0x2614...0x2685, 0x2690...0x2705, 0x2708...0x2712,
        0x2714...0x2714, 0x2716...0x2716, 0x271D...0x271D, 0x2721...0x2721, 0x2728...0x2728, 0x2733...0x2734,
        0x2744...0x2744, 0x2747...0x2747, 0x274C...0x274C, 0x274E...0x274E, 0x2753...0x2755, 0x2757...0x2757,
        0x2763...0x2767, 0x2795...0x2797, 0x27A1...0x27A1, 0x27B0...0x27B0, 0x27BF...0x27BF, 0x2934...0x2935,
        0x2B05...0x2B07, 0x2B1B...0x2B1C, 0x2B50...0x2B50, 0x2B55...0x2B55, 0x3030...0x3030, 0x303D...0x303D,
        0x3297...0x3297, 0x3299...0x3299, 0x1F000...0x1F0FF, 0x1F10D...0x1F10F, 0x1F12F...0x1F12F,
        0x1F16C...0x1F171, 0x1F17E...0x1F17F, 0x1F18E...0x1F18E, 0x1F191...0x1F19A, 0x1F1AD...0x1F1E5,
        0x1F201...0x1F20F, 0x1F21A...0x1F21A, 0x1F22F...0x1F22F, 0x1F232...0x1F23A, 0x1F23C...0x1F23F,
        0x1F249...0x1F3FA, 0x1F400...0x1F53D, 0x1F546...0x1F64F, 0x1F680...0x1F6FF, 0x1F774...0x1F77F,
        0x1F7D5...0x1F7FF, 0x1F80C...0x1F80F, 0x1F848...0x1F84F, 0x1F85A...0x1F85F, 0x1F888...0x1F88F,
        0x1F8AE...0x1F8FF, 0x1F90C...0x1F93A, 0x1F93C...0x1F945, 0x1F947...0x1FAFF, 0x1FC00...0x1FFFD,
    ]

    // MARK: - cutting

    /// The longest run of whole graphemes from the start with at most `limit` scalars (one fewer when
    /// `ellipsis`, which then follows a cut), trailing spaces dropped; nil when nothing would be left.
    static func cut(_ text: String, limit: Int, ellipsis: Bool) -> String? {
        if text.unicodeScalars.count <= limit { return text }
        let budget = ellipsis ? limit - 1 : limit
        var used = 0
        var end = text.startIndex
        for character in text {
            let size = character.unicodeScalars.count
            if used + size > budget { break }
            used += size
            end = text.index(after: end)
        }
        var kept = text[..<end]
        while let last = kept.unicodeScalars.last, last.properties.isWhitespace { kept = kept.dropLast() }
        guard !kept.isEmpty else { return nil }
        return ellipsis ? kept + "…" : String(kept)
    }

    // MARK: - charsets

    /// Han ideographs, for `phrase` (pure Chinese) and the ends of a `car_number`.
    static func isHan(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x3007, 0x3400...0x4DBF, 0x4E00...0x9FFF, 0xF900...0xFAFF, 0x20000...0x3FFFF: return true
        default: return false
        }
    }

    /// East Asian wide text WeChat counts as "Chinese": Han plus CJK punctuation, kana, bopomofo,
    /// Hangul, CJK compatibility and fullwidth forms. Broad on purpose: it only ever makes a value
    /// shorter (`name`) or rejected (`character_string`).
    static func isCJK(_ scalar: Unicode.Scalar) -> Bool {
        if isHan(scalar) { return true }
        switch scalar.value {
        case 0x1100...0x11FF, 0x2E80...0x2FFF, 0x3000...0x33FF, 0xA960...0xA97F, 0xAC00...0xD7FF,
            0xFE30...0xFE4F, 0xFF00...0xFFEF, 0x1AFF0...0x1B16F, 0x1F200...0x1F2FF:
            return true
        default: return false
        }
    }

    /// `0`–`9`.
    static func isASCIIDigit(_ scalar: Unicode.Scalar) -> Bool { ("0"..."9").contains(scalar) }

    /// `A`–`Z`, `a`–`z`.
    static func isASCIILetter(_ scalar: Unicode.Scalar) -> Bool {
        ("A"..."Z").contains(scalar) || ("a"..."z").contains(scalar)
    }

    /// A punctuation or symbol scalar that is not CJK: what a `symbol` field may hold.
    static func isSymbol(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation,
            .finalPunctuation, .otherPunctuation, .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol:
            return !isCJK(scalar)
        default: return false
        }
    }

    /// Digits with at most one decimal point between digits: `12`, `3.5`.
    static func isDecimal(_ scalars: String.UnicodeScalarView) -> Bool {
        let parts = scalars.split(separator: ".", omittingEmptySubsequences: false)
        return (1...2).contains(parts.count) && parts.allSatisfy { !$0.isEmpty && $0.allSatisfy(isASCIIDigit) }
    }

    /// ASCII letters and digits, where the first and last may instead be Han (`粤A8Z888挂`).
    static func isCarNumber(_ scalars: [Unicode.Scalar]) -> Bool {
        scalars.indices.allSatisfy { i in
            let s = scalars[i]
            return isASCIIDigit(s) || isASCIILetter(s) || ((i == 0 || i == scalars.count - 1) && isHan(s))
        }
    }
}

/// WeChat's `time` and `date` formats, checked by a small hand-written scanner
/// (`Regex` is not `Sendable`). A value is one time/date or a range of two joined by `~`.
enum DateTimeFormat {
    /// `16:05`, `16:05:30`, optionally after a date and a space: `2025年3月4日 16:05`, `3月4日 16:05`.
    static func isTime(_ text: String) -> Bool { isRange(text) { scanTime(&$0) } }

    /// `2025年3月4日`, `2025年3月`, `3月4日`, `2025-03-04`, `2025/03/04`, `2025.03.04`, `2025-03`,
    /// `03-04`, optionally followed by a space and a 24-hour time.
    static func isDate(_ text: String) -> Bool { isRange(text) { scanDate(&$0) } }

    /// A cursor over the scalars of a value.
    struct Cursor {
        let scalars: [Unicode.Scalar]
        var at = 0
        var atEnd: Bool { at == scalars.count }

        /// Consumes `literal` if it is next.
        mutating func take(_ literal: Unicode.Scalar) -> Bool {
            guard at < scalars.count, scalars[at] == literal else { return false }
            at += 1
            return true
        }

        /// Consumes a number of `digits` ASCII digits whose value lies in `range`.
        mutating func number(digits: ClosedRange<Int>, in range: ClosedRange<Int>) -> Bool {
            var end = at
            var value = 0
            while end < scalars.count, end - at < digits.upperBound, FieldFitter.isASCIIDigit(scalars[end]) {
                value = value * 10 + Int(scalars[end].value - 48)
                end += 1
            }
            guard digits.contains(end - at), range.contains(value) else { return false }
            at = end
            return true
        }
    }

    /// One value, or two joined by `~` (spaces around it allowed), each matched by `scan`.
    static func isRange(_ text: String, _ scan: (inout Cursor) -> Bool) -> Bool {
        var c = Cursor(scalars: Array(text.unicodeScalars))
        guard scan(&c) else { return false }
        if c.atEnd { return true }
        _ = c.take(" ")
        guard c.take("~") else { return false }
        _ = c.take(" ")
        return scan(&c) && c.atEnd
    }

    /// Tries `steps` from the cursor; on failure the cursor is left where it was.
    static func attempt(_ c: inout Cursor, _ steps: (inout Cursor) -> Bool) -> Bool {
        var trial = c
        guard steps(&trial) else { return false }
        c = trial
        return true
    }

    /// `HH:MM` or `HH:MM:SS`, 24-hour.
    static func scanClock(_ c: inout Cursor) -> Bool {
        attempt(&c) { c in
            guard c.number(digits: 1...2, in: 0...23), c.take(":"), c.number(digits: 2...2, in: 0...59) else {
                return false
            }
            _ = attempt(&c) { $0.take(":") && $0.number(digits: 2...2, in: 0...59) }
            return true
        }
    }

    /// A date in any of the listed forms, without a time.
    static func scanDay(_ c: inout Cursor) -> Bool {
        let year = { (c: inout Cursor) in c.number(digits: 4...4, in: 1...9999) }
        let month = { (c: inout Cursor) in c.number(digits: 1...2, in: 1...12) }
        let day = { (c: inout Cursor) in c.number(digits: 1...2, in: 1...31) }
        if attempt(&c, { year(&$0) && $0.take("年") && month(&$0) && $0.take("月") && day(&$0) && $0.take("日") }) {
            return true
        }
        if attempt(&c, { year(&$0) && $0.take("年") && month(&$0) && $0.take("月") }) { return true }
        if attempt(&c, { month(&$0) && $0.take("月") && day(&$0) && $0.take("日") }) { return true }
        for sep: Unicode.Scalar in ["-", "/", "."] {
            if attempt(&c, { year(&$0) && $0.take(sep) && month(&$0) && $0.take(sep) && day(&$0) }) { return true }
            if attempt(&c, { year(&$0) && $0.take(sep) && month(&$0) }) { return true }
            if attempt(&c, { month(&$0) && $0.take(sep) && day(&$0) }) { return true }
        }
        return false
    }

    /// A `time` value: a clock, optionally after a date and one space.
    static func scanTime(_ c: inout Cursor) -> Bool {
        attempt(&c) { scanDay(&$0) && $0.take(" ") && scanClock(&$0) } || scanClock(&c)
    }

    /// A `date` value: a date, optionally followed by one space and a clock.
    static func scanDate(_ c: inout Cursor) -> Bool {
        attempt(&c) { scanDay(&$0) && $0.take(" ") && scanClock(&$0) } || scanDay(&c)
    }
}
