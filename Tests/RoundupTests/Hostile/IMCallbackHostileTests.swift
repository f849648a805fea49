import Foundation
import Testing

@testable import Roundup

/// Generated hostile IM callback bodies against `IMCallback.decode` and `StrictJSON` (issue 8).
@Suite("Hostile input: IM callbacks")
struct IMCallbackHostileTests {
    static let fixtures = HostileSeeds.files("im", extensions: ["json"])
    static let mutator = Mutator(
        format: .json, seeds: (fixtures + HostileSeeds.regressions("im")).map(HostileSeeds.bytes).filter(HostileSeeds.isSeed))

    /// A query command to decode with: none, each handled one, or one Roundup does not know.
    static let commands: [String?] = [nil] + IMCallbackCommand.allCases.map(\.rawValue) + ["Group.CallbackBeforeSendMsg"]

    @Test("every IM fixture, unmutated, decodes and keeps every property")
    func seedsDecode() throws {
        #expect(Self.fixtures.count >= 15)
        for url in Self.fixtures {
            let bytes = HostileSeeds.bytes(url)
            #expect(HostileOracles.imCallback(bytes).isEmpty, "\(url.lastPathComponent)")
            #expect(HostileOracles.imJSON(bytes).isEmpty, "\(url.lastPathComponent)")
            _ = try IMCallback.decode(command: nil, body: Data(bytes))
        }
    }

    @Test("mutated callback bodies never crash the decoder, and whatever decodes is complete and one line")
    func mutatedCallbacks() async throws {
        let ran = try await HostileLoop.run(
            area: "im-callback", folder: "im", ext: ".json", count: 6000,
            generate: { rng in (command: rng.pick(Self.commands), body: Self.mutator.generate(&rng)) },
            bytes: { $0.body },
            check: { HostileOracles.imCallback($0.body, command: $0.command) })
        #expect(ran > 0)
    }

    @Test("StrictJSON on mutated JSON: bounded depth, a lossless round trip, nothing RFC 8259 forbids, and all that Foundation reads that RFC 8259 allows")
    func mutatedJSON() async throws {
        try await HostileLoop.run(
            area: "im-json", folder: "im", ext: ".json", count: 5000,
            generate: { Self.mutator.generate(&$0) }, bytes: { $0 }, check: HostileOracles.imJSON)
    }

    @Test("nesting is refused past 64 levels at any depth tried, without exhausting the stack")
    func deepNesting() throws {
        func nested(_ depth: Int, closed: Bool = true) -> Data {
            Data((String(repeating: "[", count: depth) + (closed ? String(repeating: "]", count: depth) : "")).utf8)
        }
        #expect(throws: Never.self) { try StrictJSON.parse(nested(64)) }
        for depth in [65, 1000, 100_000, 1_000_000] {
            #expect(throws: StrictJSON.SyntaxError.self) { try StrictJSON.parse(nested(depth)) }
            #expect(throws: StrictJSON.SyntaxError.self) { try StrictJSON.parse(nested(depth, closed: false)) }
        }
        let body = Data((#"{"CallbackCommand":"C2C.CallbackAfterSendMsg","MsgBody":"# + String(repeating: "[", count: 200_000)).utf8)
        #expect(throws: IMCallbackDecodingError.invalidJSON) { try IMCallback.decode(command: nil, body: body) }
    }

    @Test("a message of a megabyte of line breaks, controls and emoji still summarises to one fitted line")
    func hugeMessage() throws {
        let text = String(repeating: "\\n\\t\\r\\u2028 \\u0007😀家长会", count: 20_000)
        let body = #"{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"a","To_Account":"b","MsgKey":"k","MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"\#(text)"}}]}"#
        let decoded = try IMCallback.decode(command: nil, body: Data(body.utf8))
        guard case .c2cAfterSend(let message) = decoded else {
            Issue.record("expected a C2C message, got \(decoded)")
            return
        }
        #expect(HostileOracles.summary(message.summary).isEmpty)
        let fitted = try #require(FieldFitter.fit(message.summary, as: .thing))
        #expect(fitted.unicodeScalars.count <= 20)
        #expect(fitted.hasPrefix("家长会"))
    }
}
