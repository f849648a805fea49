import Foundation
import Testing

@testable import Roundup

@Suite("Strict JSON decoding into Codable types")
struct StrictJSONDecoderTests {
    struct Inner: Decodable, Equatable {
        var flag: Bool
    }

    struct Sample: Decodable, Equatable {
        var text: String
        var count: Int
        var ratio: Double
        var big: UInt64
        var note: String?
        var list: [Int]
        var inner: Inner
    }

    struct Closed: Decodable, Equatable {
        var a: Int
        enum CodingKeys: String, CodingKey, CaseIterable { case a }
    }

    @Test("a well-typed object decodes, with integral floats as integers and null as nil")
    func decodes() throws {
        let json = #"{"text":"x","count":2.0,"ratio":1,"big":18446744073709551615,"note":null,"list":[1,2],"inner":{"flag":true},"extra":0}"#
        let sample = try StrictJSONDecoder().decode(Sample.self, from: Data(json.utf8))
        #expect(sample == Sample(text: "x", count: 2, ratio: 1, big: .max, note: nil, list: [1, 2], inner: Inner(flag: true)))
    }

    @Test(
        "types are never coerced; the sentence names the field and what it must be",
        arguments: [
            (#"{"text":1,"count":1,"ratio":1,"big":1,"list":[],"inner":{"flag":true}}"#, "text must be a string"),
            (#"{"text":"x","count":"1","ratio":1,"big":1,"list":[],"inner":{"flag":true}}"#, "count must be a whole number"),
            (#"{"text":"x","count":true,"ratio":1,"big":1,"list":[],"inner":{"flag":true}}"#, "count must be a whole number"),
            (#"{"text":"x","count":1.5,"ratio":1,"big":1,"list":[],"inner":{"flag":true}}"#, "count must be a whole number"),
            (#"{"text":"x","count":1e300,"ratio":1,"big":1,"list":[],"inner":{"flag":true}}"#, "count must be a whole number from"),
            (#"{"text":"x","count":1,"ratio":1,"big":-1,"list":[],"inner":{"flag":true}}"#, "big must be a whole number from 0"),
            (#"{"text":"x","count":1,"ratio":1,"big":1,"list":[1,"2"],"inner":{"flag":true}}"#, "list[1] must be a whole number"),
            (#"{"text":"x","count":1,"ratio":1,"big":1,"list":[],"inner":{"flag":1}}"#, "inner.flag must be true or false"),
            (#"{"text":null,"count":1,"ratio":1,"big":1,"list":[],"inner":{"flag":true}}"#, "text must not be null"),
            (#"{"count":1,"ratio":1,"big":1,"list":[],"inner":{"flag":true}}"#, "text is required"),
            (#"{"text":"x","count":1,"ratio":1,"big":1,"list":{},"inner":{"flag":true}}"#, "list must be an array"),
        ])
    func mismatches(json: String, sentence: String) {
        do {
            let value = try StrictJSONDecoder().decode(Sample.self, from: Data(json.utf8))
            Issue.record("decoded \(value)")
        } catch let error as DecodingError {
            #expect(error.sentence.hasPrefix(sentence), "\(error.sentence)")
        } catch {
            Issue.record("threw \(error)")
        }
    }

    @Test("unknown members are ignored, or refused with the known fields when asked")
    func unknownKeys() throws {
        let json = Data(#"{"a":1,"b":2}"#.utf8)
        #expect(try StrictJSONDecoder().decode(Closed.self, from: json) == Closed(a: 1))
        do {
            _ = try StrictJSONDecoder(refusesUnknownKeys: true).decode(Closed.self, from: json)
            Issue.record("an unknown member was accepted")
        } catch let error as DecodingError {
            #expect(error.sentence == "b is not a known field (fields: a)")
        }
    }

    @Test("malformed JSON is a syntax error, never a decoding error")
    func syntax() {
        #expect(throws: StrictJSON.SyntaxError.self) { try StrictJSONDecoder().decode(Closed.self, from: Data(#"{"a":1,}"#.utf8)) }
    }
}
