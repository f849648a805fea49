import Crypto
import Foundation

/// Why an IM callback's `Sign`/`RequestTime` query parameters were refused (answered 401).
public enum IMCallbackAuthError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The `Sign` query parameter is absent or empty.
    case missingSign
    /// The `RequestTime` query parameter is absent or empty.
    case missingRequestTime
    /// `RequestTime` is not a decimal number of seconds.
    case malformedRequestTime(String)
    /// `RequestTime` is more than the tolerance away from our clock, either way (anti-replay).
    case stale(requestTime: Int64, now: Int64)
    /// `Sign` is not sha256(token + RequestTime).
    case badSignature

    public var description: String {
        switch self {
        case .missingSign: return "the callback has no Sign parameter"
        case .missingRequestTime: return "the callback has no RequestTime parameter"
        case .malformedRequestTime(let value): return "the callback's RequestTime \"\(value)\" is not a number of seconds"
        case .stale(let requestTime, let now):
            return "the callback's RequestTime \(requestTime) is \(abs(now - requestTime)) s away from the server clock"
        case .badSignature: return "the callback's Sign does not match the callback token"
        }
    }
}

/// The callback authentication scheme of Tencent IM: `Sign = hex(SHA-256(token ++ RequestTime))`,
/// plain SHA-256 and not HMAC.
public enum IMCallbackSignature {
    /// The lowercase hex `Sign` IM computes for a token and a `RequestTime` string.
    public static func sign(token: String, requestTime: String) -> String {
        var hasher = SHA256()
        hasher.update(data: Array(token.utf8))
        hasher.update(data: Array(requestTime.utf8))
        return IMHex.string(hasher.finalize())
    }

    /// Accepts a callback only when `Sign` matches and `RequestTime` is within `tolerance` of `now`
    /// (exactly `tolerance` away still passes). `Sign` is compared case-insensitively, because hex
    /// digits carry no meaning in their case, and in constant time.
    public static func verify(
        sign: String?, requestTime: String?, token: String, now: Date, tolerance: TimeInterval = 60
    ) throws(IMCallbackAuthError) {
        guard let sign, !sign.isEmpty else { throw .missingSign }
        guard let requestTime, !requestTime.isEmpty else { throw .missingRequestTime }
        guard requestTime.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let seconds = Int64(requestTime)
        else { throw .malformedRequestTime(requestTime) }
        let skew = now.timeIntervalSince1970 - Double(seconds)
        guard abs(skew) <= tolerance else {
            throw .stale(requestTime: seconds, now: Int64(now.timeIntervalSince1970.rounded(.down)))
        }
        let expected = self.sign(token: token, requestTime: requestTime).utf8
        let given = sign.utf8.map(asciiLowercased)
        guard constantTimeEquals(expected, given) else { throw .badSignature }
    }

    /// Lowercases an ASCII letter byte and leaves every other byte alone.
    private static func asciiLowercased(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
    }
}

/// Lowercase hex for the IM protocol code (digests, HMACs).
enum IMHex {
    /// Lowercase hex of a byte sequence.
    static func string(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
