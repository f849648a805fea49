import Crypto
import Foundation
import Testing

@testable import Roundup

@Suite("IM callback signature")
struct IMCallbackSignatureTests {
    /// A clock reading `seconds` after the epoch.
    static func at(_ seconds: Double) -> Date { Date(timeIntervalSince1970: seconds) }

    @Test(
        "Sign is sha256 of token then RequestTime, lowercase hex (IM's documented vectors)",
        arguments: [
            ("xxxxyyyy", "1669872112", "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061"),
            ("my-im-callback-token", "1700000000", "c299d2f4cb021e6b1bfdb8c8d0b0127e9eaa4a9acbe9af7db1bb6e1a424408ab"),
        ])
    func vectors(token: String, requestTime: String, expected: String) throws {
        #expect(IMCallbackSignature.sign(token: token, requestTime: requestTime) == expected)
        try IMCallbackSignature.verify(
            sign: expected, requestTime: requestTime, token: token, now: Self.at(Double(requestTime)!))
    }

    @Test("the HMAC of the same inputs is a different value, so the scheme is not HMAC")
    func notHMAC() {
        let hmac = HMAC<SHA256>.authenticationCode(
            for: Array("1669872112".utf8), using: SymmetricKey(data: Array("xxxxyyyy".utf8)))
        let hmacHex = IMHex.string(hmac)
        #expect(hmacHex.hasPrefix("cf781b40"))
        #expect(hmacHex.hasSuffix("c9184"))
        #expect(hmacHex != IMCallbackSignature.sign(token: "xxxxyyyy", requestTime: "1669872112"))
        #expect(throws: IMCallbackAuthError.badSignature) {
            try IMCallbackSignature.verify(
                sign: hmacHex, requestTime: "1669872112", token: "xxxxyyyy", now: Self.at(1_669_872_112))
        }
    }

    @Test("a RequestTime exactly 60 s away either way is accepted", arguments: [-60.0, 60.0, 0.0, 59.9])
    func boundary(offset: Double) throws {
        let sign = IMCallbackSignature.sign(token: "t", requestTime: "1700000000")
        try IMCallbackSignature.verify(sign: sign, requestTime: "1700000000", token: "t", now: Self.at(1_700_000_000 + offset))
    }

    @Test("a RequestTime more than 60 s away either way is stale", arguments: [-61.0, 61.0, 60.001, -3600.0])
    func stale(offset: Double) {
        let sign = IMCallbackSignature.sign(token: "t", requestTime: "1700000000")
        #expect {
            try IMCallbackSignature.verify(sign: sign, requestTime: "1700000000", token: "t", now: Self.at(1_700_000_000 + offset))
        } throws: { error in
            guard case .stale(let requestTime, _) = error as? IMCallbackAuthError else { return false }
            return requestTime == 1_700_000_000
        }
    }

    @Test("a custom tolerance is honoured")
    func customTolerance() {
        let sign = IMCallbackSignature.sign(token: "t", requestTime: "1700000000")
        #expect(throws: IMCallbackAuthError.self) {
            try IMCallbackSignature.verify(
                sign: sign, requestTime: "1700000000", token: "t", now: Self.at(1_700_000_011), tolerance: 10)
        }
    }

    @Test("a tampered Sign, a wrong token or a different RequestTime is a bad signature")
    func tampered() {
        var sign = Array(IMCallbackSignature.sign(token: "xxxxyyyy", requestTime: "1669872112"))
        sign[10] = sign[10] == "0" ? "1" : "0"
        let now = Self.at(1_669_872_112)
        #expect(throws: IMCallbackAuthError.badSignature) {
            try IMCallbackSignature.verify(sign: String(sign), requestTime: "1669872112", token: "xxxxyyyy", now: now)
        }
        let good = IMCallbackSignature.sign(token: "xxxxyyyy", requestTime: "1669872112")
        #expect(throws: IMCallbackAuthError.badSignature) {
            try IMCallbackSignature.verify(sign: good, requestTime: "1669872112", token: "xxxxyyyz", now: now)
        }
        #expect(throws: IMCallbackAuthError.badSignature) {
            try IMCallbackSignature.verify(sign: good, requestTime: "1669872113", token: "xxxxyyyy", now: now)
        }
        #expect(throws: IMCallbackAuthError.badSignature) {
            try IMCallbackSignature.verify(sign: String(good.dropLast()), requestTime: "1669872112", token: "xxxxyyyy", now: now)
        }
    }

    @Test("an uppercase hex Sign is accepted, since hex case carries no meaning")
    func uppercase() throws {
        let sign = "17773BC39A671D7B9AA835458704D2A6DB81360A5940292B587D6D760D484061"
        try IMCallbackSignature.verify(sign: sign, requestTime: "1669872112", token: "xxxxyyyy", now: Self.at(1_669_872_112))
    }

    @Test(
        "missing or malformed parameters are refused with their own error",
        arguments: [
            (nil, "1669872112", IMCallbackAuthError.missingSign),
            ("", "1669872112", .missingSign),
            ("abc", nil, .missingRequestTime),
            ("abc", "", .missingRequestTime),
            ("abc", "16698721x2", .malformedRequestTime("16698721x2")),
            ("abc", "-1669872112", .malformedRequestTime("-1669872112")),
            ("abc", "1669872112.5", .malformedRequestTime("1669872112.5")),
            ("abc", "99999999999999999999999", .malformedRequestTime("99999999999999999999999")),
        ] as [(String?, String?, IMCallbackAuthError)])
    func missing(sign: String?, requestTime: String?, expected: IMCallbackAuthError) {
        #expect(throws: expected) {
            try IMCallbackSignature.verify(sign: sign, requestTime: requestTime, token: "xxxxyyyy", now: Self.at(1_669_872_112))
        }
    }

    @Test("every error reads as one sentence")
    func descriptions() {
        let errors: [IMCallbackAuthError] = [
            .missingSign, .missingRequestTime, .malformedRequestTime("x"), .stale(requestTime: 1, now: 100), .badSignature,
        ]
        for error in errors { #expect(!error.description.isEmpty && !error.description.contains("\n")) }
        #expect(IMCallbackAuthError.stale(requestTime: 1, now: 100).description.contains("99 s"))
    }

    @Test("constant-time comparison matches plain equality")
    func constantTime() {
        #expect(constantTimeEquals(Array("abc".utf8), Array("abc".utf8)))
        #expect(!constantTimeEquals(Array("abc".utf8), Array("abd".utf8)))
        #expect(!constantTimeEquals(Array("abc".utf8), Array("abcd".utf8)))
        #expect(constantTimeEquals([UInt8](), [UInt8]()))
        #expect(constantTimeEquals("héllo".utf8, Array("héllo".utf8)))
    }
}
