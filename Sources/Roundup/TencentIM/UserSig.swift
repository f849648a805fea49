import CompressNIO
import Crypto
import Foundation
import NIOCore

/// Why a UserSig was refused, named like the official Go library's errors.
public enum UserSigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Not in the UserSig base64 alphabet (`A–Z a–z 0–9 * - _`).
    case notBase64
    /// The decoded bytes are not a zlib stream (RFC 1950), or it is truncated or corrupt.
    case notZlib
    /// The inflated bytes are not the expected JSON object.
    case notJSON
    /// A required `TLS.*` field is absent or has the wrong type.
    case missingField(String)
    /// `TLS.sdkappid` is not ours (Go: `sdk appid not match`).
    case sdkAppIDNotMatch
    /// `TLS.identifier` is not the expected user (Go: `identifier not match`).
    case identifierNotMatch
    /// `now > TLS.time + TLS.expire` (Go: `expired`).
    case expired
    /// A userbuf was present where none was expected, or the other way round (Go: `userbuf type not match`).
    case userbufTypeNotMatch
    /// The userbuf differs from the expected one (Go: `userbuf not match`).
    case userbufNotMatch
    /// `TLS.sig` is not the HMAC of the content with our key (Go: `sig not match`).
    case sigNotMatch

    /// The error code IM's servers answer for this failure (70000 range).
    public var imErrorCode: Int {
        switch self {
        case .notBase64, .notZlib, .notJSON, .missingField: return 70003
        case .expired: return 70001
        case .identifierNotMatch: return 70013
        case .sdkAppIDNotMatch: return 70014
        case .userbufTypeNotMatch, .userbufNotMatch, .sigNotMatch: return 70009
        }
    }

    public var description: String {
        switch self {
        case .notBase64: return "the UserSig is not in the UserSig base64 alphabet"
        case .notZlib: return "the UserSig does not hold a valid zlib stream"
        case .notJSON: return "the UserSig does not hold a JSON object"
        case .missingField(let name): return "the UserSig has no valid \(name)"
        case .sdkAppIDNotMatch: return "sdk appid not match"
        case .identifierNotMatch: return "identifier not match"
        case .expired: return "expired"
        case .userbufTypeNotMatch: return "userbuf type not match"
        case .userbufNotMatch: return "userbuf not match"
        case .sigNotMatch: return "sig not match"
        }
    }
}

/// The fields carried inside a UserSig, as decoded and before any check.
public struct UserSigContents: Sendable, Equatable {
    public var identifier: String
    public var sdkAppID: UInt32
    public var time: Int64
    public var expire: Int64
    public var signature: String
    public var userbuf: Data?
}

/// TLSSigAPIv2: the HMAC-SHA256 UserSig that authenticates IM REST calls.
public enum UserSig {
    /// The official libraries' default validity, 180 days.
    public static let defaultExpire: Int64 = 15_552_000

    /// The `TLS.sig` value: base64 of HMAC-SHA256 over the fixed-order content lines (steps 1–2 of the official libraries).
    public static func signature(
        sdkAppID: UInt32, key: String, identifier: String, expire: Int64, time: Int64, userbuf: Data? = nil
    ) -> String {
        Data(hmac(sdkAppID: sdkAppID, key: key, identifier: identifier, expire: expire, time: time, userbuf: userbuf))
            .base64EncodedString()
    }

    /// A complete UserSig: compact JSON, zlib level 6 (what the Python library emits, so Vector A
    /// reproduces byte for byte), base64 with IM's URL-safe alphabet (steps 3–5).
    public static func generate(
        sdkAppID: UInt32, key: String, identifier: String, expire: Int64, time: Int64, userbuf: Data? = nil
    ) -> String {
        var fields: [(String, JSONValue)] = [
            ("TLS.ver", .string("2.0")),
            ("TLS.identifier", .string(identifier)),
            ("TLS.sdkappid", .int(Int64(sdkAppID))),
            ("TLS.expire", .int(expire)),
            ("TLS.time", .int(time)),
        ]
        if let userbuf { fields.append(("TLS.userbuf", .string(userbuf.base64EncodedString()))) }
        let sig = signature(sdkAppID: sdkAppID, key: key, identifier: identifier, expire: expire, time: time, userbuf: userbuf)
        fields.append(("TLS.sig", .string(sig)))
        let json = Array(JSONValue.object(fields).serialized.utf8)
        return toUserSigAlphabet(zlibCompress(json).base64EncodedString())
    }

    /// Checks a UserSig the way the official Go `VerifyUserSig` does and returns its
    /// `TLS.time` and `TLS.expire`. `userbuf` must match what the UserSig carries (nil: none).
    public static func verify(
        _ userSig: String, sdkAppID: UInt32, key: String, identifier: String, now: Int64, userbuf: Data? = nil
    ) throws(UserSigError) -> (time: Int64, expire: Int64) {
        let contents = try decode(userSig)
        guard contents.sdkAppID == sdkAppID else { throw .sdkAppIDNotMatch }
        guard contents.identifier == identifier else { throw .identifierNotMatch }
        let (end, overflow) = contents.time.addingReportingOverflow(contents.expire)
        guard !overflow, now <= end else { throw .expired }
        switch (userbuf, contents.userbuf) {
        case (nil, nil): break
        case (let expected?, let given?): guard expected == given else { throw .userbufNotMatch }
        default: throw .userbufTypeNotMatch
        }
        let expected = signature(
            sdkAppID: contents.sdkAppID, key: key, identifier: contents.identifier,
            expire: contents.expire, time: contents.time, userbuf: contents.userbuf)
        guard constantTimeEquals(Array(expected.utf8), Array(contents.signature.utf8)) else { throw .sigNotMatch }
        return (contents.time, contents.expire)
    }

    /// Unpacks a UserSig without checking it: reverse alphabet, base64, inflate, JSON.
    public static func decode(_ userSig: String) throws(UserSigError) -> UserSigContents {
        guard let compressed = Data(base64Encoded: fromUserSigAlphabet(userSig)), !compressed.isEmpty else {
            throw .notBase64
        }
        let inflated = try zlibInflate(Array(compressed))
        guard let json = try? IMJSON.parse(Data(inflated)), let object = json.object else { throw .notJSON }
        // Numbers may be quoted: some signers write them as strings.
        guard case .string(let identifier)? = object["TLS.identifier"] else { throw .missingField("TLS.identifier") }
        guard let appID = object["TLS.sdkappid"]?.int64, let sdkAppID = UInt32(exactly: appID) else {
            throw .missingField("TLS.sdkappid")
        }
        guard let time = object["TLS.time"]?.int64 else { throw .missingField("TLS.time") }
        guard let expire = object["TLS.expire"]?.int64 else { throw .missingField("TLS.expire") }
        guard case .string(let sig)? = object["TLS.sig"] else { throw .missingField("TLS.sig") }
        var userbuf: Data?
        if let raw = object["TLS.userbuf"] {
            guard case .string(let text) = raw, let bytes = Data(base64Encoded: text) else {
                throw .missingField("TLS.userbuf")
            }
            userbuf = bytes
        }
        return UserSigContents(
            identifier: identifier, sdkAppID: sdkAppID, time: time, expire: expire, signature: sig, userbuf: userbuf)
    }

    /// The raw HMAC-SHA256 of the content string, keyed with the secret key's UTF-8 bytes (not hex-decoded).
    static func hmac(
        sdkAppID: UInt32, key: String, identifier: String, expire: Int64, time: Int64, userbuf: Data?
    ) -> [UInt8] {
        var content = "TLS.identifier:\(identifier)\nTLS.sdkappid:\(sdkAppID)\nTLS.time:\(time)\nTLS.expire:\(expire)\n"
        if let userbuf { content += "TLS.userbuf:\(userbuf.base64EncodedString())\n" }
        let code = HMAC<SHA256>.authenticationCode(for: Array(content.utf8), using: SymmetricKey(data: Array(key.utf8)))
        return Array(code)
    }

    /// `+`→`*`, `/`→`-`, `=`→`_` (the last step of signing).
    static func toUserSigAlphabet(_ base64: String) -> String {
        String(String.UnicodeScalarView(base64.unicodeScalars.map { scalar in
            switch scalar {
            case "+": return "*"
            case "/": return "-"
            case "=": return "_"
            default: return scalar
            }
        }))
    }

    /// The reverse of `toUserSigAlphabet`.
    static func fromUserSigAlphabet(_ userSig: String) -> String {
        String(String.UnicodeScalarView(userSig.unicodeScalars.map { scalar in
            switch scalar {
            case "*": return "+"
            case "-": return "/"
            case "_": return "="
            default: return scalar
            }
        }))
    }

    /// Compresses to the zlib format (RFC 1950) at level 6; falls back to stored blocks if zlib fails.
    static func zlibCompress(_ bytes: [UInt8]) -> Data {
        var input = ByteBuffer(bytes: bytes)
        let algorithm = CompressionAlgorithm.zlib(configuration: .init(compressionLevel: .compressionLevel6))
        guard let output = try? input.compress(with: algorithm) else { return Data(zlibStored(bytes)) }
        return Data(output.readableBytesView)
    }

    /// A zlib stream of stored (uncompressed) blocks, as the official Go library emits.
    static func zlibStored(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]
        var start = 0
        repeat {
            let end = min(start + 65_535, bytes.count)
            let length = UInt16(end - start)
            out.append(end == bytes.count ? 0x01 : 0x00)
            out.append(UInt8(length & 0xFF))
            out.append(UInt8(length >> 8))
            out.append(UInt8(~length & 0xFF))
            out.append(UInt8(~length >> 8))
            out.append(contentsOf: bytes[start..<end])
            start = end
        } while start < bytes.count
        let checksum = adler32(bytes)
        out.append(contentsOf: [UInt8(checksum >> 24), UInt8(checksum >> 16 & 0xFF), UInt8(checksum >> 8 & 0xFF), UInt8(checksum & 0xFF)])
        return out
    }

    /// Inflates a zlib stream, at most 64 KiB out. CompressNIO returns partial output for a truncated
    /// stream, so the trailing Adler-32 is checked here against what came out.
    static func zlibInflate(_ bytes: [UInt8]) throws(UserSigError) -> [UInt8] {
        guard bytes.count >= 6 else { throw .notZlib }
        var input = ByteBuffer(bytes: bytes)
        let output: ByteBuffer
        do {
            output = try input.decompress(with: .zlib(), maxSize: 65_536)
        } catch {
            throw .notZlib
        }
        let inflated = Array(output.readableBytesView)
        let trailer = bytes.suffix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        guard trailer == adler32(inflated) else { throw .notZlib }
        return inflated
    }

    /// The Adler-32 checksum that ends a zlib stream (RFC 1950 §8.2).
    static func adler32(_ bytes: [UInt8]) -> UInt32 {
        var a: UInt32 = 1
        var b: UInt32 = 0
        for byte in bytes {
            a = (a + UInt32(byte)) % 65_521
            b = (b + a) % 65_521
        }
        return b << 16 | a
    }
}
