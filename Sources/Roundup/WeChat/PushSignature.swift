import Crypto
import Foundation

/// WeChat's push signatures: SHA-1 over the byte-wise sorted, concatenated strings, as 40 lowercase
/// hex characters. `signature` covers (token, timestamp, nonce); `msg_signature` and a reply's
/// `MsgSignature` add the `Encrypt` value.
public enum PushSignature {
    /// The signature of any set of strings: sorted by UTF-8 bytes, never numerically or by locale,
    /// because base64 `Encrypt` often starts with `+` or `/` and sorts first.
    public static func compute(_ parts: [String]) -> String {
        let joined = parts.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }.joined()
        return Insecure.SHA1.hash(data: Data(joined.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    /// `signature` (no `encrypt`) or `msg_signature` (with the body's `Encrypt`).
    public static func compute(token: String, timestamp: String, nonce: String, encrypt: String? = nil) -> String {
        compute([token, timestamp, nonce] + (encrypt.map { [$0] } ?? []))
    }

    /// Whether `signature` is the one WeChat would send, compared in constant time.
    public static func verify(
        _ signature: String, token: String, timestamp: String, nonce: String, encrypt: String? = nil
    ) -> Bool {
        let expected = compute(token: token, timestamp: timestamp, nonce: nonce, encrypt: encrypt)
        return constantTimeEquals(Array(expected.utf8), Array(signature.lowercased().utf8))
    }
}
