import Foundation
import Testing

@testable import Roundup

@Suite("UserSig (TLSSigAPIv2)")
struct UserSigTests {
    /// The sample key of the official libraries, used as text.
    static let sampleKey = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"
    static let vectorA =
        "eJyrVgrxCdYrSy1SslIy0jNQ0gHzM1NS80oy0zLBwjDB4pTsxIKCzBQlK0MTAyiAyKRWFGQWpQLFTU1NjeCiJZm5YDEzS0tDAyOYaHFmOtBM54KsUqeUwGLLqPK8UndHryCL-Lx8-1RPy7Ty1AijMk9f30hLk0x-r3CvSFulWgAPYy*9"
    static let vectorAUserbuf =
        "eJw9zEELwiAcBfDv4jmGs1lu0GkRUd0chMeWbv2zDdEZg*i7J5a92-s9eC-UnHj2VBZViGQYLWIHqcYJOoic0El9MQYkqvIC--Jd1GzAquCUUvLXCYZoq7LMMUnqnbKt78KvOB-u6Rr6AG299PTq3YP3bOvWR0HZcOO6sbMf7c5TLLXUtdgXwDbo-QEmHTZF"
    static let vectorCPython =
        "eJyrVgrxCdYrSy1SslJQMtIzUNJRAItkpqTmlWSmZUIkKjIT87NK82CSxSnZiQUFmSlAKUMTAyiAyqVWFGQWpYJkTE1NjRDiJZm5YFFzNPXFmekgG3zKHM1T9D3LzdODi-OKs8vCqpxcAvydnV2SSv2cy03cPcpDnA2SMgu0nUxslWoBHdYzUg__"
    static let vectorCNode =
        "eJyrVgrxCdYrSy1SslIy0jNQ0gHzM1NS80oy0zLBwhWZiflZpXlQqeKU7MSCgswUJStDEwMogMiUZOamKlkZmqOKplYUZBaBxE1NTY3gosWZ6UpWSj5ljuYp*p7l5unBxXnF2WVhVU4uAf7Ozi5JpX7O5SbuHuUhzgZJmQXaTia2SrUAohcx8g__"
    static let vectorCStored =
        "eAEBrABT-3siVExTLnZlciI6IjIuMCIsIlRMUy5pZGVudGlmaWVyIjoieGlhb2p1biIsIlRMUy5zZGthcHBpZCI6MTQwMDAwMDAwMCwiVExTLmV4cGlyZSI6MTU1NTIwMDAsIlRMUy50aW1lIjoxNzAwMDAwMDAwLCJUTFMuc2lnIjoiTHZBN2QvSXc3Z1NzbnNrdlZ6QkRQT0NDRGJ1TkN3NEdId1RDMGJpcCtCND0ifQrfwzH8"

    @Test("Vector A: TLS.sig with and without userbuf")
    func vectorASignature() {
        let plain = UserSig.signature(sdkAppID: 1_400_000_000, key: Self.sampleKey, identifier: "0", expire: 15_552_000, time: 1_569_910_200)
        #expect(plain == "CpjuBdQs9ZwnuGAJR8onoOeI9fweX2vIMMY94iOJWJY=")
        let withBuf = UserSig.signature(
            sdkAppID: 1_400_000_000, key: Self.sampleKey, identifier: "0", expire: 15_552_000, time: 1_569_910_200,
            userbuf: Data("abc".utf8))
        #expect(withBuf == "bC3u5cuslSg8Ds7KY58mhSkTrxunrFu50dkdkCYH4i8=")
    }

    @Test("Vector A: the given full UserSigs decode and verify, with and without userbuf")
    func vectorADecode() throws {
        let now: Int64 = 1_569_910_200 + 100
        let plain = try UserSig.verify(Self.vectorA, sdkAppID: 1_400_000_000, key: Self.sampleKey, identifier: "0", now: now)
        #expect(plain.time == 1_569_910_200 && plain.expire == 15_552_000)
        let contents = try UserSig.decode(Self.vectorAUserbuf)
        #expect(contents.userbuf == Data("abc".utf8))
        #expect(contents.signature == "bC3u5cuslSg8Ds7KY58mhSkTrxunrFu50dkdkCYH4i8=")
        _ = try UserSig.verify(
            Self.vectorAUserbuf, sdkAppID: 1_400_000_000, key: Self.sampleKey, identifier: "0", now: now,
            userbuf: Data("abc".utf8))
    }

    @Test("Vector A: generation round-trips, and with compact JSON at level 6 matches byte for byte")
    func vectorAGenerate() throws {
        let generated = UserSig.generate(
            sdkAppID: 1_400_000_000, key: Self.sampleKey, identifier: "0", expire: 15_552_000, time: 1_569_910_200)
        let contents = try UserSig.decode(generated)
        #expect(contents == UserSigContents(
            identifier: "0", sdkAppID: 1_400_000_000, time: 1_569_910_200, expire: 15_552_000,
            signature: "CpjuBdQs9ZwnuGAJR8onoOeI9fweX2vIMMY94iOJWJY=", userbuf: nil))
        _ = try UserSig.verify(generated, sdkAppID: 1_400_000_000, key: Self.sampleKey, identifier: "0", now: 1_569_910_200)
        #expect(generated == Self.vectorA)
        let withBuf = UserSig.generate(
            sdkAppID: 1_400_000_000, key: Self.sampleKey, identifier: "0", expire: 15_552_000, time: 1_569_910_200,
            userbuf: Data("abc".utf8))
        _ = try UserSig.verify(
            withBuf, sdkAppID: 1_400_000_000, key: Self.sampleKey, identifier: "0", now: 1_569_910_200, userbuf: Data("abc".utf8))
        #expect(withBuf == Self.vectorAUserbuf)
    }

    @Test("Vector B: a third-party golden TLS.sig")
    func vectorB() throws {
        let sig = UserSig.signature(
            sdkAppID: 20_030_819, key: "test-secret-key-1234567890abcdef", identifier: "user_42", expire: 604_800, time: 1_718_764_800)
        #expect(sig == "8y4PAvIKGCmKvubBW+DGnAa/LQ9VpBWp4fEjtiQ/VHQ=")
        let full = UserSig.generate(
            sdkAppID: 20_030_819, key: "test-secret-key-1234567890abcdef", identifier: "user_42", expire: 604_800, time: 1_718_764_800)
        _ = try UserSig.verify(full, sdkAppID: 20_030_819, key: "test-secret-key-1234567890abcdef", identifier: "user_42", now: 1_718_764_800)
    }

    @Test("Vector C: HMAC hex and TLS.sig of the official Python library")
    func vectorCSignature() {
        let raw = UserSig.hmac(
            sdkAppID: 1_400_000_000, key: Self.sampleKey, identifier: "xiaojun", expire: 15_552_000, time: 1_700_000_000, userbuf: nil)
        #expect(IMHex.string(raw) == "2ef03b77f230ee04ac9ec92f5730433ce0820dbb8d0b0e061f04c2d1b8a9f81e")
        let sig = UserSig.signature(
            sdkAppID: 1_400_000_000, key: Self.sampleKey, identifier: "xiaojun", expire: 15_552_000, time: 1_700_000_000)
        #expect(sig == "LvA7d/Iw7gSsnskvVzBDPOCCDbuNCw4GHwTC0bip+B4=")
    }

    @Test(
        "Vector C: the Python, Node and stored-block outputs all decode and verify",
        arguments: [vectorCPython, vectorCNode, vectorCStored])
    func vectorCDecode(userSig: String) throws {
        let result = try UserSig.verify(
            userSig, sdkAppID: 1_400_000_000, key: Self.sampleKey, identifier: "xiaojun", now: 1_700_000_000 + 86_400)
        #expect(result.time == 1_700_000_000 && result.expire == 15_552_000)
        #expect(try UserSig.decode(userSig).signature == "LvA7d/Iw7gSsnskvVzBDPOCCDbuNCw4GHwTC0bip+B4=")
    }

    @Test("the admin example's TLS.sig (identifier administrator, expire 86400)")
    func adminExample() throws {
        let sig = UserSig.signature(
            sdkAppID: 1_400_000_000, key: Self.sampleKey, identifier: "administrator", expire: 86_400, time: 1_700_000_000)
        #expect(sig == "yLAe+w7WUeUuqbV9h/TX78u21oTGi+i9Zp1u3PpnY60=")
        let full = UserSig.generate(
            sdkAppID: 1_400_000_000, key: Self.sampleKey, identifier: "administrator", expire: 86_400, time: 1_700_000_000)
        #expect(try UserSig.decode(full).signature == sig)
    }

    @Test("the stored-block encoder writes a zlib stream that inflates back, across block boundaries", arguments: [0, 1, 183, 65_535, 65_536, 140_000])
    func storedBlocks(size: Int) throws {
        let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let stream = UserSig.zlibStored(bytes)
        #expect(stream.prefix(2) == [0x78, 0x01])
        if size > 0 && size <= 65_536 {
            #expect(try UserSig.zlibInflate(stream) == bytes)
        }
    }

    @Test("the Go library's round trip: sdkappid 1, key \"2\", identifier \"3\", expire 4")
    func goRoundTrip() throws {
        let sig = UserSig.generate(sdkAppID: 1, key: "2", identifier: "3", expire: 4, time: 1_000)
        #expect(try UserSig.verify(sig, sdkAppID: 1, key: "2", identifier: "3", now: 1_004) == (time: 1_000, expire: 4))
    }

    static let good = UserSig.generate(sdkAppID: 1_400_000_000, key: sampleKey, identifier: "teacher_zhang", expire: 3_600, time: 1_700_000_000)

    @Test(
        "a UserSig that is expired, for someone else, for another app or with another key is refused",
        arguments: [
            (good, UInt32(1_400_000_000), sampleKey, "teacher_zhang", Int64(1_700_003_601), UserSigError.expired),
            (good, 1_400_000_000, sampleKey, "parent_001", 1_700_000_000, .identifierNotMatch),
            (good, 1_400_000_001, sampleKey, "teacher_zhang", 1_700_000_000, .sdkAppIDNotMatch),
            (good, 1_400_000_000, "another-key", "teacher_zhang", 1_700_000_000, .sigNotMatch),
        ])
    func refused(userSig: String, sdkAppID: UInt32, key: String, identifier: String, now: Int64, expected: UserSigError) {
        #expect(throws: expected) {
            try UserSig.verify(userSig, sdkAppID: sdkAppID, key: key, identifier: identifier, now: now)
        }
    }

    @Test("a UserSig is still valid at exactly time + expire")
    func expiryBoundary() throws {
        _ = try UserSig.verify(Self.good, sdkAppID: 1_400_000_000, key: Self.sampleKey, identifier: "teacher_zhang", now: 1_700_003_600)
    }

    @Test("a userbuf present or absent against expectation is a type mismatch; a different one does not match")
    func userbuf() {
        #expect(throws: UserSigError.userbufTypeNotMatch) {
            try UserSig.verify(Self.vectorAUserbuf, sdkAppID: 1_400_000_000, key: Self.sampleKey, identifier: "0", now: 1_569_910_200)
        }
        #expect(throws: UserSigError.userbufTypeNotMatch) {
            try UserSig.verify(
                Self.vectorA, sdkAppID: 1_400_000_000, key: Self.sampleKey, identifier: "0", now: 1_569_910_200, userbuf: Data("abc".utf8))
        }
        #expect(throws: UserSigError.userbufNotMatch) {
            try UserSig.verify(
                Self.vectorAUserbuf, sdkAppID: 1_400_000_000, key: Self.sampleKey, identifier: "0", now: 1_569_910_200,
                userbuf: Data("abd".utf8))
        }
    }

    /// A UserSig built from arbitrary JSON text, compressed the official way.
    static func wrap(_ json: String) -> String {
        UserSig.toUserSigAlphabet(UserSig.zlibCompress(Array(json.utf8)).base64EncodedString())
    }

    @Test(
        "garbage is refused with the error of the layer that broke",
        arguments: [
            ("", UserSigError.notBase64),
            ("!!!not base64!!!", .notBase64),
            ("aGVsbG8gd29ybGQ_", .notZlib),
            (String(vectorA.dropLast(12)), .notZlib),
            (String(vectorA.prefix(40)), .notZlib),
            (wrap("[1,2,3]"), .notJSON),
            (wrap("not json"), .notJSON),
            (wrap(#"{"TLS.ver":"2.0"}"#), .missingField("TLS.identifier")),
            (wrap(#"{"TLS.identifier":"a","TLS.sdkappid":-1}"#), .missingField("TLS.sdkappid")),
            (wrap(#"{"TLS.identifier":"a","TLS.sdkappid":1,"TLS.time":1,"TLS.expire":2}"#), .missingField("TLS.sig")),
            (wrap(#"{"TLS.identifier":"a","TLS.sdkappid":1,"TLS.time":1,"TLS.expire":2,"TLS.sig":"x","TLS.userbuf":7}"#), .missingField("TLS.userbuf")),
        ])
    func garbage(userSig: String, expected: UserSigError) {
        #expect(throws: expected) { try UserSig.decode(userSig) }
    }

    @Test("quoted numbers inside the JSON are accepted")
    func quotedNumbers() throws {
        let sig = UserSig.signature(sdkAppID: 7, key: "k", identifier: "a", expire: 100, time: 50)
        let userSig = Self.wrap(#"{"TLS.ver":"2.0","TLS.identifier":"a","TLS.sdkappid":"7","TLS.time":"50","TLS.expire":100,"TLS.sig":"\#(sig)"}"#)
        #expect(try UserSig.verify(userSig, sdkAppID: 7, key: "k", identifier: "a", now: 60) == (time: 50, expire: 100))
    }

    @Test("errors map to IM's server-side codes", arguments: [
        (UserSigError.expired, 70001), (.notZlib, 70003), (.sigNotMatch, 70009), (.identifierNotMatch, 70013), (.sdkAppIDNotMatch, 70014),
    ])
    func codes(error: UserSigError, code: Int) {
        #expect(error.imErrorCode == code)
    }

    @Test("UserSigs use only the URL-safe alphabet")
    func alphabet() {
        let allowed = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789*-_")
        for identifier in ["0", "xiaojun", "teacher_zhang", "家长"] {
            let sig = UserSig.generate(sdkAppID: 1_400_000_000, key: Self.sampleKey, identifier: identifier, expire: 86_400, time: 1_700_000_000)
            #expect(sig.allSatisfy(allowed.contains))
        }
    }
}
