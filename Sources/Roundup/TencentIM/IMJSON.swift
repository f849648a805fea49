import Foundation

/// A parsed JSON value for IM payloads. Callbacks are on the hot path (~20,000/s), and Foundation's
/// JSON readers cost ~15–20 µs for a typical 600-byte body on Linux; this byte-level parser and the
/// lenient accessors below take a fraction of that and read every field in one pass.
enum IMJSON: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([IMJSON])
    case object(IMJSONObject)

    /// Why a document is not JSON, with the byte offset where reading stopped.
    struct SyntaxError: Error, Sendable, Equatable {
        let offset: Int
    }

    /// Parses one complete JSON document (a leading UTF-8 BOM and surrounding whitespace allowed).
    static func parse(_ data: Data) throws(SyntaxError) -> IMJSON {
        let result: Result<IMJSON, SyntaxError> = data.withUnsafeBytes { raw in
            var parser = IMJSONParser(bytes: raw.bindMemory(to: UInt8.self))
            do throws(SyntaxError) {
                return .success(try parser.document())
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Parses JSON text.
    static func parse(_ text: String) throws(SyntaxError) -> IMJSON { try parse(Data(text.utf8)) }

    /// The value under `key` when this is an object.
    subscript(key: String) -> IMJSON? {
        guard case .object(let object) = self else { return nil }
        return object[key]
    }

    /// The object, when this is one.
    var object: IMJSONObject? {
        guard case .object(let object) = self else { return nil }
        return object
    }

    /// The elements, when this is an array.
    var array: [IMJSON]? {
        guard case .array(let elements) = self else { return nil }
        return elements
    }

    /// A string, or an integer written as text (ids that look numeric); nil otherwise.
    var string: String? {
        switch self {
        case .string(let text): return text
        case .int(let value): return String(value)
        default: return nil
        }
    }

    /// An integer from a number, an integral float or a numeric string (IM quotes `EventTime`
    /// sometimes, tencent-im.md §4); nil otherwise.
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

/// A JSON object's members in document order; lookups are linear, which beats hashing for the
/// dozen keys of an IM payload. A repeated key's last value wins, as in most parsers.
struct IMJSONObject: Sendable, Equatable {
    var members: [(key: String, value: IMJSON)]

    static func == (lhs: IMJSONObject, rhs: IMJSONObject) -> Bool {
        lhs.members.count == rhs.members.count
            && zip(lhs.members, rhs.members).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    /// The value under `key`, nil when absent (a JSON `null` is `.null`).
    subscript(key: String) -> IMJSON? {
        var index = members.count
        while index > 0 {
            index -= 1
            if members[index].key == key { return members[index].value }
        }
        return nil
    }
}

/// A recursive-descent JSON reader over UTF-8 bytes, strict about syntax (RFC 8259) and bounded in depth.
private struct IMJSONParser {
    let bytes: UnsafeBufferPointer<UInt8>
    var index = 0
    var depth = 0
    static let maximumDepth = 64

    init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    /// The whole input as one value with nothing but whitespace after it.
    mutating func document() throws(IMJSON.SyntaxError) -> IMJSON {
        if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF { index = 3 }
        let result = try value()
        skipWhitespace()
        guard index == bytes.count else { throw IMJSON.SyntaxError(offset: index) }
        return result
    }

    mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    func failure() -> IMJSON.SyntaxError { IMJSON.SyntaxError(offset: index) }

    mutating func value() throws(IMJSON.SyntaxError) -> IMJSON {
        skipWhitespace()
        guard index < bytes.count else { throw failure() }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        default: return try number()
        }
    }

    mutating func literal(_ word: StaticString) throws(IMJSON.SyntaxError) {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw failure() }
        for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] { throw failure() }
        index += count
    }

    mutating func object() throws(IMJSON.SyntaxError) -> IMJSON {
        depth += 1
        guard depth <= Self.maximumDepth else { throw failure() }
        defer { depth -= 1 }
        index += 1
        var members: [(key: String, value: IMJSON)] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return .object(IMJSONObject(members: members))
        }
        members.reserveCapacity(16)
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw failure() }
            let key = try string()
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw failure() }
            index += 1
            members.append((key, try value()))
            skipWhitespace()
            guard index < bytes.count else { throw failure() }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
            } else if bytes[index] == UInt8(ascii: "}") {
                index += 1
                return .object(IMJSONObject(members: members))
            } else {
                throw failure()
            }
        }
    }

    mutating func array() throws(IMJSON.SyntaxError) -> IMJSON {
        depth += 1
        guard depth <= Self.maximumDepth else { throw failure() }
        defer { depth -= 1 }
        index += 1
        var elements: [IMJSON] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array(elements)
        }
        while true {
            elements.append(try value())
            skipWhitespace()
            guard index < bytes.count else { throw failure() }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
            } else if bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(elements)
            } else {
                throw failure()
            }
        }
    }

    /// A string starting at the opening quote; invalid UTF-8 is repaired with U+FFFD, never fatal.
    mutating func string() throws(IMJSON.SyntaxError) -> String {
        index += 1
        let start = index
        // Fast path: no escapes.
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
                index += 1
                return text
            }
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { throw failure() }
            index += 1
        }
        var buffer = Array(bytes[start..<index])
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                return String(decoding: buffer, as: UTF8.self)
            case UInt8(ascii: "\\"):
                index += 1
                guard index < bytes.count else { throw failure() }
                let escape = bytes[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): buffer.append(escape)
                case UInt8(ascii: "b"): buffer.append(0x08)
                case UInt8(ascii: "f"): buffer.append(0x0C)
                case UInt8(ascii: "n"): buffer.append(0x0A)
                case UInt8(ascii: "r"): buffer.append(0x0D)
                case UInt8(ascii: "t"): buffer.append(0x09)
                case UInt8(ascii: "u"): appendScalar(try unicodeEscape(), to: &buffer)
                default: throw failure()
                }
            default:
                if byte < 0x20 { throw failure() }
                buffer.append(byte)
                index += 1
            }
        }
        throw failure()
    }

    /// The scalar of a `\uXXXX` escape (the `\u` already read), joining a surrogate pair; a lone
    /// surrogate becomes U+FFFD.
    mutating func unicodeEscape() throws(IMJSON.SyntaxError) -> Unicode.Scalar {
        let first = try hex4()
        if (0xD800..<0xDC00).contains(first) {
            if index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") {
                let save = index
                index += 2
                let second = try hex4()
                if (0xDC00..<0xE000).contains(second) {
                    let value = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                    return Unicode.Scalar(value) ?? "\u{FFFD}"
                }
                index = save
            }
            return "\u{FFFD}"
        }
        return Unicode.Scalar(first) ?? "\u{FFFD}"
    }

    mutating func hex4() throws(IMJSON.SyntaxError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw failure() }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw failure()
            }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }

    func appendScalar(_ scalar: Unicode.Scalar, to buffer: inout [UInt8]) {
        UTF8.encode(scalar) { buffer.append($0) }
    }

    /// A number per RFC 8259's grammar: an integer that fits is `.int`, anything else `.double`.
    mutating func number() throws(IMJSON.SyntaxError) -> IMJSON {
        let start = index
        var negative = false
        if bytes[index] == UInt8(ascii: "-") {
            negative = true
            index += 1
        }
        guard index < bytes.count, isDigit(bytes[index]) else { throw failure() }
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
            guard index < bytes.count, isDigit(bytes[index]) else { throw failure() }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            integral = false
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard index < bytes.count, isDigit(bytes[index]) else { throw failure() }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if integral, !overflow {
            if negative, magnitude <= UInt64(Int64.max) + 1 {
                return .int(magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude))
            }
            if !negative, magnitude <= UInt64(Int64.max) { return .int(Int64(magnitude)) }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard let value = Double(text) else { throw IMJSON.SyntaxError(offset: start) }
        return .double(value)
    }

    func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
}
