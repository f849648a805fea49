import Foundation
import Testing

@testable import Roundup

@Suite("Strict JSON reader")
struct StrictJSONTests {
    @Test("scalars, arrays and objects parse to their values")
    func values() throws {
        let json = try StrictJSON.parse(#" {"a":1,"b":[true,false,null],"c":"x","d":-2.5,"e":{},"f":[],"g":1e3} "#)
        #expect(json["a"] == .int(1))
        #expect(json["b"] == .array([.bool(true), .bool(false), .null]))
        #expect(json["c"] == .string("x"))
        #expect(json["d"] == .double(-2.5))
        #expect(json["e"] == .object(StrictJSONObject(members: [])))
        #expect(json["f"] == .array([]))
        #expect(json["g"] == .double(1000))
        #expect(json["missing"] == nil)
        #expect(json.object?.members.map(\.key) == ["a", "b", "c", "d", "e", "f", "g"])
    }

    @Test(
        "integers stay exact up to 64 bits (unsigned above Int64.max); larger ones become doubles",
        arguments: [
            ("9223372036854775807", StrictJSON.int(.max)), ("-9223372036854775808", .int(.min)),
            ("9223372036854775808", .uint(9_223_372_036_854_775_808)), ("18446744073709551615", .uint(.max)),
            ("18446744073709551616", .double(18_446_744_073_709_551_616)), ("-9223372036854775809", .double(-9_223_372_036_854_775_808)),
            ("0", .int(0)), ("-0", .int(0)), ("1741075200123", .int(1_741_075_200_123)),
        ])
    func integers(text: String, expected: StrictJSON) throws {
        #expect(try StrictJSON.parse(text) == expected)
    }

    @Test(
        "escapes decode and surrogate pairs join",
        arguments: [
            (#""a\"b\\c\/d\n\t\r\b\f""#, "a\"b\\c/d\n\t\r\u{8}\u{C}"),
            (#""\u4f60\u597D""#, "你好"),
            (#""\ud83d\ude00""#, "😀"),
            (#""\u0000\u2028""#, "\u{0}\u{2028}"),
            (#""中文\n混合""#, "中文\n混合"),
            ("\"\u{FEFF}inside\"", "\u{FEFF}inside"),
        ])
    func strings(text: String, expected: String) throws {
        #expect(try StrictJSON.parse(text) == .string(expected))
    }

    /// A document RFC 8259 does not allow, and why.
    struct Malformed: Sendable, CustomTestStringConvertible {
        let bytes: [UInt8]
        let reason: StrictJSON.SyntaxError.Reason
        let offset: Int?
        var testDescription: String { String(decoding: bytes, as: UTF8.self).debugDescription }

        init(_ text: String, _ reason: StrictJSON.SyntaxError.Reason, at offset: Int? = nil) {
            self.init(bytes: Array(text.utf8), reason, at: offset)
        }

        init(bytes: [UInt8], _ reason: StrictJSON.SyntaxError.Reason, at offset: Int? = nil) {
            self.bytes = bytes
            self.reason = reason
            self.offset = offset
        }
    }

    static let malformed: [Malformed] = [
        Malformed(#"{"a":1,}"#, .trailingComma, at: 7),
        Malformed("[1,]", .trailingComma, at: 3),
        Malformed("[1, \n ]", .trailingComma),
        Malformed("{\"a\":1 // note\n}", .comment, at: 7),
        Malformed("// note\n{}", .comment, at: 0),
        Malformed(#"{/* note */"a":1}"#, .comment, at: 1),
        Malformed("[1,/* note */2]", .comment),
        Malformed(#"{"a":NaN}"#, .nonFiniteNumber, at: 5),
        Malformed(#"{"a":Infinity}"#, .nonFiniteNumber),
        Malformed(#"{"a":-Infinity}"#, .nonFiniteNumber),
        Malformed(#""\ud800""#, .loneSurrogate, at: 1),
        Malformed(#""a\ud83dx""#, .loneSurrogate, at: 2),
        Malformed(#""\ud800\u0041""#, .loneSurrogate),
        Malformed(#""\udc00""#, .loneSurrogate),
        Malformed(#""\ude00\ud83d""#, .loneSurrogate),
        Malformed(#"{"a":1,"a":1}"#, .duplicateKey, at: 7),
        Malformed(#"{"x":{"b":1,"c":2,"b":3}}"#, .duplicateKey),
        Malformed(#"{"\u0061":1,"a":2}"#, .duplicateKey),
        Malformed(bytes: [0xEF, 0xBB, 0xBF] + Array(#"{"a":1}"#.utf8), .byteOrderMark, at: 0),
        Malformed("{} {}", .trailingContent, at: 3),
        Malformed(#"{"a":1}{"a":1}"#, .trailingContent),
        Malformed("1 2", .trailingContent),
        Malformed("[1]]", .trailingContent),
        Malformed(bytes: [0x22, 0xFF, 0x61, 0x22], .invalidUTF8),
        Malformed(bytes: [0x22, 0xED, 0xA0, 0x80, 0x22], .invalidUTF8),
        Malformed(bytes: [0x22, 0x5C, 0x6E, 0xC3, 0x22], .invalidUTF8),
        Malformed("\"a\nb\"", .controlCharacter),
        Malformed(#""\x""#, .invalidEscape),
        Malformed(#""\u12""#, .invalidEscape),
        Malformed("01", .trailingContent),
        Malformed("1.", .unexpectedEnd), Malformed("1.x", .invalidNumber), Malformed("-", .unexpectedEnd), Malformed("-x", .invalidNumber),
        Malformed("1e", .unexpectedEnd), Malformed(".5", .unexpectedCharacter),
        Malformed("", .unexpectedEnd), Malformed(" ", .unexpectedEnd), Malformed("{", .unexpectedEnd), Malformed("}", .unexpectedCharacter),
        Malformed(#"{"a" 1}"#, .unexpectedCharacter), Malformed("{a:1}", .unexpectedCharacter), Malformed("[1 2]", .unexpectedCharacter),
        Malformed("tru", .unexpectedEnd), Malformed("nul", .unexpectedEnd), Malformed("\"abc", .unexpectedEnd), Malformed("'a'", .unexpectedCharacter),
    ]

    @Test("documents RFC 8259 does not allow are refused, each with its reason", arguments: malformed)
    func refuses(_ m: Malformed) {
        do {
            let value = try StrictJSON.parse(Data(m.bytes))
            Issue.record("accepted as \(value)")
        } catch {
            #expect(error.reason == m.reason)
            if let offset = m.offset { #expect(error.offset == offset) }
            #expect(error.offset >= 0 && error.offset <= m.bytes.count)
            #expect(!error.description.isEmpty)
        }
    }

    @Test("a repeated key is refused in an object of any size, compared by bytes, not by canonical equivalence")
    func repeatedKeys() throws {
        let many = (0..<200).map { "\"k\($0)\":\($0)" }
        #expect(try StrictJSON.parse("{" + many.joined(separator: ",") + "}").object?.members.count == 200)
        for repeated in ["k0", "k15", "k16", "k199"] {
            #expect(throws: StrictJSON.SyntaxError.self) { try StrictJSON.parse("{" + (many + ["\"\(repeated)\":1"]).joined(separator: ",") + "}") }
        }
        // "é" precomposed and decomposed are equal Swift strings, but different JSON names.
        let object = try #require(try StrictJSON.parse("{\"\u{E9}\":1,\"e\u{301}\":2}").object)
        #expect(object.members.count == 2)
    }

    @Test("nesting deeper than 64 levels is refused instead of exhausting the stack")
    func depth() throws {
        #expect(throws: StrictJSON.SyntaxError.self) { try StrictJSON.parse(String(repeating: "[", count: 100_000)) }
        _ = try StrictJSON.parse(String(repeating: "[", count: 64) + String(repeating: "]", count: 64))
        do {
            _ = try StrictJSON.parse(String(repeating: "[", count: 65) + String(repeating: "]", count: 65))
            Issue.record("65 levels accepted")
        } catch {
            #expect(error.reason == .tooDeep)
        }
    }

    @Test("a number whose exponent overflows reads as an infinite double, which no accessor takes for an integer")
    func hugeExponent() throws {
        let value = try StrictJSON.parse("1e999")
        #expect(value == .double(.infinity))
        #expect(value.int64 == nil)
    }

    @Test(
        "lenient integer reading: numbers, integral floats and numeric strings",
        arguments: [
            (StrictJSON.int(5), Int64?(5)), (.double(5.0), 5), (.double(5.5), 5), (.string("5"), 5), (.string(" 5 "), 5),
            (.string("5.0"), 5), (.string("x"), nil), (.bool(true), nil), (.null, nil), (.double(.infinity), nil),
            (.double(1e300), nil), (.uint(.max), nil),
        ])
    func lenientInt(value: StrictJSON, expected: Int64?) {
        #expect(value.int64 == expected)
    }

    @Test(
        "lenient flags: numbers, booleans and strings",
        arguments: [
            (StrictJSON.int(1), Bool?(true)), (.int(0), false), (.bool(true), true), (.string("1"), true), (.string("TRUE"), true),
            (.string("0"), false), (.string(""), false), (.string("maybe"), nil), (.null, nil), (.array([]), nil), (.uint(1 << 63), true),
        ])
    func lenientFlag(value: StrictJSON, expected: Bool?) {
        #expect(value.flag == expected)
    }

    @Test("lenient strings accept integers written as numbers")
    func lenientString() {
        #expect(StrictJSON.int(10086).string == "10086")
        #expect(StrictJSON.uint(18_446_744_073_709_551_615).string == "18446744073709551615")
        #expect(StrictJSON.string("a").string == "a")
        #expect(StrictJSON.double(1.5).string == nil)
        #expect(StrictJSON.null.string == nil)
    }

    @Test("every IM fixture parses the same as Foundation reads it (same key set)")
    func agreesWithFoundation() throws {
        let folder = TestSupport.fixture("im")
        for name in try FileManager.default.contentsOfDirectory(atPath: folder.path) where name.hasSuffix(".json") {
            let data = try Data(contentsOf: folder.appendingPathComponent(name))
            let ours = try #require(try StrictJSON.parse(data).object)
            let theirs = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            #expect(Set(ours.members.map(\.key)) == Set(theirs.keys), "\(name)")
        }
    }
}
