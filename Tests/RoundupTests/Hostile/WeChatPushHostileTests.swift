import Foundation
import Testing

@testable import Roundup

/// Generated hostile message pushes against `PushDocument`, `WeChatEvent`, `PushCrypto` and
/// `WeChatPushVerifier` (issue 8): JSON, XML, and safe-mode ciphertext.
@Suite("Hostile input: WeChat pushes")
struct WeChatPushHostileTests {
    static let token = "AAAAA"
    static let plainVerifier = WeChatPushVerifier(token: token, crypto: nil)
    static let plainQuery = PushQuery(
        signature: PushSignature.compute(token: token, timestamp: "1714037059", nonce: "486452656"),
        timestamp: "1714037059", nonce: "486452656")

    static let jsonSeeds = HostileSeeds.files("wechat", extensions: ["json"]) + HostileSeeds.files("hostile/wechat", extensions: ["json"])
    static let xmlSeeds = HostileSeeds.files("wechat", extensions: ["xml"]) + HostileSeeds.files("hostile/wechat", extensions: ["xml"])
    static let jsonMutator = Mutator(format: .json, seeds: jsonSeeds.map(HostileSeeds.bytes).filter(HostileSeeds.isSeed))
    static let xmlMutator = Mutator(format: .xml, seeds: xmlSeeds.map(HostileSeeds.bytes).filter(HostileSeeds.isSeed))

    /// A safe-mode fixture with the verifier that can read it and the event it carries.
    struct Encrypted: Sendable {
        let body: [UInt8]
        let query: PushQuery
        let verifier: WeChatPushVerifier
        let token: String
        let format: PushFormat
        let encrypt: String
        let event: WeChatEvent
    }

    static let encrypted: [Encrypted] = {
        let official = WeChatPushVerifier(
            token: "AAAAA", crypto: try! PushCrypto(encodingAESKey: String(repeating: "A", count: 43), appID: "wxba5fad812f8e6fb9"))
        let sample = WeChatPushVerifier(
            token: "spamtest", crypto: try! PushCrypto(encodingAESKey: "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", appID: "wx2c2769f8efd9abc2"))
        return [
            ("safe-mode-official.json", "safe-mode-official.query", official),
            ("compatible-mode.json", "compatible-mode.query", official),
            ("safe-mode-xml.xml", "safe-mode-xml.query", sample),
            ("safe-mode-popup.xml", "safe-mode-popup.query", sample),
        ].map { body, query, verifier in
            let bytes = HostileSeeds.bytes(TestSupport.fixture("wechat/\(body)"))
            let q = PushQuery(queryString: HostileSeeds.text(TestSupport.fixture("wechat/\(query)")).trimmingCharacters(in: .whitespacesAndNewlines))
            let (format, document) = try! PushDocument.parse(Data(bytes))
            return Encrypted(
                body: bytes, query: q, verifier: verifier, token: verifier.token, format: format,
                encrypt: document["Encrypt"]?.text ?? "", event: try! verifier.verify(query: q, body: Data(bytes)))
        }
    }()

    @Test("every push fixture, unmutated, keeps every property; the DOCTYPE fixture is refused")
    func seedsParse() throws {
        #expect(Self.jsonSeeds.count >= 8 && Self.xmlSeeds.count >= 6)
        for url in Self.jsonSeeds + Self.xmlSeeds {
            #expect(HostileOracles.plaintextPush(HostileSeeds.bytes(url), verifier: Self.plainVerifier, query: Self.plainQuery).isEmpty,
                    "\(url.lastPathComponent)")
        }
        #expect(throws: WeChatPushError.doctypeRefused) { try PushDocument.parse(Data(contentsOf: TestSupport.fixture("wechat/doctype.xml"))) }
        #expect(Self.encrypted.count == 4)
        #expect(Self.encrypted.allSatisfy { !$0.encrypt.isEmpty })
    }

    @Test("mutated JSON and XML pushes, correctly signed, give an event or a 400: never a crash, a DTD or a foreign encoding")
    func mutatedPlaintext() async throws {
        try await HostileLoop.run(
            area: "wechat-plaintext", folder: "wechat", ext: ".txt", count: 2000,
            generate: { rng in rng.percent(45) ? Self.jsonMutator.generate(&rng) : Self.xmlMutator.generate(&rng) },
            bytes: { $0 }, check: { HostileOracles.plaintextPush($0, verifier: Self.plainVerifier, query: Self.plainQuery) })
    }

    @Test("any XML push that declares a DTD or an entity is refused, wherever and however it is written")
    func dtdAlwaysRefused() throws {
        let roots = Self.xmlSeeds.map(HostileSeeds.text).filter { !$0.contains("<!DOCTYPE") }
        #expect(!roots.isEmpty)
        var tried = 0
        for root in roots {
            let body = root.hasPrefix("<?xml") ? String(root[root.range(of: "?>")!.upperBound...]) : root
            for doctype in Mutator.doctypes {
                for prefix in ["", "\u{FEFF}", " \n\t", "<?xml version=\"1.0\"?>", "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- c -->", "<?pi x?>"] {
                    let bytes = Array((prefix + doctype + body).utf8)
                    tried += 1
                    #expect(throws: WeChatPushError.self, "\(HostileLoop.preview(bytes, limit: 120))") {
                        try PushDocument.parse(Data(bytes))
                    }
                    #expect(HostileOracles.pushDocument(bytes).isEmpty)
                }
            }
        }
        #expect(tried > 100)
    }

    @Test("an XML declaration naming another encoding is refused however it is spaced, so no UTF-7 DOCTYPE gets through")
    func foreignEncodingRefused() {
        let payload = "+ADw-!DOCTYPE xml +AFs-+ADw-!ENTITY xxe +ACI-HOSTILE-ENTITY-EXPANDED+ACI-+AD4-+AF0-+AD4-"
            + "<xml><ToUserName>&xxe;</ToUserName><MsgType>text</MsgType></xml>"
        for declaration in Mutator.declarations where declaration.lowercased().contains("utf-7") || declaration.contains("UTF-16") || declaration.contains("ISO") {
            let bytes = Array((declaration + payload).utf8)
            #expect(throws: WeChatPushError.self, "\(declaration.debugDescription)") { try PushDocument.parse(Data(bytes)) }
            #expect(HostileOracles.pushDocument(bytes).isEmpty, "\(declaration.debugDescription)")
        }
    }

    @Test("XML or JSON nested far deeper than any push is refused, at any depth tried, without exhausting the stack")
    func deepNesting() {
        // XML stops at 64 levels (PushDocument); JSON at Foundation's own limit of 512.
        for depth in [65, 600, 5000, 20_000] {
            let xml = "<xml>" + String(repeating: "<a>", count: depth) + String(repeating: "</a>", count: depth) + "</xml>"
            #expect(throws: WeChatPushError.self) { try PushDocument.parse(Data(xml.utf8)) }
            guard depth > 512 else { continue }
            let json = #"{"List":"# + String(repeating: "[", count: depth) + String(repeating: "]", count: depth) + "}"
            #expect(throws: WeChatPushError.self) { try PushDocument.parse(Data(json.utf8)) }
        }
        let shallow = "<xml>" + String(repeating: "<a>", count: 40) + "x" + String(repeating: "</a>", count: 40) + "</xml>"
        #expect(throws: Never.self) { try PushDocument.parse(Data(shallow.utf8)) }
    }

    @Test("a safe-mode push is parsed before its signature can be checked, so bytes that crashed the XML parser are refused first")
    func unsignedSafeModeBody() throws {
        let e = Self.encrypted[2]
        let forged = PushQuery(signature: nil, timestamp: "1", nonce: "1", encryptType: "aes", msgSignature: "0")
        for name in ["reject-crash-invalid-utf8-element-name.xml", "reject-crash-invalid-utf8-end-tag.xml"] {
            let body = try Data(contentsOf: TestSupport.fixture("hostile/wechat/\(name)"))
            #expect(throws: WeChatPushError.malformed("the XML body is not UTF-8")) { try e.verifier.verify(query: forged, body: body) }
        }
        // A processing instruction without data (`<?x?>`) crashed FoundationXML (a NULL C string).
        for name in ["reject-crash-pi-without-data.xml", "reject-crash-pi-without-data-in-prolog.xml", "reject-crash-pi-without-data-after-error.xml"] {
            let body = try Data(contentsOf: TestSupport.fixture("hostile/wechat/\(name)"))
            #expect(throws: WeChatPushError.malformed("an XML processing instruction without data")) {
                try e.verifier.verify(query: forged, body: body)
            }
        }
    }

    @Test("a tampered safe-mode push is refused, or accepted only with exactly its original event")
    func tamperedEncrypted() async throws {
        let mutators = Self.encrypted.map { Mutator(format: $0.format == .json ? .json : .xml, seeds: [$0.body]) }
        try await HostileLoop.run(
            area: "wechat-tampered", folder: "wechat", ext: ".txt", count: 500,
            generate: { rng in
                let index = rng.below(Self.encrypted.count)
                return (index: index, body: mutators[index].generate(&rng))
            },
            bytes: { $0.body },
            check: { input in
                let e = Self.encrypted[input.index]
                return HostileOracles.tamperedEncryptedPush(
                    input.body, verifier: e.verifier, query: e.query, original: e.event, originalEncrypt: e.encrypt)
            })
    }

    @Test("a damaged Encrypt value, correctly re-signed, decrypts to a complete event or is refused as undecryptable")
    func resignedCiphertext() async throws {
        let mutator = Mutator(format: .base64, seeds: Self.encrypted.map { Array($0.encrypt.utf8) })
        try await HostileLoop.run(
            area: "wechat-ciphertext", folder: "wechat", ext: ".txt", count: 1500,
            generate: { rng in (index: rng.below(Self.encrypted.count), encrypt: mutator.generate(&rng)) },
            bytes: { $0.encrypt },
            check: { input in
                let e = Self.encrypted[input.index]
                return HostileOracles.resignedEncryptedPush(
                    encrypt: String(decoding: input.encrypt, as: UTF8.self), format: e.format, verifier: e.verifier, token: e.token)
            })
    }

    @Test("encrypting any bytes and decrypting gives them back; under another AppID the same ciphertext is refused")
    func cryptoRoundTrip() async throws {
        let key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
        let ours = try PushCrypto(encodingAESKey: key, appID: "wx2c2769f8efd9abc2")
        let theirs = try PushCrypto(encodingAESKey: key, appID: "wx2c2769f8efd9abc3")
        try await HostileLoop.run(
            area: "wechat-crypto", folder: "wechat", ext: ".bin", count: 300,
            generate: { rng in
                let length = rng.pick([0, 1, 11, 12, 15, 16, 31, 32, 33, 100, 1000, 5000])
                return (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) } + Array("\(rng.below(1000))".utf8)
            },
            bytes: { $0 },
            check: { plain in
                var problems: [String] = []
                let encrypt = ours.encrypt(Data(plain))
                if (try? ours.decrypt(encrypt)) != Data(plain) { problems.append("encrypt then decrypt did not give the plaintext back") }
                do throws(WeChatPushError) {
                    _ = try theirs.decrypt(encrypt)
                    problems.append("a ciphertext for another AppID was accepted")
                } catch {
                    if error != .appIDMismatch { problems.append("another AppID's ciphertext was refused with \(error), not appIDMismatch") }
                }
                return problems
            })
    }

    @Test("mutated query strings pass the server check only with the right signature")
    func mutatedQueries() async throws {
        let seeds = HostileSeeds.files("wechat", extensions: ["query"]).map { HostileSeeds.text($0).trimmingCharacters(in: .whitespacesAndNewlines) }
        #expect(HostileOracles.serverCheck(seeds.first { $0.contains("486452656") } ?? "", verifier: Self.plainVerifier).isEmpty)
        let mutator = Mutator(format: .query, texts: seeds)
        try await HostileLoop.run(
            area: "wechat-query", folder: "wechat", ext: ".query", count: 2500,
            generate: { mutator.generate(&$0) }, bytes: { $0 },
            check: { HostileOracles.serverCheck(String(decoding: $0, as: UTF8.self), verifier: Self.plainVerifier) })
    }
}
