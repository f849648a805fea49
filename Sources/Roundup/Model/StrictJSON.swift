import Foundation

/// A JSON value read strictly by RFC 8259, the one reader for every JSON body Roundup takes (IM
/// callbacks, WeChat pushes, the admin API) and for IM's own JSON. Callbacks are on the hot path
/// (~20,000/s), and Foundation's JSON readers cost ~15–20 µs for a typical 600-byte body on Linux;
/// this byte-level parser and the lenient accessors below take a fraction of that and read every
/// field in one pass.
enum StrictJSON: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    /// An integer above `Int64.max` that fits in 64 bits (WeChat's `MsgID` may), kept exact.
    case uint(UInt64)
    case double(Double)
    case string(String)
    case array([StrictJSON])
    case object(StrictJSONObject)

    /// Why a document is not strict JSON, with the byte offset where reading stopped.
    struct SyntaxError: Error, Sendable, Equatable, CustomStringConvertible {
        /// What broke the grammar.
        enum Reason: Sendable, Equatable {
            case unexpectedEnd
            case unexpectedCharacter
            case trailingComma
            case comment
            case nonFiniteNumber
            case invalidNumber
            case loneSurrogate
            case duplicateKey
            case byteOrderMark
            case trailingContent
            case tooDeep
            case invalidUTF8
            case controlCharacter
            case invalidEscape
        }

        let offset: Int
        let reason: Reason

        init(offset: Int, reason: Reason = .unexpectedCharacter) {
            self.offset = offset
            self.reason = reason
        }

        /// A phrase for an error sentence, e.g. "a trailing comma at byte 12".
        var description: String {
            let what: String
            switch reason {
            case .unexpectedEnd: what = "the document ends early"
            case .unexpectedCharacter: what = "an unexpected character"
            case .trailingComma: what = "a trailing comma"
            case .comment: what = "a comment, which JSON does not have"
            case .nonFiniteNumber: what = "NaN or Infinity, which are not JSON numbers"
            case .invalidNumber: what = "a malformed number"
            case .loneSurrogate: what = "a lone UTF-16 surrogate escape"
            case .duplicateKey: what = "a key that appears twice in one object"
            case .byteOrderMark: what = "a byte-order mark"
            case .trailingContent: what = "more text after the document, such as a second top-level value"
            case .tooDeep: what = "nesting deeper than \(StrictJSONParser.maximumDepth) levels"
            case .invalidUTF8: what = "bytes that are not UTF-8"
            case .controlCharacter: what = "an unescaped control character in a string"
            case .invalidEscape: what = "an invalid escape in a string"
            }
            return "\(what) at byte \(offset)"
        }
    }

    /// Parses one complete JSON document: one value, surrounded by nothing but JSON whitespace.
    /// A byte-order mark, a trailing comma, a comment, `NaN`/`Infinity`, a lone surrogate, a
    /// duplicate key, bytes that are not UTF-8 or a second value are each a `SyntaxError`.
    static func parse(_ data: Data) throws(SyntaxError) -> StrictJSON {
        let result: Result<StrictJSON, SyntaxError> = data.withUnsafeBytes { raw in
            var parser = StrictJSONParser(bytes: raw.bindMemory(to: UInt8.self))
            do throws(SyntaxError) {
                return .success(try parser.document())
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Parses JSON text.
    static func parse(_ text: String) throws(SyntaxError) -> StrictJSON { try parse(Data(text.utf8)) }

    /// The value under `key` when this is an object.
    subscript(key: String) -> StrictJSON? {
        guard case .object(let object) = self else { return nil }
        return object[key]
    }

    /// The object, when this is one.
    var object: StrictJSONObject? {
        guard case .object(let object) = self else { return nil }
        return object
    }

    /// The elements, when this is an array.
    var array: [StrictJSON]? {
        guard case .array(let elements) = self else { return nil }
        return elements
    }

    /// A string, or an integer written as text (ids that look numeric); nil otherwise.
    var string: String? {
        switch self {
        case .string(let text): return text
        case .int(let value): return String(value)
        case .uint(let value): return String(value)
        default: return nil
        }
    }

    /// An integer from a number, an integral float or a numeric string (IM quotes `EventTime`
    /// sometimes); nil otherwise.
    var int64: Int64? {
        switch self {
        case .int(let value): return value
        case .double(let value): return value.isFinite ? Int64(exactly: value.rounded(.towardZero)) : nil
        case .string(let text):
            if let value = Int64(text) { return value }
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            if let value = Int64(trimmed) { return value }
            guard let real = Double(trimmed), real.isFinite else { return nil }
            return Int64(exactly: real.rounded(.towardZero))
        default: return nil
        }
    }

    /// A 0/1 flag from a number, a boolean or a string; nil when it is none of those.
    var flag: Bool? {
        switch self {
        case .bool(let value): return value
        case .int(let value): return value != 0
        case .uint(let value): return value != 0
        case .double(let value): return value != 0
        case .string(let text):
            switch text.lowercased().trimmingCharacters(in: .whitespaces) {
            case "1", "true": return true
            case "0", "false", "": return false
            default: return nil
            }
        default: return nil
        }
    }
}

/// A JSON object's members in document order, each key once; lookups are linear, which beats
/// hashing for the dozen keys of an IM payload.
struct StrictJSONObject: Sendable, Equatable {
    var members: [(key: String, value: StrictJSON)]

    static func == (lhs: StrictJSONObject, rhs: StrictJSONObject) -> Bool {
        lhs.members.count == rhs.members.count
            && zip(lhs.members, rhs.members).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    /// The value under `key`, nil when absent (a JSON `null` is `.null`).
    subscript(key: String) -> StrictJSON? {
        for member in members where member.key == key { return member.value }
        return nil
    }
}

/// A recursive-descent JSON reader over UTF-8 bytes, strict about syntax (RFC 8259) and bounded in depth.
struct StrictJSONParser {
    let bytes: UnsafeBufferPointer<UInt8>
    var index = 0
    var depth = 0
    /// Whether the last string read had an escape (so its bytes differ from the input's).
    var escaped = false
    static let maximumDepth = 64
    /// Up to this many members, a new key is checked against the earlier ones one by one; a
    /// larger object switches to a hash set, so a hostile body of many keys stays linear.
    static let linearKeyCheckLimit = 16

    init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    /// The whole input as one value with nothing but whitespace after it.
    mutating func document() throws(StrictJSON.SyntaxError) -> StrictJSON {
        if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF { throw failure(.byteOrderMark) }
        let result = try value()
        skipWhitespace()
        guard index == bytes.count else { throw unexpected(otherwise: .trailingContent) }
        return result
    }

    /// Skips JSON whitespace: space, tab, line feed and carriage return, nothing else.
    mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    /// The error `reason` at the current byte.
    func failure(_ reason: StrictJSON.SyntaxError.Reason) -> StrictJSON.SyntaxError {
        StrictJSON.SyntaxError(offset: index, reason: reason)
    }

    /// The error for the byte at `index`, which the grammar does not allow there: the end of the
    /// input, the start of a comment, or `otherwise`.
    func unexpected(otherwise reason: StrictJSON.SyntaxError.Reason = .unexpectedCharacter) -> StrictJSON.SyntaxError {
        guard index < bytes.count else { return failure(.unexpectedEnd) }
        return failure(bytes[index] == UInt8(ascii: "/") ? .comment : reason)
    }

    /// One value of any kind, after optional whitespace.
    mutating func value() throws(StrictJSON.SyntaxError) -> StrictJSON {
        skipWhitespace()
        guard index < bytes.count else { throw failure(.unexpectedEnd) }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        case UInt8(ascii: "N"), UInt8(ascii: "I"): throw failure(.nonFiniteNumber)
        default: throw unexpected()
        }
    }

    /// `true`, `false` or `null`, spelled exactly.
    mutating func literal(_ word: StaticString) throws(StrictJSON.SyntaxError) {
        let count = word.utf8CodeUnitCount
        for offset in 0..<count {
            guard index + offset < bytes.count else { throw StrictJSON.SyntaxError(offset: index + offset, reason: .unexpectedEnd) }
            guard bytes[index + offset] == word.utf8Start[offset] else {
                throw StrictJSON.SyntaxError(offset: index + offset, reason: .unexpectedCharacter)
            }
        }
        index += count
    }

    /// An object starting at `{`, each key once.
    mutating func object() throws(StrictJSON.SyntaxError) -> StrictJSON {
        depth += 1
        guard depth <= Self.maximumDepth else { throw failure(.tooDeep) }
        defer { depth -= 1 }
        index += 1
        var members: [(key: String, value: StrictJSON)] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return .object(StrictJSONObject(members: members))
        }
        members.reserveCapacity(16)
        // Keys seen so far, one bit each by a sketch of their bytes: a key whose bit is clear
        // cannot repeat an earlier one, so most keys are never compared with the others.
        var sketches: UInt64 = 0
        var keys: Set<ExactKey> = []
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else {
                throw unexpected(otherwise: !members.isEmpty && index < bytes.count && bytes[index] == UInt8(ascii: "}")
                    ? .trailingComma : .unexpectedCharacter)
            }
            let keyStart = index
            escaped = false
            let key = try string()
            let keyCount = index - keyStart - 2
            let bit = escaped || keyCount == 0
                ? ExactKey.sketch(key) : ExactKey.sketch(count: keyCount, first: bytes[keyStart + 1], last: bytes[index - 2])
            if members.count < Self.linearKeyCheckLimit {
                if sketches & bit != 0 {
                    for member in members where ExactKey.same(member.key, key) {
                        throw StrictJSON.SyntaxError(offset: keyStart, reason: .duplicateKey)
                    }
                }
                sketches |= bit
            } else {
                if keys.isEmpty { keys = Set(members.map { ExactKey($0.key) }) }
                guard keys.insert(ExactKey(key)).inserted else { throw StrictJSON.SyntaxError(offset: keyStart, reason: .duplicateKey) }
            }
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw unexpected() }
            index += 1
            members.append((key, try value()))
            skipWhitespace()
            guard index < bytes.count else { throw failure(.unexpectedEnd) }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
            } else if bytes[index] == UInt8(ascii: "}") {
                index += 1
                return .object(StrictJSONObject(members: members))
            } else {
                throw unexpected()
            }
        }
    }

    /// An array starting at `[`.
    mutating func array() throws(StrictJSON.SyntaxError) -> StrictJSON {
        depth += 1
        guard depth <= Self.maximumDepth else { throw failure(.tooDeep) }
        defer { depth -= 1 }
        index += 1
        var elements: [StrictJSON] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array(elements)
        }
        while true {
            elements.append(try value())
            skipWhitespace()
            guard index < bytes.count else { throw failure(.unexpectedEnd) }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                skipWhitespace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "]") { throw failure(.trailingComma) }
            } else if bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(elements)
            } else {
                throw unexpected()
            }
        }
    }

    /// A string starting at the opening quote; its bytes must be UTF-8 and its escapes must not
    /// leave a surrogate unpaired.
    mutating func string() throws(StrictJSON.SyntaxError) -> String {
        index += 1
        let start = index
        var ascii = true
        // Fast path: no escapes.
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let slice = UnsafeBufferPointer(rebasing: bytes[start..<index])
                if ascii {
                    index += 1
                    return String(decoding: slice, as: UTF8.self)
                }
                guard let text = String(validating: slice, as: UTF8.self) else {
                    throw StrictJSON.SyntaxError(offset: start, reason: .invalidUTF8)
                }
                index += 1
                return text
            }
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { throw failure(.controlCharacter) }
            if byte >= 0x80 { ascii = false }
            index += 1
        }
        escaped = true
        var buffer = Array(bytes[start..<index])
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                guard let text = String(validating: buffer, as: UTF8.self) else {
                    throw StrictJSON.SyntaxError(offset: start, reason: .invalidUTF8)
                }
                index += 1
                return text
            case UInt8(ascii: "\\"):
                index += 1
                guard index < bytes.count else { throw failure(.unexpectedEnd) }
                let escape = bytes[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): buffer.append(escape)
                case UInt8(ascii: "b"): buffer.append(0x08)
                case UInt8(ascii: "f"): buffer.append(0x0C)
                case UInt8(ascii: "n"): buffer.append(0x0A)
                case UInt8(ascii: "r"): buffer.append(0x0D)
                case UInt8(ascii: "t"): buffer.append(0x09)
                case UInt8(ascii: "u"): UTF8.encode(try unicodeEscape()) { buffer.append($0) }
                default:
                    index -= 2
                    throw failure(.invalidEscape)
                }
            default:
                if byte < 0x20 { throw failure(.controlCharacter) }
                buffer.append(byte)
                index += 1
            }
        }
        throw failure(.unexpectedEnd)
    }

    /// The scalar of a `\uXXXX` escape (the `\u` already read), joining a surrogate pair; a
    /// surrogate without its partner is an error.
    mutating func unicodeEscape() throws(StrictJSON.SyntaxError) -> Unicode.Scalar {
        let escapeStart = index - 2
        let first = try hex4()
        if (0xDC00..<0xE000).contains(first) {
            throw StrictJSON.SyntaxError(offset: escapeStart, reason: .loneSurrogate)
        }
        guard (0xD800..<0xDC00).contains(first) else {
            // Not a surrogate, so always a scalar.
            return Unicode.Scalar(first) ?? "\u{FFFD}"
        }
        guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
            throw StrictJSON.SyntaxError(offset: escapeStart, reason: .loneSurrogate)
        }
        index += 2
        let second = try hex4()
        guard (0xDC00..<0xE000).contains(second) else {
            throw StrictJSON.SyntaxError(offset: escapeStart, reason: .loneSurrogate)
        }
        return Unicode.Scalar(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)) ?? "\u{FFFD}"
    }

    /// The four hex digits of a `\u` escape.
    mutating func hex4() throws(StrictJSON.SyntaxError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard index < bytes.count else { throw failure(.unexpectedEnd) }
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw failure(.invalidEscape)
            }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }

    /// A number per RFC 8259's grammar: an integer that fits is `.int` (or `.uint` above
    /// `Int64.max`), anything else `.double` (infinite when the exponent is out of range).
    mutating func number() throws(StrictJSON.SyntaxError) -> StrictJSON {
        let start = index
        var negative = false
        if bytes[index] == UInt8(ascii: "-") {
            negative = true
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "I") { throw failure(.nonFiniteNumber) }
        }
        guard index < bytes.count else { throw failure(.unexpectedEnd) }
        guard isDigit(bytes[index]) else { throw failure(.invalidNumber) }
        var integral = true
        var magnitude: UInt64 = 0
        var overflow = false
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else {
            while index < bytes.count, isDigit(bytes[index]) {
                let (times10, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (sum, o2) = times10.addingReportingOverflow(UInt64(bytes[index] - UInt8(ascii: "0")))
                overflow = overflow || o1 || o2
                magnitude = sum
                index += 1
            }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            integral = false
            index += 1
            guard index < bytes.count, isDigit(bytes[index]) else { throw unexpectedInNumber() }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            integral = false
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard index < bytes.count, isDigit(bytes[index]) else { throw unexpectedInNumber() }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if integral, !overflow {
            if negative, magnitude <= UInt64(Int64.max) + 1 {
                return .int(magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude))
            }
            if !negative { return magnitude <= UInt64(Int64.max) ? .int(Int64(magnitude)) : .uint(magnitude) }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard let value = Double(text) else { throw StrictJSON.SyntaxError(offset: start, reason: .invalidNumber) }
        return .double(value)
    }

    /// The error for a number whose fraction or exponent has no digit.
    func unexpectedInNumber() -> StrictJSON.SyntaxError {
        index < bytes.count ? failure(.invalidNumber) : failure(.unexpectedEnd)
    }

    func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
}

/// A key compared and hashed by its UTF-8 bytes, as RFC 8259 compares names: Swift's `String`
/// equality would treat canonically equivalent but different keys (`é` and `e` + U+0301) as one.
private struct ExactKey: Hashable {
    let text: String

    init(_ text: String) { self.text = text }

    /// One bit of 64 chosen by a key's length and its first and last bytes.
    @inline(__always)
    static func sketch(count: Int, first: UInt8, last: UInt8) -> UInt64 {
        let mixed = (UInt64(truncatingIfNeeded: count) &* 0x9E37_79B9_7F4A_7C15) ^ (UInt64(first) &* 0xBF58_476D_1CE4_E5B9)
            ^ (UInt64(last) &* 0x94D0_49BB_1331_11EB)
        return 1 << (mixed >> 58)
    }

    /// The sketch of a decoded key.
    static func sketch(_ key: String) -> UInt64 {
        let utf8 = key.utf8
        guard let first = utf8.first, let last = utf8.last else { return 1 }
        return sketch(count: utf8.count, first: first, last: last)
    }

    /// Whether two keys have the same UTF-8 bytes.
    static func same(_ a: String, _ b: String) -> Bool {
        a.utf8.count == b.utf8.count && a.utf8.elementsEqual(b.utf8)
    }

    static func == (lhs: ExactKey, rhs: ExactKey) -> Bool { same(lhs.text, rhs.text) }

    func hash(into hasher: inout Hasher) {
        for byte in text.utf8 { hasher.combine(byte) }
    }
}
