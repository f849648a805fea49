import Crypto
import Foundation
import Testing
import _CryptoExtras

@testable import Roundup

@Suite("WeChat push crypto")
struct PushCryptoTests {
    /// The raw AES-CBC plaintext of a vector, padding included, to check the pad byte itself.
    func rawPlaintext(_ encrypt: String, key: String) throws -> [UInt8] {
        let keyBytes = try #require(Data(base64Encoded: key + "="))
        let ciphertext = try #require(Data(base64Encoded: encrypt))
        return Array(
            try AES._CBC.decrypt(
                ciphertext, using: SymmetricKey(data: keyBytes), iv: AES._CBC.IV(ivBytes: keyBytes.prefix(16)), noPadding: true))
    }

    @Test("the official safe-mode request decrypts (pad 19, msg_len 167, random, appid)")
    func officialRequest() throws {
        typealias V = WeChatVectors.Official
        let raw = try rawPlaintext(V.requestEncrypt, key: V.key)
        #expect(raw.count == 224)
        #expect(raw.last == 19)
        #expect(Array(raw.prefix(16)) == Array("a8eedb185eb2fecf".utf8))
        #expect(Array(raw[16..<20]) == [0, 0, 0, 0xA7])
        let crypto = try PushCrypto(encodingAESKey: V.key, appID: V.appID)
        let msg = try crypto.decrypt(V.requestEncrypt)
        #expect(msg.count == 167)
        #expect(String(decoding: msg, as: UTF8.self) == V.requestMsg)
    }

    @Test("the official safe-mode reply encrypts to the exact ciphertext with the fixed random")
    func officialReply() throws {
        typealias V = WeChatVectors.Official
        let crypto = try PushCrypto(encodingAESKey: V.key, appID: V.appID)
        let encrypt = crypto.encrypt(Data(#"{"demo_resp":"good luck"}"#.utf8), random: Array("707722b803182950".utf8))
        #expect(encrypt == V.replyEncrypt)
        #expect(
            PushSignature.compute(token: V.token, timestamp: "1713424427", nonce: "415670741", encrypt: encrypt)
                == "1b9339964ed2e271e7c7b6ff2b0ef902fc94dea1")
    }

    @Test("sample A: Tencent's sample decrypts (pad 2, msg_len 280)")
    func sampleA() throws {
        typealias V = WeChatVectors.SampleA
        let raw = try rawPlaintext(V.encrypt, key: V.key)
        #expect(raw.count == 320)
        #expect(raw.last == 2)
        #expect(Array(raw.prefix(16)) == Array("89465c840c5f116f".utf8))
        let msg = try PushCrypto(encodingAESKey: V.key, appID: V.appID).decrypt(V.encrypt)
        #expect(msg.count == 280)
        #expect(String(decoding: msg, as: UTF8.self) == V.msg)
    }

    @Test("sample B: multibyte text encrypts deterministically; msg_len counts bytes")
    func sampleB() throws {
        typealias V = WeChatVectors.SampleB
        let crypto = try PushCrypto(encodingAESKey: V.key, appID: V.appID)
        let encrypt = crypto.encrypt(Data(V.plaintext.utf8), random: Array(V.random.utf8))
        #expect(encrypt == V.encrypt)
        let raw = try rawPlaintext(encrypt, key: V.key)
        #expect(Array(raw[16..<20]) == [0, 0, 0, 0x13])
        #expect(String(decoding: try crypto.decrypt(encrypt), as: UTF8.self) == V.plaintext)
    }

    @Test("sample C: EasyWeChat's vector decrypts (pad 21, msg_len 293)")
    func sampleC() throws {
        typealias V = WeChatVectors.SampleC
        let raw = try rawPlaintext(V.encrypt, key: V.key)
        #expect(raw.count == 352)
        #expect(raw.last == 21)
        let msg = try PushCrypto(encodingAESKey: V.key, appID: V.appID).decrypt(V.encrypt)
        #expect(msg.count == 293)
        #expect(String(decoding: msg, as: UTF8.self) == V.msg)
    }

    @Test("sample D: wechatpy's vector decrypts, and its reply encrypts and signs exactly")
    func sampleD() throws {
        typealias V = WeChatVectors.SampleD
        let crypto = try PushCrypto(encodingAESKey: V.key, appID: V.appID)
        let msg = String(decoding: try crypto.decrypt(V.encrypt), as: UTF8.self)
        #expect(msg.contains("<Content><![CDATA[test]]></Content>"))
        #expect(msg.contains("<FromUserName><![CDATA[messense]]></FromUserName>"))
        let encrypt = crypto.encrypt(Data(V.replyPlaintext.utf8), random: Array(V.replyRandom.utf8))
        #expect(encrypt == V.replyEncrypt)
        #expect(
            PushSignature.compute(token: V.token, timestamp: V.timestamp, nonce: V.nonce, encrypt: encrypt)
                == V.replyMsgSignature)
    }

    @Test("encryption pads to 32 bytes: a 32-byte multiple gets a full block of 0x20")
    func padsTo32() throws {
        let crypto = try PushCrypto(encodingAESKey: WeChatVectors.Official.key, appID: "wx0123456789abcdef")  // 18 bytes
        // 16 random + 4 length + 10 msg + 18 appid = 48 → pad 16; 26 msg → 64 → pad 32.
        for (length, pad) in [(10, 16), (26, 32), (25, 1), (0, 26)] {
            let encrypt = crypto.encrypt(Data(repeating: 0x61, count: length))
            let raw = try rawPlaintext(encrypt, key: WeChatVectors.Official.key)
            #expect(raw.count % 32 == 0)
            #expect(raw.last.map(Int.init) == pad)
            #expect(try crypto.decrypt(encrypt) == Data(repeating: 0x61, count: length))
        }
    }

    @Test("random prefixes differ between encryptions by default")
    func randomPrefix() throws {
        let crypto = try PushCrypto(encodingAESKey: WeChatVectors.Official.key, appID: "wx1")
        #expect(crypto.encrypt(Data("x".utf8)) != crypto.encrypt(Data("x".utf8)))
    }

    @Test("ciphertext for another AppID is refused with appIDMismatch")
    func wrongAppID() throws {
        let crypto = try PushCrypto(encodingAESKey: WeChatVectors.Official.key, appID: "wx_not_ours")
        #expect(throws: WeChatPushError.appIDMismatch) { try crypto.decrypt(WeChatVectors.Official.requestEncrypt) }
        let prefix = try PushCrypto(encodingAESKey: WeChatVectors.Official.key, appID: "wxba5fad812f8e6fb")
        #expect(throws: WeChatPushError.appIDMismatch) { try prefix.decrypt(WeChatVectors.Official.requestEncrypt) }
    }

    /// Ciphertext (bytes before base64) built to break one rule, encrypted without library padding.
    static func forged(_ plaintext: [UInt8]) throws -> String {
        let key = [UInt8](repeating: 0, count: 32)
        return try AES._CBC.encrypt(
            plaintext, using: SymmetricKey(data: key), iv: AES._CBC.IV(ivBytes: key.prefix(16)), noPadding: true
        ).base64EncodedString()
    }

    /// One malformed input and why it must be refused.
    struct Bad: Sendable, CustomTestStringConvertible {
        let name: String
        let encrypt: @Sendable () throws -> String
        var testDescription: String { name }
    }

    static let badInputs: [Bad] = [
        Bad(name: "not base64") { "!!!not-base64!!!" },
        Bad(name: "empty") { "" },
        Bad(name: "truncated to 15 bytes") { Data(repeating: 1, count: 15).base64EncodedString() },
        Bad(name: "truncated by one block") {
            let data = try #require(Data(base64Encoded: WeChatVectors.Official.requestEncrypt))
            return data.dropLast(16).base64EncodedString()
        },
        Bad(name: "tampered last block") {
            var data = try #require(Data(base64Encoded: WeChatVectors.Official.requestEncrypt))
            data[data.count - 20] ^= 0x55
            return data.base64EncodedString()
        },
        Bad(name: "pad byte 0") { try forged([UInt8](repeating: 0x41, count: 31) + [0]) },
        Bad(name: "pad byte 33") { try forged([UInt8](repeating: 0x41, count: 63) + [33]) },
        Bad(name: "pad bytes not all equal") { try forged([UInt8](repeating: 0x41, count: 28) + [3, 4, 4, 4]) },
        Bad(name: "shorter than 20 bytes after padding") { try forged([UInt8](repeating: 0x41, count: 16) + [UInt8](repeating: 16, count: 16)) },
        Bad(name: "msg_len beyond the plaintext") {
            try forged([UInt8](repeating: 0x41, count: 16) + [0, 0, 1, 0] + [UInt8](repeating: 0x41, count: 8) + [4, 4, 4, 4])
        },
    ]

    @Test("malformed ciphertext is undecryptable, never an AppID mismatch", arguments: badInputs)
    func undecryptable(_ bad: Bad) throws {
        let crypto = try PushCrypto(encodingAESKey: WeChatVectors.Official.key, appID: WeChatVectors.Official.appID)
        let input = try bad.encrypt()
        do {
            _ = try crypto.decrypt(input)
            Issue.record("decrypted \(bad.name)")
        } catch {
            guard case .undecryptable = error else {
                Issue.record("expected undecryptable, got \(error)")
                return
            }
            #expect(error.httpStatus == 400)
        }
    }

    @Test(
        "an EncodingAESKey that is not 43 alphanumerics is refused",
        arguments: ["", String(repeating: "A", count: 42), String(repeating: "A", count: 44), String(repeating: "A", count: 42) + "=",
            String(repeating: "A", count: 42) + "/"])
    func badKey(_ key: String) {
        #expect(throws: WeChatPushError.invalidEncodingAESKey) { try PushCrypto(encodingAESKey: key, appID: "wx") }
    }
}
