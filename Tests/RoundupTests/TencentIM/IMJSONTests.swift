import Foundation
import Testing

@testable import Roundup

@Suite("IM JSON reader")
struct IMJSONTests {
    @Test("scalars, arrays and objects parse to their values")
    func values() throws {
        let json = try IMJSON.parse(#" {"a":1,"b":[true,false,null],"c":"x","d":-2.5,"e":{},"f":[],"g":1e3} "#)
        #expect(json["a"] == .int(1))
        #expect(json["b"] == .array([.bool(true), .bool(false), .null]))
        #expect(json["c"] == .string("x"))
        #expect(json["d"] == .double(-2.5))
        #expect(json["e"] == .object(IMJSONObject(members: [])))
        #expect(json["f"] == .array([]))
        #expect(json["g"] == .double(1000))
        #expect(json["missing"] == nil)
    }

    @Test(
        "integers at the edges of Int64 stay exact; larger ones become doubles",
        arguments: [
            ("9223372036854775807", IMJSON.int(.max)), ("-9223372036854775808", .int(.min)),
            ("9223372036854775808", .double(9_223_372_036_854_775_808)), ("0", .int(0)), ("-0", .int(0)),
            ("1741075200123", .int(1_741_075_200_123)),
        ])
    func integers(text: String, expected: IMJSON) throws {
        #expect(try IMJSON.parse(text) == expected)
    }

    @Test(
        "escapes decode, surrogate pairs join, lone surrogates become U+FFFD",
        arguments: [
            (#""a\"b\\c\/d\n\t\r\b\f""#, "a\"b\\c/d\n\t\r\u{8}\u{C}"),
            (#""\u4f60\u597D""#, "你好"),
            (#""\ud83d\ude00""#, "😀"),
            (#""\ud83dx""#, "\u{FFFD}x"),
            (#""\ude00""#, "\u{FFFD}"),
            (#""中文\n混合""#, "中文\n混合"),
        ])
    func strings(text: String, expected: String) throws {
        #expect(try IMJSON.parse(text) == .string(expected))
    }

    @Test(
        "malformed documents are refused",
        arguments: [
            "", " ", "{", "}", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "[1 2]", "01", "1.", ".5", "-", "1e", "tru",
            "nul", "\"abc", "\"a\nb\"", "\"\\x\"", "\"\\u12\"", "{} {}", "[1]]", "'a'", "NaN",
        ])
    func malformed(text: String) {
        #expect(throws: IMJSON.SyntaxError.self) { try IMJSON.parse(text) }
    }

    @Test("nesting deeper than 64 levels is refused instead of exhausting the stack")
    func depth() throws {
        #expect(throws: IMJSON.SyntaxError.self) { try IMJSON.parse(String(repeating: "[", count: 100_000)) }
        _ = try IMJSON.parse(String(repeating: "[", count: 64) + String(repeating: "]", count: 64))
        #expect(throws: IMJSON.SyntaxError.self) {
            try IMJSON.parse(String(repeating: "[", count: 65) + String(repeating: "]", count: 65))
        }
    }

    @Test("a UTF-8 byte-order mark is skipped; invalid UTF-8 in strings is repaired")
    func encodingEdges() throws {
        #expect(try IMJSON.parse(Data([0xEF, 0xBB, 0xBF]) + Data("{\"a\":1}".utf8))["a"] == .int(1))
        #expect(try IMJSON.parse(Data([0x22, 0xFF, 0x61, 0x22])) == .string("\u{FFFD}a"))
    }

    @Test("a repeated key's last value wins")
    func duplicateKeys() throws {
        #expect(try IMJSON.parse(#"{"a":1,"a":2}"#)["a"] == .int(2))
    }

    @Test(
        "lenient integer reading: numbers, integral floats and numeric strings",
        arguments: [
            (IMJSON.int(5), Int64?(5)), (.double(5.0), 5), (.double(5.5), 5), (.string("5"), 5), (.string(" 5 "), 5),
            (.string("5.0"), 5), (.string("x"), nil), (.bool(true), nil), (.null, nil), (.double(.infinity), nil),
            (.double(1e300), nil),
        ])
    func lenientInt(value: IMJSON, expected: Int64?) {
        #expect(value.int64 == expected)
    }

    @Test(
        "lenient flags: numbers, booleans and strings",
        arguments: [
            (IMJSON.int(1), Bool?(true)), (.int(0), false), (.bool(true), true), (.string("1"), true), (.string("TRUE"), true),
            (.string("0"), false), (.string(""), false), (.string("maybe"), nil), (.null, nil), (.array([]), nil),
        ])
    func lenientFlag(value: IMJSON, expected: Bool?) {
        #expect(value.flag == expected)
    }

    @Test("lenient strings accept integers written as numbers")
    func lenientString() {
        #expect(IMJSON.int(10086).string == "10086")
        #expect(IMJSON.string("a").string == "a")
        #expect(IMJSON.double(1.5).string == nil)
        #expect(IMJSON.null.string == nil)
    }

    @Test("every IM fixture parses the same as Foundation reads it (same key set)")
    func agreesWithFoundation() throws {
        let folder = TestSupport.fixture("im")
        for name in try FileManager.default.contentsOfDirectory(atPath: folder.path) where name.hasSuffix(".json") {
            let data = try Data(contentsOf: folder.appendingPathComponent(name))
            let ours = try #require(try IMJSON.parse(data).object)
            let theirs = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            #expect(Set(ours.members.map(\.key)) == Set(theirs.keys), "\(name)")
        }
    }
}
