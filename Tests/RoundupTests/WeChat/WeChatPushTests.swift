import Foundation
import Testing

@testable import Roundup

/// Fixture loading for the push tests.
enum PushFixtures {
    static func body(_ name: String) throws -> Data { try Data(contentsOf: TestSupport.fixture("wechat/\(name)")) }

    static func query(_ name: String) throws -> PushQuery {
        PushQuery(queryString: try TestSupport.fixtureText("wechat/\(name)").trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// A plaintext-mode query signed with `token`.
    static func signedQuery(token: String, timestamp: String = "1714037059", nonce: String = "486452656") -> PushQuery {
        PushQuery(
            signature: PushSignature.compute(token: token, timestamp: timestamp, nonce: nonce), timestamp: timestamp, nonce: nonce)
    }
}

@Suite("WeChat push decoding")
struct WeChatPushDecodingTests {
    typealias Item = SubscriptionEvent.Item

    /// A plaintext fixture and the event it must decode to.
    struct Case: Sendable, CustomTestStringConvertible {
        let fixture: String
        let expected: WeChatEvent
        var testDescription: String { fixture }
    }

    static let cases: [Case] = [
        Case(
            fixture: "popup-object.json",
            expected: .subscribePopup(
                .init(
                    toUser: "gh_xxxxxxxxxx", openid: "o8dH44seYM3qeBzHlrmwI0sAtSfI", createTime: 1_688_953_684,
                    items: [Item(templateID: "BDcgTGpwt7fcRVFhGh-NvjcASaWWmkwzN3y_6mXzJR4", status: "accept")]))),
        Case(
            fixture: "popup-array.json",
            expected: .subscribePopup(
                .init(
                    toUser: "gh_123456789abc", openid: "o7esq5OI1Uej6Xixw1lA2H7XDVbc", createTime: 1_620_973_045,
                    items: [
                        Item(templateID: "hD-ixGOhYmUfjOnI8MCzQMPshzGVeux_2vzyvQu7O68", status: "accept"),
                        Item(templateID: "9nLIlbOQZC5Y89AZteFEux3WCXRRRG5Wfzkpssu4bLI", status: "reject"),
                    ]))),
        Case(
            fixture: "popup-wrapped.json",
            expected: .subscribePopup(
                .init(
                    toUser: "gh_123456789abc", openid: "o7esq5OI1Uej6Xixw1lA2H7XDVbc", createTime: 1_620_973_046,
                    items: [Item(templateID: "hD-ixGOhYmUfjOnI8MCzQMPshzGVeux_2vzyvQu7O68", status: "acceptWithAlert")]))),
        Case(
            fixture: "popup.xml",
            expected: .subscribePopup(
                .init(
                    toUser: "gh_123456789abc", openid: "otFpruAK8D-E6EfStSYonYSBZ8_4", createTime: 1_610_969_440,
                    items: [
                        Item(templateID: "VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc", status: "accept"),
                        Item(templateID: "9nLIlbOQZC5Y89AZteFEux3WCXRRRG5Wfzkpssu4bLI", status: "reject"),
                    ]))),
        Case(
            fixture: "change.json",
            expected: .subscribeChange(
                .init(
                    toUser: "gh_123456789abc", openid: "o7esq5OI1Uej6Xixw1lA2H7XDVbc", createTime: 1_610_968_440,
                    items: [
                        Item(templateID: "BEwX0BOT3MqK3Uc5oTU3CGBqzjpndk2jzUf7VfExd8", status: "reject"),
                        Item(templateID: "hD-ixGOhYmUfjOnI8MCzQMPshzGVeux_2vzyvQu7O68", status: "reject"),
                    ]))),
        Case(
            fixture: "change.xml",
            expected: .subscribeChange(
                .init(
                    toUser: "gh_123456789abc", openid: "otFpruAK8D-E6EfStSYonYSBZ8_4", createTime: 1_610_969_440,
                    items: [Item(templateID: "VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc", status: "reject")]))),
        Case(
            fixture: "sent-string-msgid.json",
            expected: .subscribeSent(
                .init(
                    toUser: "gh_123456789abc", openid: "o7esq5PHRGBQYmeNyfG064wEFVpQ", createTime: 1_620_963_428,
                    items: [
                        .init(
                            templateID: "BEwX0BO-T3MqK3Uc5oTU3CGBqzjpndk2jzUf7VfExd8", msgID: "1864323726461255680", errorCode: 0,
                            errorStatus: "success")
                    ]))),
        Case(
            fixture: "sent-number-msgid.json",
            expected: .subscribeSent(
                .init(
                    toUser: "gh_123456789abc", openid: "o7esq5PHRGBQYmeNyfG064wEFVpQ", createTime: 1_620_963_428,
                    items: [
                        .init(
                            templateID: "BEwX0BO-T3MqK3Uc5oTU3CGBqzjpndk2jzUf7VfExd8", msgID: "1864323726461255680", errorCode: 0,
                            errorStatus: "success"),
                        .init(
                            templateID: "BEwX0BO-T3MqK3Uc5oTU3CGBqzjpndk2jzUf7VfExd8", msgID: "9223372036854775807",
                            errorCode: 10005, errorStatus: "fail"),
                    ]))),
        Case(
            fixture: "sent.xml",
            expected: .subscribeSent(
                .init(
                    toUser: "gh_123456789abc", openid: "otFpruAK8D-E6EfStSYonYSBZ8_4", createTime: 1_610_969_468,
                    items: [
                        .init(
                            templateID: "VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc", msgID: "1700827132819554304", errorCode: 0,
                            errorStatus: "success")
                    ]))),
        Case(fixture: "debug-demo.json", expected: .other(event: "debug_demo", msgType: "event")),
        Case(
            fixture: "entity-refs.xml",
            expected: .subscribePopup(
                .init(
                    toUser: "gh_123456789abc", openid: "o&penid中<>\"'A", createTime: 1_610_969_440,
                    items: [Item(templateID: "tmpl&1", status: "accept")]))),
    ]

    @Test("every plaintext fixture decodes to its event", arguments: cases)
    func decodes(_ c: Case) throws {
        let (_, document) = try PushDocument.parse(try PushFixtures.body(c.fixture))
        #expect(try WeChatEvent.decode(document) == c.expected)
    }

    @Test("every plaintext fixture passes the verifier with a good signature", arguments: cases)
    func verifies(_ c: Case) throws {
        let verifier = WeChatPushVerifier(token: "tok3n", crypto: nil)
        let event = try verifier.verify(query: PushFixtures.signedQuery(token: "tok3n"), body: PushFixtures.body(c.fixture))
        #expect(event == c.expected)
    }

    @Test("a MsgID beyond 2^53, up to 2^64 − 1, sent as a JSON number keeps every digit")
    func bigMsgID() throws {
        for msgID in ["1864323726461255680", "9007199254740993", "3248682510344192008", "9223372036854775808", "18446744073709551615"] {
            let body = Data(
                #"{"FromUserName":"o","CreateTime":1,"MsgType":"event","Event":"subscribe_msg_sent_event","List":{"TemplateId":"t","MsgID":\#(msgID),"ErrorCode":0}}"#
                    .utf8)
            guard case .subscribeSent(let sent) = try WeChatEvent.decode(PushDocument.parseJSON(body)) else {
                Issue.record("not a sent event")
                return
            }
            #expect(sent.items.map(\.msgID) == [msgID])
        }
    }

    @Test("each item's idempotency key is FromUserName|CreateTime|Event|template")
    func eventKeys() throws {
        let (_, document) = try PushDocument.parse(try PushFixtures.body("popup-array.json"))
        let event = try WeChatEvent.decode(document)
        #expect(
            event.eventKey(templateID: "hD-ixGOhYmUfjOnI8MCzQMPshzGVeux_2vzyvQu7O68")
                == "o7esq5OI1Uej6Xixw1lA2H7XDVbc|1620973045|subscribe_msg_popup_event|hD-ixGOhYmUfjOnI8MCzQMPshzGVeux_2vzyvQu7O68")
        // A re-sent push (same event, numbers now as numbers) gives the same keys.
        let resent = Data(
            #"{"FromUserName":"o7esq5OI1Uej6Xixw1lA2H7XDVbc","CreateTime":1620973045,"MsgType":"event","Event":"subscribe_msg_popup_event","List":{"TemplateId":"hD-ixGOhYmUfjOnI8MCzQMPshzGVeux_2vzyvQu7O68","SubscribeStatusString":"accept"}}"#
                .utf8)
        let again = try WeChatEvent.decode(PushDocument.parseJSON(resent))
        #expect(
            again.eventKey(templateID: "hD-ixGOhYmUfjOnI8MCzQMPshzGVeux_2vzyvQu7O68")
                == event.eventKey(templateID: "hD-ixGOhYmUfjOnI8MCzQMPshzGVeux_2vzyvQu7O68"))
        #expect(WeChatEvent.other(event: "debug_demo", msgType: "event").eventKey(templateID: "t") == nil)
    }

    @Test("statuses starting with accept grant; others do not", arguments: [
        ("accept", true), ("acceptWithAudio", true), ("acceptWithAlert", true), ("reject", false), ("ban", false), ("filter", false),
    ])
    func grants(_ status: String, _ grants: Bool) {
        #expect(SubscriptionEvent.Item(templateID: "t", status: status).isAccept == grants)
    }

    /// A body the decoder must refuse, with the error.
    struct Refused: Sendable, CustomTestStringConvertible {
        let name: String
        let body: String
        let error: WeChatPushError
        var testDescription: String { name }
    }

    static let refused: [Refused] = [
        Refused(name: "empty body", body: "", error: .malformed("the body is empty")),
        Refused(name: "blank body", body: " \n\t", error: .malformed("the body is empty")),
        Refused(name: "garbage", body: "hello", error: .malformed("the body is neither JSON nor XML")),
        Refused(name: "JSON array", body: "[1]", error: .malformed("the JSON body is not an object")),
        Refused(
            name: "UTF-7 declared to smuggle a DOCTYPE", body: "<?xml version=\"1.0\" encoding=\"UTF-7\"?>+ADw-!DOCTYPE x+AD4-<xml/>",
            error: .malformed("the XML body declares the encoding UTF-7; only UTF-8 is accepted")),
        Refused(name: "broken JSON", body: "{\"a\":", error: .malformed("invalid JSON: the document ends early at byte 5")),
        Refused(name: "JSON with a trailing comma", body: #"{"MsgType":"event",}"#, error: .malformed("invalid JSON: a trailing comma at byte 19")),
        Refused(name: "JSON with a repeated key", body: #"{"MsgType":"event","MsgType":"event"}"#, error: .malformed("invalid JSON: a key that appears twice in one object at byte 19")),
        Refused(name: "JSON after a byte-order mark", body: "\u{FEFF}{}", error: .malformed("invalid JSON: a byte-order mark at byte 0")),
        Refused(name: "broken XML", body: "<xml><a></xml>", error: .malformed("invalid XML")),
        Refused(name: "lowercase doctype", body: "<!doctype xml><xml/>", error: .doctypeRefused),
        Refused(name: "doctype after a declaration and comment", body: "<?xml version=\"1.0\"?>\n<!-- c -->\n<!DocType x SYSTEM \"http://x\"><xml/>", error: .doctypeRefused),
        Refused(
            name: "popup without List",
            body: #"{"FromUserName":"o","CreateTime":1,"MsgType":"event","Event":"subscribe_msg_popup_event"}"#,
            error: .malformed("the event has no List items")),
        Refused(
            name: "popup without CreateTime",
            body: #"{"FromUserName":"o","MsgType":"event","Event":"subscribe_msg_popup_event","List":{"TemplateId":"t","SubscribeStatusString":"accept"}}"#,
            error: .malformed("CreateTime is missing or not an integer")),
        Refused(
            name: "sent event with a fractional MsgID",
            body: #"{"FromUserName":"o","CreateTime":1,"MsgType":"event","Event":"subscribe_msg_sent_event","List":{"TemplateId":"t","MsgID":1.5,"ErrorCode":0}}"#,
            error: .malformed("a sent-event item has no valid MsgID")),
    ]

    @Test("unusable bodies are refused with 400", arguments: refused)
    func refuses(_ r: Refused) {
        let verifier = WeChatPushVerifier(token: "tok3n", crypto: nil)
        #expect(throws: r.error) { try verifier.verify(query: PushFixtures.signedQuery(token: "tok3n"), body: Data(r.body.utf8)) }
        #expect(r.error.httpStatus == 400)
    }

    @Test("the DOCTYPE attack fixture is refused before parsing")
    func doctypeFixture() throws {
        let body = try PushFixtures.body("doctype.xml")
        #expect(throws: WeChatPushError.doctypeRefused) { try PushDocument.parse(body) }
        let verifier = WeChatPushVerifier(token: "tok3n", crypto: nil)
        #expect(throws: WeChatPushError.doctypeRefused) { try verifier.verify(query: PushFixtures.signedQuery(token: "tok3n"), body: body) }
    }

    @Test("a UTF-16 body, which could hide a DOCTYPE from the byte scan, is refused")
    func utf16() throws {
        let text = "<?xml version=\"1.0\" encoding=\"UTF-16\"?><!DOCTYPE xml [<!ENTITY a \"b\">]><xml><A>&a;</A></xml>"
        let body = try #require(text.data(using: .utf16LittleEndian))
        #expect(throws: WeChatPushError.malformed("the XML body is not UTF-8")) { try PushDocument.parse(body) }
    }

    @Test("an XML declaration of UTF-8 in any spelling is accepted")
    func utf8Declaration() throws {
        for encoding in ["UTF-8", "utf-8", "utf8"] {
            let body = Data("<?xml version=\"1.0\" encoding='\(encoding)'?><xml><MsgType>text</MsgType></xml>".utf8)
            #expect(try WeChatEvent.decode(PushDocument.parse(body).1) == .other(event: nil, msgType: "text"))
        }
    }

    @Test("an unknown message type or event is 'other'")
    func other() throws {
        let text = try WeChatEvent.decode(PushDocument.parseXML(Data(WeChatVectors.SampleA.msg.utf8)))
        #expect(text == .other(event: nil, msgType: "text"))
    }
}

@Suite("WeChat push verification")
struct WeChatPushVerifierTests {
    static let official = try! PushCrypto(encodingAESKey: WeChatVectors.Official.key, appID: WeChatVectors.Official.appID)
    static let sampleA = try! PushCrypto(encodingAESKey: WeChatVectors.SampleA.key, appID: WeChatVectors.SampleA.appID)

    @Test("plaintext: the official debug_demo push verifies with its signature")
    func plaintextOK() throws {
        let verifier = WeChatPushVerifier(token: "AAAAA", crypto: nil)
        let event = try verifier.verify(query: PushFixtures.query("debug-demo.query"), body: PushFixtures.body("debug-demo.json"))
        #expect(event == .other(event: "debug_demo", msgType: "event"))
    }

    @Test("plaintext: a bad or missing signature is 401 and the body is not read")
    func plaintextBad() throws {
        let verifier = WeChatPushVerifier(token: "AAAAA", crypto: nil)
        var query = try PushFixtures.query("debug-demo.query")
        query.nonce = "486452657"
        #expect(throws: WeChatPushError.badSignature) { try verifier.verify(query: query, body: Data("garbage".utf8)) }
        query.signature = nil
        #expect(throws: WeChatPushError.missingParameter("signature")) { try verifier.verify(query: query, body: Data()) }
        #expect(WeChatPushError.badSignature.httpStatus == 401)
        #expect(WeChatPushError.missingParameter("signature").httpStatus == 401)
    }

    @Test("safe mode: the official JSON push verifies and decrypts")
    func safeModeOfficial() throws {
        let verifier = WeChatPushVerifier(token: "AAAAA", crypto: Self.official)
        let event = try verifier.verify(
            query: PushFixtures.query("safe-mode-official.query"), body: PushFixtures.body("safe-mode-official.json"))
        #expect(event == .other(event: "debug_demo", msgType: "event"))
    }

    @Test("safe mode: a wrong msg_signature is badSignature")
    func safeModeBadSignature() throws {
        let verifier = WeChatPushVerifier(token: "AAAAA", crypto: Self.official)
        var query = try PushFixtures.query("safe-mode-official.query")
        query.msgSignature = "046e02f8204d34f8ba5fa3b1db94908f3df2e9b4"
        #expect(throws: WeChatPushError.badSignature) { try verifier.verify(query: query, body: PushFixtures.body("safe-mode-official.json")) }
        query.msgSignature = nil
        #expect(throws: WeChatPushError.missingParameter("msg_signature")) {
            try verifier.verify(query: query, body: PushFixtures.body("safe-mode-official.json"))
        }
    }

    @Test("safe mode: a good msg_signature with a wrong plain signature is still refused")
    func safeModeBadPlainSignature() throws {
        let verifier = WeChatPushVerifier(token: "AAAAA", crypto: Self.official)
        var query = try PushFixtures.query("safe-mode-official.query")
        query.signature = "6c5c811b55cc85e0e1b54100749188c20beb3f5e"
        #expect(throws: WeChatPushError.badSignature) { try verifier.verify(query: query, body: PushFixtures.body("safe-mode-official.json")) }
    }

    @Test("safe mode: ciphertext for another AppID is appIDMismatch (401)")
    func safeModeWrongAppID() throws {
        let crypto = try PushCrypto(encodingAESKey: WeChatVectors.Official.key, appID: "wx_someone_else")
        let verifier = WeChatPushVerifier(token: "AAAAA", crypto: crypto)
        #expect(throws: WeChatPushError.appIDMismatch) {
            try verifier.verify(query: PushFixtures.query("safe-mode-official.query"), body: PushFixtures.body("safe-mode-official.json"))
        }
        #expect(WeChatPushError.appIDMismatch.httpStatus == 401)
    }

    @Test("safe mode without an encoding_aes_key configured is refused with 400")
    func safeModeNotConfigured() throws {
        let verifier = WeChatPushVerifier(token: "AAAAA", crypto: nil)
        #expect(throws: WeChatPushError.encryptionNotConfigured) {
            try verifier.verify(query: PushFixtures.query("safe-mode-official.query"), body: PushFixtures.body("safe-mode-official.json"))
        }
        #expect(WeChatPushError.encryptionNotConfigured.httpStatus == 400)
    }

    @Test("safe mode: a body without Encrypt is malformed")
    func safeModeNoEncrypt() throws {
        let verifier = WeChatPushVerifier(token: "AAAAA", crypto: Self.official)
        #expect(throws: WeChatPushError.malformed("encrypt_type=aes but the body has no Encrypt")) {
            try verifier.verify(query: PushFixtures.query("safe-mode-official.query"), body: PushFixtures.body("debug-demo.json"))
        }
    }

    @Test("safe mode: a correctly signed but undecryptable Encrypt is 400")
    func safeModeUndecryptable() throws {
        let verifier = WeChatPushVerifier(token: "AAAAA", crypto: Self.official)
        let encrypt = Data(repeating: 7, count: 32).base64EncodedString()
        let query = PushQuery(
            signature: nil, timestamp: "1", nonce: "2", encryptType: "aes",
            msgSignature: PushSignature.compute(token: "AAAAA", timestamp: "1", nonce: "2", encrypt: encrypt))
        do {
            _ = try verifier.verify(query: query, body: Data(#"{"Encrypt":"\#(encrypt)"}"#.utf8))
            Issue.record("accepted garbage ciphertext")
        } catch {
            #expect(error.httpStatus == 400)
        }
    }

    @Test("compatible mode: the forged outer plaintext copy is ignored; the encrypted event wins")
    func compatibleMode() throws {
        let verifier = WeChatPushVerifier(token: "AAAAA", crypto: Self.official)
        let event = try verifier.verify(query: PushFixtures.query("compatible-mode.query"), body: PushFixtures.body("compatible-mode.json"))
        #expect(
            event
                == .subscribeChange(
                    .init(
                        toUser: "gh_bdfaa9af5a04", openid: "oGeAO45Tq8ZWNtI10PsK9kpBvFDU", createTime: 1_696_991_702,
                        items: [.init(templateID: "UA2FxrBpGqwOwb1I9eymbw-ZGyKtSQFhgAC44Z5AraY", status: "reject")])))
    }

    @Test("XML safe mode: sample A (Tencent's WXBizMsgCrypt) as a push body decrypts to its text message")
    func xmlSafeMode() throws {
        let verifier = WeChatPushVerifier(token: WeChatVectors.SampleA.token, crypto: Self.sampleA)
        let event = try verifier.verify(query: PushFixtures.query("safe-mode-xml.query"), body: PushFixtures.body("safe-mode-xml.xml"))
        #expect(event == .other(event: nil, msgType: "text"))
    }

    @Test("XML safe mode: an encrypted two-item popup decodes")
    func xmlSafeModePopup() throws {
        let verifier = WeChatPushVerifier(token: WeChatVectors.SampleA.token, crypto: Self.sampleA)
        let event = try verifier.verify(query: PushFixtures.query("safe-mode-popup.query"), body: PushFixtures.body("safe-mode-popup.xml"))
        #expect(
            event
                == .subscribePopup(
                    .init(
                        toUser: "gh_10f6c3c3ac5a", openid: "oyORnuP8q7ou2gfYjqLzSIWZf0rs", createTime: 1_714_112_445,
                        items: [.init(templateID: "tmpl-digest-中文", status: "accept"), .init(templateID: "tmpl-other", status: "reject")])))
    }

    @Test("a JSON body whose Encrypt holds XML is malformed: the inner format follows the outer")
    func innerFormatMismatch() throws {
        let crypto = Self.sampleA
        let encrypt = crypto.encrypt(Data(WeChatVectors.SampleA.msg.utf8))
        let query = PushQuery(
            signature: nil, timestamp: "1", nonce: "2", encryptType: "aes",
            msgSignature: PushSignature.compute(token: "spamtest", timestamp: "1", nonce: "2", encrypt: encrypt))
        let verifier = WeChatPushVerifier(token: "spamtest", crypto: crypto)
        #expect(throws: WeChatPushError.malformed("the encrypted document is not in the outer body's format")) {
            try verifier.verify(query: query, body: Data(#"{"Encrypt":"\#(encrypt)"}"#.utf8))
        }
    }

    @Test("an empty push_token refuses everything (503)")
    func emptyToken() throws {
        let verifier = WeChatPushVerifier(token: "", crypto: nil)
        let query = PushFixtures.signedQuery(token: "")
        #expect(throws: WeChatPushError.notConfigured) { try verifier.verify(query: query, body: PushFixtures.body("debug-demo.json")) }
        #expect(throws: WeChatPushError.notConfigured) { try verifier.verifyServerCheck(query) }
        #expect(WeChatPushError.notConfigured.httpStatus == 503)
    }

    @Test("the GET server check accepts the official vector and refuses a changed one")
    func serverCheck() throws {
        let verifier = WeChatPushVerifier(token: "AAAAA", crypto: nil)
        let query = PushQuery(
            queryString:
                "signature=f464b24fc39322e44b38aa78f5edd27bd1441696&echostr=4375120948345356249&timestamp=1714036504&nonce=1514711492")
        try verifier.verifyServerCheck(query)
        var bad = query
        bad.timestamp = "1714036505"
        #expect(throws: WeChatPushError.badSignature) { try verifier.verifyServerCheck(bad) }
    }

    @Test("the verifier builds from wechat.* settings, refusing a bad encoding_aes_key")
    func fromSettings() throws {
        var settings = WeChatSettings()
        settings.pushToken = "AAAAA"
        settings.appID = WeChatVectors.Official.appID
        #expect(try WeChatPushVerifier(settings: settings).crypto == nil)
        settings.encodingAESKey = WeChatVectors.Official.key
        #expect(try WeChatPushVerifier(settings: settings).crypto?.appID == WeChatVectors.Official.appID)
        settings.encodingAESKey = "short"
        #expect(throws: WeChatPushError.invalidEncodingAESKey) { try WeChatPushVerifier(settings: settings) }
    }
}
