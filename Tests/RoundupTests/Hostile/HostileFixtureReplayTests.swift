import Foundation
import Testing

@testable import Roundup

/// Replays every input kept under `Fixtures/hostile/<area>/` — inputs that once crashed or
/// misbehaved, and hand-picked extremes — through the same properties as the generative loops.
/// A file whose name starts with `reject-` must also be refused by its decoder.
@Suite("Hostile input: regression fixtures")
struct HostileFixtureReplayTests {
    /// One kept input.
    struct Kept: Sendable, CustomTestStringConvertible {
        let area: String
        let url: URL
        var testDescription: String { "\(area)/\(url.lastPathComponent)" }
        var mustBeRefused: Bool { url.lastPathComponent.hasPrefix("reject-") }
        var bytes: [UInt8] { HostileSeeds.bytes(url) }
        var text: String { String(decoding: bytes, as: UTF8.self) }
    }

    static func kept(_ area: String) -> [Kept] { HostileSeeds.regressions(area).map { Kept(area: area, url: $0) } }

    @Test("every area has regression inputs to replay")
    func present() {
        for area in ["im", "wechat", "csv", "config"] {
            #expect(Self.kept(area).count >= 3, "Fixtures/hostile/\(area)/")
        }
    }

    @Test("kept IM callback bodies decode or are refused cleanly", arguments: kept("im"))
    func im(_ input: Kept) {
        #expect(HostileOracles.imCallback(input.bytes) == [])
        #expect(HostileOracles.imJSON(input.bytes) == [])
        if input.mustBeRefused {
            #expect(throws: IMCallbackDecodingError.self) { try IMCallback.decode(command: nil, body: Data(input.bytes)) }
        } else {
            #expect(throws: Never.self) { try IMCallback.decode(command: nil, body: Data(input.bytes)) }
        }
    }

    @Test("kept WeChat push bodies give an event or a 400, and DTDs are refused", arguments: kept("wechat"))
    func wechat(_ input: Kept) {
        #expect(HostileOracles.plaintextPush(input.bytes, verifier: WeChatPushHostileTests.plainVerifier, query: WeChatPushHostileTests.plainQuery) == [])
        if input.mustBeRefused {
            #expect(throws: WeChatPushError.self) {
                try WeChatPushHostileTests.plainVerifier.verify(query: WeChatPushHostileTests.plainQuery, body: Data(input.bytes))
            }
        }
    }

    @Test("kept rosters parse to valid rows or name their lines, and import all or nothing", arguments: kept("csv"))
    func csv(_ input: Kept) throws {
        #expect(HostileOracles.rosterRows(input.text, knownProfiles: RosterCSVHostileTests.profiles) == [])
        #expect(HostileOracles.rosterImport(input.text, operator: try RosterCSVHostileTests.rosterOperator()) == [])
        if input.mustBeRefused {
            #expect(throws: RosterImportError.self) { try RosterCSV.rows(from: input.text, knownProfiles: RosterCSVHostileTests.profiles) }
        }
    }

    @Test("kept configs load or report every problem with its key path", arguments: kept("config"))
    func config(_ input: Kept) {
        #expect(HostileOracles.config(input.text) == [])
        if input.mustBeRefused {
            #expect(throws: ConfigError.self) { try ConfigLoader(environment: [:]).load(yaml: input.text) }
        }
    }
}
