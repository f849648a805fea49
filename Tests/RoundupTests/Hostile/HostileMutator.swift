import Foundation

/// What a seed is, so the mutator can add format-aware damage on top of byte-level damage.
enum HostileFormat: Sendable {
    case json, xml, csv, yaml, query, base64
}

/// Damages seed inputs: byte flips, inserts and deletes, truncation, slices duplicated or spliced
/// between seeds, invalid UTF-8, NUL bytes, very long runs, and per format: hostile numbers, value
/// types swapped, deep nesting (JSON); DOCTYPE, ENTITY, entity references, CDATA breaks, unclosed
/// and mismatched tags, foreign encodings (XML); quotes, line breaks and bad fields (CSV); renamed
/// keys, indentation, anchors and odd scalars (YAML). Every choice comes from the generator, so a
/// case is a pure function of its seed.
struct Mutator: Sendable {
    let format: HostileFormat
    let seeds: [[UInt8]]
    /// Inputs are cut to this size: big enough for "very long" fields, small enough to stay fast.
    var maxSize = 32_768

    init(format: HostileFormat, seeds: [[UInt8]]) {
        precondition(!seeds.isEmpty, "a mutator needs at least one seed")
        self.format = format
        self.seeds = seeds
    }

    init(format: HostileFormat, texts: [String]) {
        self.init(format: format, seeds: texts.map { Array($0.utf8) })
    }

    /// A new case: one seed damaged by 1–5 stacked mutations (now and then the seed untouched).
    func generate(_ rng: inout HostileRandom) -> [UInt8] {
        var bytes = rng.pick(seeds)
        if rng.percent(2) { return bytes }
        let steps = 1 + rng.below(rng.percent(70) ? 2 : 5)
        for _ in 0..<steps { mutate(&bytes, &rng) }
        return bytes
    }

    /// One mutation: format-aware about half the time, byte-level otherwise.
    func mutate(_ b: inout [UInt8], _ rng: inout HostileRandom) {
        if rng.percent(55) {
            switch format {
            case .json: jsonMutation(&b, &rng)
            case .xml: xmlMutation(&b, &rng)
            case .csv: csvMutation(&b, &rng)
            case .yaml: yamlMutation(&b, &rng)
            case .query: queryMutation(&b, &rng)
            case .base64: base64Mutation(&b, &rng)
            }
        } else {
            byteMutation(&b, &rng)
        }
        if b.count > maxSize { b.removeLast(b.count - maxSize) }
    }

    // MARK: - Byte level

    static let interestingBytes: [UInt8] = [
        0x00, 0x01, 0x1F, 0x7F, 0x80, 0xBF, 0xC0, 0xFE, 0xFF, 0x22, 0x27, 0x5C, 0x7B, 0x7D, 0x5B, 0x5D, 0x3C, 0x3E,
        0x26, 0x2C, 0x3A, 0x3D, 0x0A, 0x0D, 0x09, 0x20, 0x23, 0x2D, 0x30, 0x39,
    ]

    /// Sequences that are not UTF-8: lone continuation bytes, overlong forms, surrogates, truncated
    /// multi-byte characters, bytes that never appear.
    static let invalidUTF8: [[UInt8]] = [
        [0x80], [0xBF], [0xC0, 0x80], [0xC1, 0xBF], [0xE0, 0x80, 0x80], [0xED, 0xA0, 0x80], [0xED, 0xBF, 0xBF],
        [0xF4, 0x90, 0x80, 0x80], [0xF8, 0x88, 0x80, 0x80, 0x80], [0xFE], [0xFF], [0xE4, 0xB8], [0xF0, 0x9F, 0x98],
        [0xC3], [0xE2, 0x80, 0x22], [0xEF, 0xBB, 0xBF],
    ]

    static let longRuns: [[UInt8]] = ["A", "中", "\\", "\"", " ", "\n", "𝄞", "{", "<", "e\u{301}", "0", ",", "&", "-"]
        .map { Array($0.utf8) }

    func byteMutation(_ b: inout [UInt8], _ rng: inout HostileRandom) {
        switch rng.below(12) {
        case 0:
            guard !b.isEmpty else { return byteInsert(&b, &rng) }
            b[rng.below(b.count)] ^= UInt8(1) << UInt8(rng.below(8))
        case 1:
            guard !b.isEmpty else { return byteInsert(&b, &rng) }
            b[rng.below(b.count)] = rng.pick(Self.interestingBytes)
        case 2: byteInsert(&b, &rng)
        case 3:
            guard !b.isEmpty else { return }
            let start = rng.below(b.count)
            let length = 1 + rng.below(rng.percent(80) ? 16 : max(1, b.count / 4))
            b.removeSubrange(start..<min(b.count, start + length))
        case 4:
            guard !b.isEmpty else { return }
            b.removeLast(b.count - rng.below(b.count))
        case 5:
            guard !b.isEmpty else { return }
            let range = randomRange(b.count, maxLength: 64, &rng)
            b.insert(contentsOf: b[range], at: rng.below(b.count + 1))
        case 6:
            let other = rng.pick(seeds)
            guard !other.isEmpty else { return }
            let slice = other[randomRange(other.count, maxLength: 128, &rng)]
            if b.isEmpty || rng.percent(40) {
                b.insert(contentsOf: slice, at: rng.below(b.count + 1))
            } else {
                b.replaceSubrange(randomRange(b.count, maxLength: 32, &rng), with: slice)
            }
        case 7: b.insert(contentsOf: rng.pick(Self.invalidUTF8), at: rng.below(b.count + 1))
        case 8: b.insert(contentsOf: repeatElement(UInt8(0), count: 1 + rng.below(3)), at: rng.below(b.count + 1))
        case 9:
            let unit = rng.pick(Self.longRuns)
            let count = rng.pick([32, 256, 2048, 8192 / unit.count])
            b.insert(contentsOf: Self.repeated(unit, count), at: rng.below(b.count + 1))
        case 10: b.insert(contentsOf: rng.pick(dictionary), at: rng.below(b.count + 1))
        default:
            guard !b.isEmpty else { return byteInsert(&b, &rng) }
            let range = randomRange(b.count, maxLength: 8, &rng)
            b.replaceSubrange(range, with: (0..<range.count).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        }
    }

    /// `unit` `count` times over, built flat (a joined sequence inserts byte by byte, slowly).
    static func repeated(_ unit: [UInt8], _ count: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(unit.count * count)
        for _ in 0..<count { out.append(contentsOf: unit) }
        return out
    }

    private func byteInsert(_ b: inout [UInt8], _ rng: inout HostileRandom) {
        let count = 1 + rng.below(8)
        b.insert(contentsOf: (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: rng.below(b.count + 1))
    }

    /// A non-empty range inside `0..<count` (count > 0) of at most `maxLength`.
    private func randomRange(_ count: Int, maxLength: Int, _ rng: inout HostileRandom) -> Range<Int> {
        let start = rng.below(count)
        return start..<min(count, start + 1 + rng.below(maxLength))
    }

    /// Tokens worth inserting anywhere for this format.
    var dictionary: [[UInt8]] {
        switch format {
        case .json: return Self.dictionaries.json
        case .xml: return Self.dictionaries.xml
        case .csv: return Self.dictionaries.csv
        case .yaml: return Self.dictionaries.yaml
        case .query: return Self.dictionaries.query
        case .base64: return Self.dictionaries.base64
        }
    }

    static let dictionaries = (
        json: jsonTokens.map { Array($0.utf8) }, xml: xmlTokens.map { Array($0.utf8) }, csv: csvTokens.map { Array($0.utf8) },
        yaml: yamlTokens.map { Array($0.utf8) }, query: queryTokens.map { Array($0.utf8) },
        base64: ["=", "==", "+", "/", "-", "_", " ", "\n", "%2B", "A", "AAAA"].map { Array($0.utf8) })

    // MARK: - JSON

    static let jsonTokens = [
        "{", "}", "[", "]", ":", ",", "\"", "\\", "\\u", "\\ud800", "null", "true", "false", "-", "0", "1e", ".", "E+",
        "\"CallbackCommand\":", "\"MsgBody\":", "\"List\":", "\"MsgType\":", "\u{FEFF}", "\u{00A0}", "\u{000C}", "//", "/*",
    ]

    /// Numbers and non-numbers for where a number was: edges of Int64 and Double, floats where
    /// integers belong, numeric strings, and forms JSON forbids.
    static let hostileNumbers = [
        "0", "-0", "1", "-1", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
        "-9223372036854775809", "18446744073709551616", "99999999999999999999999999999999", "1e308", "1e309",
        "-1e999", "1e-999", "0.5", "-0.0", "1.0", "1E2", "4294967296", "2147483648", "1741075200123",
        "17410752001230000000", "\"123\"", "\" 42 \"", "\"1e3\"", "\"-1\"", "\"\"", "\"abc\"", "\"9223372036854775808\"",
        "\"1.5\"", "\"1e400\"", "\"NaN\"", "true", "null", "NaN", "Infinity", "-Infinity", "0x10", "01", "1.", ".5",
        "1e", "+1", "-", "1_000", "１２３", "[1]", "{}",
    ]

    /// Values of every JSON type, to put where a value of another type was.
    static let jsonValues = [
        "null", "true", "false", "0", "-1", "\"\"", "\"x\"", "[]", "{}", "[1,2,3]", "{\"a\":1}", "[{}]", "[null]",
        "{\"MsgType\":\"TIMTextElem\"}", "\"\\u0000\"", "1e999", "[[[]]]", "\"accept\"", "[\"a\",{\"b\":[]}]",
    ]

    /// String contents (already JSON-escaped where it matters, some deliberately broken).
    static let hostileStrings = [
        "", " ", "\\u0000", "\\ud800", "\\udc00", "\\ud83d\\ude00", "\\uD800\\u0041", "\\u", "\\u12", "\\x41", "\\",
        "\\\\", "\\\"", "\\/", "\\n\\t\\r", "\t", "\u{01}", "😀👨‍👩‍👧", "e\u{301}", "\u{202E}RTL", "{{count}}", "%s%n",
        "<script>", "\\u2028\\u2029", "\u{FEFF}", "\u{0085}", "\r\n", " \\n \\t ", String(repeating: "A", count: 1000),
        String(repeating: "中", count: 200), "TIMTextElem", "accept", "State.StateChange", "Group.CallbackAfterSendMsg",
    ]

    /// Where things sit in (possibly broken) JSON text, found by a forgiving scan.
    struct JSONMap {
        var numbers: [Range<Int>] = []
        var strings: [Range<Int>] = []
        var keys: [Range<Int>] = []
        var valueStarts: [Int] = []
        var structural: [Int] = []
    }

    static func scanJSON(_ b: [UInt8]) -> JSONMap {
        var map = JSONMap()
        var i = 0
        while i < b.count {
            let c = b[i]
            switch c {
            case UInt8(ascii: "\""):
                let start = i
                i += 1
                while i < b.count, b[i] != UInt8(ascii: "\"") { i += b[i] == UInt8(ascii: "\\") ? 2 : 1 }
                i = min(i + 1, b.count)
                var j = i
                while j < b.count, b[j] == 0x20 || b[j] == 0x0A || b[j] == 0x0D || b[j] == 0x09 { j += 1 }
                if j < b.count, b[j] == UInt8(ascii: ":") { map.keys.append(start..<i) } else { map.strings.append(start..<i) }
                continue
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                let start = i
                while i < b.count, [UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E")].contains(b[i])
                    || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b[i])
                {
                    i += 1
                }
                map.numbers.append(start..<i)
                continue
            case UInt8(ascii: ":"), UInt8(ascii: "["), UInt8(ascii: ","):
                map.structural.append(i)
                map.valueStarts.append(i + 1)
            case UInt8(ascii: "{"), UInt8(ascii: "}"), UInt8(ascii: "]"):
                map.structural.append(i)
            default: break
            }
            i += 1
        }
        return map
    }

    /// Where the value starting at (or after blanks from) `start` ends: a string, a balanced
    /// container, or a bare token.
    static func jsonValueEnd(_ b: [UInt8], from start: Int) -> Int {
        var i = start
        while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
        guard i < b.count else { return b.count }
        if b[i] == UInt8(ascii: "\"") {
            i += 1
            while i < b.count, b[i] != UInt8(ascii: "\"") { i += b[i] == UInt8(ascii: "\\") ? 2 : 1 }
            return min(i + 1, b.count)
        }
        if b[i] == UInt8(ascii: "{") || b[i] == UInt8(ascii: "[") {
            var depth = 0
            while i < b.count {
                switch b[i] {
                case UInt8(ascii: "\""):
                    i += 1
                    while i < b.count, b[i] != UInt8(ascii: "\"") { i += b[i] == UInt8(ascii: "\\") ? 2 : 1 }
                case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 { return min(i + 1, b.count) }
                default: break
                }
                i += 1
            }
            return b.count
        }
        while i < b.count, ![UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x0A, 0x0D, 0x09].contains(b[i]) { i += 1 }
        return i
    }

    func jsonMutation(_ b: inout [UInt8], _ rng: inout HostileRandom) {
        let map = Self.scanJSON(b)
        switch rng.below(9) {
        case 0:
            guard let range = map.numbers.isEmpty ? nil : rng.pick(map.numbers) else { return byteMutation(&b, &rng) }
            b.replaceSubrange(range, with: Array(rng.pick(Self.hostileNumbers).utf8))
        case 1:
            guard !map.valueStarts.isEmpty else { return byteMutation(&b, &rng) }
            let start = rng.pick(map.valueStarts)
            b.replaceSubrange(start..<Self.jsonValueEnd(b, from: start), with: Array(rng.pick(Self.jsonValues).utf8))
        case 2:
            let pool = map.strings + (rng.percent(30) ? map.keys : [])
            guard let range = pool.isEmpty ? nil : rng.pick(pool), range.count >= 2 else { return byteMutation(&b, &rng) }
            b.replaceSubrange(range.lowerBound + 1..<range.upperBound - 1, with: Array(rng.pick(Self.hostileStrings).utf8))
        case 3:
            // Deep nesting: wrap a value (or the document) in many arrays or objects, closed or not.
            let start = map.valueStarts.isEmpty || rng.percent(20) ? 0 : rng.pick(map.valueStarts)
            let end = Self.jsonValueEnd(b, from: start)
            let depth = rng.pick([63, 64, 65, 100, 513, 5000])
            let object = rng.percent(30)
            let open = Array((object ? "{\"a\":" : "[").utf8)
            let close = Array((object ? "}" : "]").utf8)
            let closed = rng.percent(60)
            if closed { b.insert(contentsOf: Self.repeated(close, depth), at: end) }
            b.insert(contentsOf: Self.repeated(open, depth), at: start)
        case 4:
            // A duplicated member: the same key again, often with another value.
            guard let key = map.keys.isEmpty ? nil : rng.pick(map.keys) else { return byteMutation(&b, &rng) }
            var colon = key.upperBound
            while colon < b.count, b[colon] != UInt8(ascii: ":") { colon += 1 }
            let end = Self.jsonValueEnd(b, from: colon + 1)
            var member = Array(b[key.lowerBound..<min(end, b.count)])
            if rng.percent(50) { member = Array(b[key]) + Array(":".utf8) + Array(rng.pick(Self.jsonValues).utf8) }
            b.insert(contentsOf: Array(",".utf8) + member, at: min(end, b.count))
        case 5:
            guard !map.structural.isEmpty else { return byteMutation(&b, &rng) }
            let at = rng.pick(map.structural)
            if rng.percent(50) { b.remove(at: at) } else { b.insert(b[at], at: at) }
        case 6:
            switch rng.below(5) {
            case 0: b = Array("[".utf8) + b + Array("]".utf8)
            case 1: b = [0xEF, 0xBB, 0xBF] + b
            case 2: b += Array(rng.pick(["}", ",", " x", "\u{0}", "{}", "\n\n"]).utf8)
            case 3: b = Array(rng.pick(["\"x\"", "1", "null", "", " ", "[]"]).utf8)
            default: b = Array("{\"a\":".utf8) + b + Array("}".utf8)
            }
        case 7:
            // A key from another seed, so commands meet fields they do not expect.
            let source = rng.pick(seeds)
            let otherKeys = Self.scanJSON(source).keys
            guard let key = map.keys.isEmpty ? nil : rng.pick(map.keys), !otherKeys.isEmpty else { return byteMutation(&b, &rng) }
            b.replaceSubrange(key, with: source[rng.pick(otherKeys)])
        default:
            b.insert(contentsOf: Array(rng.pick(["\u{00A0}", "\u{000B}", "\u{000C}", "\u{3000}", "\u{2028}", "\t", "\r"]).utf8),
                     at: map.structural.isEmpty ? rng.below(b.count + 1) : rng.pick(map.structural))
        }
    }

    // MARK: - XML

    static let xmlTokens = [
        "<!DOCTYPE", "<!ENTITY", "&xxe;", "&lt;", "&amp;", "&#0;", "&#x0;", "&#xD800;", "&#x10FFFF;", "&#x110000;",
        "&#99999999999;", "&", "&;", "&#;", "<![CDATA[", "]]>", "<!--", "-->", "<?", "?>", "</", "/>", "<", ">", "\"", "'",
        "=", " xmlns:a=\"b\"", "<xml>", "</xml>", "<List>", "</List>", "<a:b>", "\u{FEFF}",
    ]

    /// DTDs in every spelling an attacker might try: XXE, internal entities, external subsets,
    /// parameter entities, element declarations, an entity bomb, and unterminated ones.
    static let doctypes = [
        "<!DOCTYPE xml [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>",
        "<!DOCTYPE xml [<!ENTITY xxe \"HOSTILE-ENTITY-EXPANDED\">]>",
        "<!doctype xml>",
        "<!DocType xml SYSTEM \"http://127.0.0.1:1/evil.dtd\">",
        "<!DOCTYPE xml PUBLIC \"-//x//y\" \"http://127.0.0.1:1/x.dtd\">",
        "<!DOCTYPE xml [<!ELEMENT xml ANY><!ATTLIST xml a CDATA \"x\">]>",
        "<!DOCTYPE x [<!ENTITY % p SYSTEM \"file:///etc/passwd\"> %p;]>",
        "<!DOCTYPE",
        "<!DOCTYPE xml [",
        " <!DOCTYPE xml>",
        "<!-- c --><!DOCTYPE xml>",
        "<!ENTITY xxe \"x\">",
        entityBomb,
    ]

    /// The classic "billion laughs": ten levels of ten references.
    static let entityBomb: String = {
        var s = "<!DOCTYPE lolz [<!ENTITY lol \"lol\">"
        for level in 1...9 {
            let previous = level == 1 ? "lol" : "lol\(level - 1)"
            s += "<!ENTITY lol\(level) \"" + String(repeating: "&\(previous);", count: 10) + "\">"
        }
        return s + "]>"
    }()

    /// XML declarations, including ones naming encodings other than UTF-8 in every legal spacing.
    static let declarations = [
        "<?xml version=\"1.0\"?>", "<?xml version=\"1.0\" encoding=\"UTF-8\"?>", "<?xml version=\"1.0\" encoding=\"UTF-16\"?>",
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>", "<?xml version=\"1.0\" encoding='utf8'?>",
        "<?xml version=\"1.0\" encoding=\"UTF-7\"?>", "<?xml version=\"1.0\" encoding\n=\n\"UTF-7\"?>",
        "<?xml version=\"1.0\" encoding\r\n=\"UTF-7\"?>", "<?xml version=\"1.0\" encoding =\t'UTF-7' ?>",
        "<?XML version=\"1.0\"?>", "<?xml version=\"2.0\"?>", "<?xml", "<?xml version=\"1.0\" standalone=\"no\"?>",
    ]

    func xmlMutation(_ b: inout [UInt8], _ rng: inout HostileRandom) {
        let tagEnds = b.indices.filter { b[$0] == UInt8(ascii: ">") }.map { $0 + 1 }
        func anywhereAfterTag() -> Int { tagEnds.isEmpty ? rng.below(b.count + 1) : rng.pick(tagEnds) }
        switch rng.below(12) {
        case 0:
            // A DOCTYPE at the start, after the declaration, or somewhere inside.
            let doctype = Array(rng.pick(Self.doctypes).utf8)
            let at: Int
            switch rng.below(3) {
            case 0: at = 0
            case 1: at = Self.find(Array("?>".utf8), in: b).map { $0 + 2 } ?? 0
            default: at = anywhereAfterTag()
            }
            b.insert(contentsOf: doctype, at: at)
            if rng.percent(50) {
                let ref = Array(rng.pick(["&xxe;", "&lol9;", "%p;", "&lol;"]).utf8)
                b.insert(contentsOf: ref, at: min(b.count, anywhereAfterTag() + doctype.count))
            }
        case 1: b.insert(contentsOf: Array(rng.pick(["&xxe;", "&lt;", "&amp;&quot;", "&#0;", "&#xD800;", "&#x10FFFF;", "&#x110000;", "&#99999999999;", "&", "&;", "&#;", "&#x;", "&unknown;", "&#65;&#x42;"]).utf8), at: anywhereAfterTag())
        case 2:
            // Break a CDATA section: end it early, never end it, or nest one.
            if let start = Self.find(Array("<![CDATA[".utf8), in: b) {
                let end = Self.find(Array("]]>".utf8), in: b, from: start) ?? b.count
                switch rng.below(3) {
                case 0: b.insert(contentsOf: Array("]]>".utf8), at: start + 9 + rng.below(max(1, end - start - 8)))
                case 1: if end < b.count { b.removeSubrange(end..<min(b.count, end + 3)) }
                default: b.insert(contentsOf: Array("<![CDATA[".utf8), at: start + 9)
                }
            } else {
                b.insert(contentsOf: Array(rng.pick(["<![CDATA[", "<![CDATA[x]]>", "]]>", "<![CDATA[<!DOCTYPE x>]]>"]).utf8), at: anywhereAfterTag())
            }
        case 3:
            // Unclosed: drop a closing tag, or open one that never closes.
            let closers = Self.findAll(Array("</".utf8), in: b)
            if let start = closers.isEmpty || rng.percent(30) ? nil : rng.pick(closers) {
                let end = (Self.find([UInt8(ascii: ">")], in: b, from: start) ?? b.count - 1) + 1
                b.removeSubrange(start..<min(end, b.count))
            } else {
                b.insert(contentsOf: Array(rng.pick(["<List>", "<x>", "<", "<a", "<a b=\"", "</", "<xml>"]).utf8), at: anywhereAfterTag())
            }
        case 4:
            // Mismatched: change one byte of a tag name.
            let opens = b.indices.filter { b[$0] == UInt8(ascii: "<") && $0 + 2 < b.count }
            guard !opens.isEmpty else { return byteMutation(&b, &rng) }
            let at = rng.pick(opens) + 1 + (rng.percent(50) ? 1 : 0)
            b[at] = rng.pick(Array("abcXYZ_:-.0!?/ ".utf8))
        case 5:
            let depth = rng.pick([63, 64, 65, 100, 1000, 5000])
            let at = anywhereAfterTag()
            if rng.percent(60) { b.insert(contentsOf: Self.repeated(Array("</a>".utf8), depth), at: at) }
            b.insert(contentsOf: Self.repeated(Array("<a>".utf8), depth), at: at)
        case 6:
            b.insert(contentsOf: Array((Self.entityBomb + "<xml><ToUserName>&lol9;</ToUserName></xml>").utf8), at: 0)
        case 7:
            // Another XML declaration, replacing the one there or in front.
            let declaration = Array(rng.pick(Self.declarations).utf8)
            if let start = Self.find(Array("<?xml".utf8), in: b), let end = Self.find(Array("?>".utf8), in: b, from: start) {
                b.replaceSubrange(start..<end + 2, with: declaration)
            } else {
                b.insert(contentsOf: declaration, at: 0)
            }
            if rng.percent(50) {
                // The payload a UTF-7 decoder would read as a DOCTYPE with an entity.
                let utf7 = "+ADw-!DOCTYPE xml +AFs-+ADw-!ENTITY xxe +ACI-HOSTILE-ENTITY-EXPANDED+ACI-+AD4-+AF0-+AD4-"
                b.insert(contentsOf: Array(utf7.utf8), at: (Self.find(Array("?>".utf8), in: b).map { $0 + 2 }) ?? 0)
            }
        case 8:
            b.insert(contentsOf: Array(rng.pick(["<!-- x -->", "<!-- -- -->", "<!--", "<?pi data?>", "<?pi", "<!-- <!DOCTYPE x> -->", "<!>", "<!X>"]).utf8), at: rng.percent(30) ? 0 : anywhereAfterTag())
        case 9:
            // Attributes on a start tag: repeated, namespaced, unquoted.
            let opens = b.indices.filter { b[$0] == UInt8(ascii: "<") && $0 + 1 < b.count && b[$0 + 1] != UInt8(ascii: "/") }
            guard !opens.isEmpty else { return byteMutation(&b, &rng) }
            var at = rng.pick(opens) + 1
            while at < b.count, b[at] != UInt8(ascii: ">"), b[at] != 0x20 { at += 1 }
            b.insert(contentsOf: Array(rng.pick([" a=\"1\" a=\"2\"", " xmlns:x=\"y\"", " a=1", " a=\"&xxe;\"", " a=\"<\"", " x:y=\"z\"", " a='\"'"]).utf8), at: at)
        case 10:
            // Text content swapped for something odd (leaf values become numbers, huge, empty...).
            let opens = tagEnds.filter { $0 < b.count && b[$0] != UInt8(ascii: "<") }
            guard !opens.isEmpty else { return byteMutation(&b, &rng) }
            let start = rng.pick(opens)
            let end = Self.find([UInt8(ascii: "<")], in: b, from: start) ?? b.count
            b.replaceSubrange(start..<end, with: Array(rng.pick(Self.hostileNumbers + ["", " ", "\u{0}", "中文", String(repeating: "9", count: 40)]).utf8))
        default:
            b.insert(contentsOf: rng.pick(dictionary), at: anywhereAfterTag())
        }
    }

    /// The first index of `needle` in `haystack` at or after `from` (kept in HostileOracles.swift,
    /// which the libFuzzer harness in `Tests/Fuzz/` compiles without this file).
    static func find(_ needle: [UInt8], in haystack: [UInt8], from: Int = 0) -> Int? {
        HostileOracles.find(needle, in: haystack, from: from)
    }

    static func findAll(_ needle: [UInt8], in haystack: [UInt8]) -> [Int] {
        var out: [Int] = []
        var from = 0
        while let i = find(needle, in: haystack, from: from) {
            out.append(i)
            from = i + 1
        }
        return out
    }

    // MARK: - Lines (CSV, YAML)

    static func lineRanges(_ b: [UInt8]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var start = 0
        for (i, byte) in b.enumerated() where byte == 0x0A {
            out.append(start..<i + 1)
            start = i + 1
        }
        if start < b.count { out.append(start..<b.count) }
        return out
    }

    private func lineMutation(_ b: inout [UInt8], _ rng: inout HostileRandom) {
        let lines = Self.lineRanges(b)
        guard !lines.isEmpty else { return byteMutation(&b, &rng) }
        let line = rng.pick(lines)
        switch rng.below(5) {
        case 0: b.insert(contentsOf: b[line], at: rng.pick(lines).lowerBound)
        case 1: b.removeSubrange(line)
        case 2:
            let other = rng.pick(lines)
            let (first, second) = line.lowerBound <= other.lowerBound ? (line, other) : (other, line)
            guard first.upperBound <= second.lowerBound else { return }
            let a = Array(b[first]), c = Array(b[second])
            b.replaceSubrange(second, with: a)
            b.replaceSubrange(first, with: c)
        case 3:
            let source = rng.pick(seeds)
            let sourceLines = Self.lineRanges(source)
            guard !sourceLines.isEmpty else { return }
            b.insert(contentsOf: source[rng.pick(sourceLines)], at: line.lowerBound)
        default: b.insert(contentsOf: Array(rng.pick(["\n", "\r\n", "   \n", ",,,\n", "\t\n"]).utf8), at: line.lowerBound)
        }
    }

    // MARK: - CSV

    static let csvTokens = [
        "\"", "\"\"", "\r", "\n", "\r\n", ",", "\u{FEFF}", "\t", "\"\n\"", "\u{0085}", "\u{2028}", "\u{0007}", "\u{001B}",
        "\u{007F}", " ", ",\"", "\",",
    ]

    static let csvFields = [
        "", " ", "用户", "a b", "o_" + String(repeating: "x", count: 63), "clinic", "vip", "=cmd|'/c calc'!A1", "😀",
        String(repeating: "p", count: 33), String(repeating: "中", count: 11), "parent_001", "teacher_zhang",
        "o6_bmjrPTlm6_2sgVt7hMZOPfL2M", "\"quoted\"", "\"a,b\"", "\"\"\"\"", "\"unterminated", "im_user_id", "openid",
        "\u{0000}", "x\u{0001}y", " padded ", "\u{3000}full\u{3000}",
    ]

    func csvMutation(_ b: inout [UInt8], _ rng: inout HostileRandom) {
        switch rng.below(6) {
        case 0, 1: b.insert(contentsOf: rng.pick(dictionary), at: rng.below(b.count + 1))
        case 2: lineMutation(&b, &rng)
        case 3:
            // Replace one field of one line.
            let lines = Self.lineRanges(b)
            guard !lines.isEmpty else { return byteMutation(&b, &rng) }
            let line = rng.pick(lines)
            var fields: [Range<Int>] = []
            var start = line.lowerBound
            for i in line where b[i] == UInt8(ascii: ",") || b[i] == 0x0A {
                fields.append(start..<i)
                start = i + 1
            }
            if start < line.upperBound { fields.append(start..<line.upperBound) }
            guard !fields.isEmpty else { return }
            b.replaceSubrange(rng.pick(fields), with: Array(rng.pick(Self.csvFields).utf8))
        case 4:
            // The header: renamed, repeated or dropped column.
            let header = Self.lineRanges(b).first ?? 0..<0
            let replacement = rng.pick([
                "im_user_id,openid,name,profile\n", "openid,im_user_id\n", "im_user_id,openid,name,profile,email\n",
                "im_user_id,im_user_id\n", "IM_USER_ID , OpenID,Name,PROFILE\n", "\n", "im_user_id\n", "name,profile\n",
                "\"im_user_id\",\"openid\",\"name\",\"profile\"\n", "im_user_id;openid;name;profile\n",
            ])
            b.replaceSubrange(header, with: Array(replacement.utf8))
        default:
            // Quote a span, balanced or not.
            guard !b.isEmpty else { return }
            let start = rng.below(b.count)
            let end = min(b.count, start + 1 + rng.below(40))
            if rng.percent(60) { b.insert(UInt8(ascii: "\""), at: end) }
            b.insert(UInt8(ascii: "\""), at: start)
        }
    }

    // MARK: - YAML

    static let yamlTokens = [
        "&a ", "*a", "!!binary ", "!!int ", "!!str ", "!!map ", "? ", "- ", "[", "]", "{", "}", "|", ">", "---\n", "...\n",
        "%YAML 1.2\n", ": ", "#", "\"", "'", "~", "null", "<<: *a\n", "\t", "\u{FEFF}", "\\", "@", "`", "%TAG ! x\n",
    ]

    /// Scalars for where a value was: bad and extreme numbers, durations and times, odd text.
    static let yamlScalars = [
        "0", "-1", "65536", "99999999999999999999", "0x1F", "0o17", "1e999", ".inf", "-.nan", "~", "null", "yes", "no", "on",
        "True", "\"\"", "''", "10", "10s", "0s", "-1s", "1h-30m", "500ms", "99999999999d", "99999999999d99999999999d",
        "999999999999d", "1d1d1d1d1d1d1d1d1d1d1d1d", "9223372036854775807ms", "24:00-24:00", "23:59-00:00",
        "00:00-23:59", "21:30-07:00,12:00-13:30", "7:00-7:00", "25:61-99:99", ",", "-", "Asia/Shanghai", "../../etc/passwd",
        "UTC", "GMT+8", "{{count}}", "{{", "{{{{count}}}}", "{{from}}", "\"{{nope}}\"", String(repeating: "x", count: 5000),
        "中文", "😀", "[a, b]", "{a: 1}", "[[[[", "{", "http://", "https://[::1", "ftp://x", "fixed", "sliding", "all",
        "mentions", "none", "one_time", "long_term", "formal", "zh_CN", "after_send", "full", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "&a x", "*a", "*unknown", "!!binary AAAA", "|\n  x", ">\n  y",
    ]

    func yamlMutation(_ b: inout [UInt8], _ rng: inout HostileRandom) {
        let lines = Self.lineRanges(b)
        switch rng.below(7) {
        case 0:
            // Rename a key.
            let keyed = lines.compactMap { Self.yamlKey(in: b, line: $0) }
            guard !keyed.isEmpty else { return byteMutation(&b, &rng) }
            let key = rng.pick(keyed)
            let suffix = rng.pick(["x", "_", "s", "1", "Z", "-old", " ", "中", ""])
            var name = Array(b[key])
            if suffix.isEmpty, name.count > 1 { name.remove(at: rng.below(name.count)) } else { name += Array(suffix.utf8) }
            b.replaceSubrange(key, with: name)
        case 1:
            // Indentation: one space more or less, or a tab.
            guard let line = lines.isEmpty ? nil : rng.pick(lines) else { return byteMutation(&b, &rng) }
            switch rng.below(3) {
            case 0: b.insert(0x20, at: line.lowerBound)
            case 1: if b[line.lowerBound] == 0x20 { b.remove(at: line.lowerBound) }
            default: b.insert(0x09, at: line.lowerBound)
            }
        case 2:
            // A value replaced by a hostile scalar or a collection.
            let values = lines.compactMap { line -> Range<Int>? in
                guard let colon = Self.find(Array(": ".utf8), in: Array(b[line])) else { return nil }
                let start = line.lowerBound + colon + 2
                var end = line.upperBound
                if end > start, b[end - 1] == 0x0A { end -= 1 }
                return start <= end ? start..<end : nil
            }
            guard !values.isEmpty else { return byteMutation(&b, &rng) }
            b.replaceSubrange(rng.pick(values), with: Array(rng.pick(Self.yamlScalars).utf8))
        case 3: lineMutation(&b, &rng)
        case 4:
            // An anchor on one value and an alias (or a merge) elsewhere.
            let values = lines.compactMap { line -> Int? in
                Self.find(Array(": ".utf8), in: Array(b[line])).map { line.lowerBound + $0 + 2 }
            }
            guard values.count >= 2 else { return byteMutation(&b, &rng) }
            let first = rng.pick(values)
            let second = rng.pick(values)
            let alias = Array(rng.pick(["*a ", "*a\n", "*b "]).utf8)
            let anchor = Array("&a ".utf8)
            if first > second {
                b.insert(contentsOf: anchor, at: first)
                b.insert(contentsOf: alias, at: second)
            } else {
                b.insert(contentsOf: alias, at: second)
                b.insert(contentsOf: anchor, at: first)
            }
        case 5:
            // A whole new section or key appended.
            b += Array(rng.pick([
                "\nserver:\n  port: 1\n", "\ndigest:\n  profiles:\n    x: {}\n", "\ntemplates: []\n", "\ntemplates:\n  - {}\n",
                "\nextra: 1\n", "\n? complex\n: key\n", "\ndigest:\n  profiles:\n    p:\n      window: 99999999999d99999999999d\n",
                "\n- list at top\n", "\nim: [1, 2]\n", "\ndigest:\n  urgent_senders: [\"\", a]\n",
            ]).utf8)
        default: b.insert(contentsOf: rng.pick(dictionary), at: rng.below(b.count + 1))
        }
    }

    /// The bytes of the key on a `key: value` or `key:` line, if it has one.
    static func yamlKey(in b: [UInt8], line: Range<Int>) -> Range<Int>? {
        var start = line.lowerBound
        while start < line.upperBound, b[start] == 0x20 || b[start] == UInt8(ascii: "-") { start += 1 }
        var end = start
        while end < line.upperBound, b[end] == UInt8(ascii: "_") || (b[end] >= 0x61 && b[end] <= 0x7A) || (b[end] >= 0x30 && b[end] <= 0x39) { end += 1 }
        guard end > start, end < line.upperBound, b[end] == UInt8(ascii: ":") else { return nil }
        return start..<end
    }

    // MARK: - Query strings and base64

    static let queryTokens = ["&", "=", "%", "%zz", "%00", "%2", "&&", "==", "+", "%26", "%3D", "signature=", "nonce=", "timestamp=", "encrypt_type=aes", "msg_signature=", "中", "%E4%B8"]

    func queryMutation(_ b: inout [UInt8], _ rng: inout HostileRandom) {
        switch rng.below(3) {
        case 0: b.insert(contentsOf: rng.pick(dictionary), at: rng.below(b.count + 1))
        case 1:
            // A parameter repeated with another value.
            let params = b.split(separator: UInt8(ascii: "&"))
            guard let p = params.isEmpty ? nil : rng.pick(params) else { return }
            let name: [UInt8] = Array(p.prefix { $0 != UInt8(ascii: "=") })
            b.append(UInt8(ascii: "&"))
            b.append(contentsOf: name)
            b.append(contentsOf: Array("=x".utf8))
        default:
            // A value's case flipped (hex signatures compare case-insensitively).
            guard !b.isEmpty else { return }
            let i = rng.below(b.count)
            if (0x61...0x7A).contains(b[i]) { b[i] -= 0x20 } else if (0x41...0x5A).contains(b[i]) { b[i] += 0x20 }
        }
    }

    func base64Mutation(_ b: inout [UInt8], _ rng: inout HostileRandom) {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        switch rng.below(4) {
        case 0:
            guard !b.isEmpty else { return }
            b[rng.below(b.count)] = rng.pick(alphabet)
        case 1:
            // Whole 4-character groups dropped or added keep it decodable but change the length.
            let groups = b.count / 4
            if groups > 1, rng.percent(50) {
                let g = rng.below(groups)
                b.removeSubrange(g * 4..<g * 4 + 4)
            } else {
                b.insert(contentsOf: (0..<4).map { _ in rng.pick(alphabet) }, at: 4 * rng.below(groups + 1))
            }
        case 2:
            while b.last == UInt8(ascii: "=") { b.removeLast() }
            b += Array(rng.pick(["", "=", "==", "===", "A=", "AA=="]).utf8)
        default: b.insert(contentsOf: rng.pick(dictionary), at: rng.below(b.count + 1))
        }
    }
}
