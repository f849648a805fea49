import Crypto
import Foundation
import _CryptoExtras

/// The message-push cipher of safe and compatible mode: AES-256-CBC with the IV taken from the key,
/// PKCS#7 padding to **32** bytes done here, and the plaintext framed as
/// random(16) ‖ msg_len(4, big-endian) ‖ msg ‖ appid.
public struct PushCrypto: Sendable {
    /// Our AppID; decrypted messages must carry it.
    public let appID: String
    private let key: SymmetricKey
    private let iv: [UInt8]

    /// WeChat's padding block: the key length, not the AES block size.
    static let padBlock = 32

    /// Derives the key as base64(EncodingAESKey + "="), which must be 43 characters decoding to 32 bytes.
    public init(encodingAESKey: String, appID: String) throws(WeChatPushError) {
        guard encodingAESKey.utf8.count == 43,
            encodingAESKey.unicodeScalars.allSatisfy({ $0.isASCII && $0.properties.isAlphabetic || ("0"..."9").contains($0) }),
            let keyBytes = Data(base64Encoded: encodingAESKey + "="), keyBytes.count == 32
        else { throw .invalidEncodingAESKey }
        self.appID = appID
        self.key = SymmetricKey(data: keyBytes)
        self.iv = Array(keyBytes.prefix(16))
    }

    /// The `msg` bytes of an `Encrypt` value, after checking padding, framing and the trailing AppID.
    /// `.appIDMismatch` is distinct from `.undecryptable` because `/wechat/push` answers 401 for it (400 otherwise).
    public func decrypt(_ base64: String) throws(WeChatPushError) -> Data {
        // Standard alphabet with `=` padding, exactly as in the body; never URL-decoded.
        guard let ciphertext = Data(base64Encoded: base64) else { throw .undecryptable("not base64") }
        guard !ciphertext.isEmpty, ciphertext.count % 16 == 0 else {
            throw .undecryptable("ciphertext is not a positive multiple of 16 bytes")
        }
        let plain: [UInt8]
        do {
            plain = Array(try AES._CBC.decrypt(ciphertext, using: key, iv: try AES._CBC.IV(ivBytes: iv), noPadding: true))
        } catch {
            throw .undecryptable("AES-CBC failed")
        }
        // Strict PKCS#7 to 32: the SDKs' habit of treating a bad pad as zero would accept garbage.
        guard let pad = plain.last.map(Int.init), (1...Self.padBlock).contains(pad), pad <= plain.count,
            plain.suffix(pad).allSatisfy({ Int($0) == pad })
        else { throw .undecryptable("bad padding") }
        let full = plain.dropLast(pad)
        guard full.count >= 20 else { throw .undecryptable("shorter than the random prefix and length") }
        let lengthStart = full.startIndex + 16
        let msgLength = full[lengthStart..<lengthStart + 4].reduce(0) { ($0 << 8) | Int($1) }
        let msgStart = lengthStart + 4
        guard msgLength <= full.endIndex - msgStart else { throw .undecryptable("msg_len exceeds the plaintext") }
        let msg = full[msgStart..<msgStart + msgLength]
        let trailingAppID = full[(msgStart + msgLength)...]
        guard constantTimeEquals(Array(trailingAppID), Array(appID.utf8)) else { throw .appIDMismatch }
        return Data(msg)
    }

    /// The `Encrypt` value for `plaintext` under our key and AppID. `random` (16 bytes) is for
    /// deterministic tests; by default it comes from the system CSPRNG.
    public func encrypt(_ plaintext: Data, random: [UInt8]? = nil) -> String {
        let prefix: [UInt8]
        if let random {
            precondition(random.count == 16, "the random prefix is 16 bytes")
            prefix = random
        } else {
            var generator = SystemRandomNumberGenerator()
            prefix = (0..<16).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        }
        let length = UInt32(plaintext.count)
        var full = prefix
        full += [UInt8(length >> 24 & 0xFF), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)]
        full += plaintext
        full += Array(appID.utf8)
        let pad = Self.padBlock - full.count % Self.padBlock
        full += [UInt8](repeating: UInt8(pad), count: pad)
        do {
            let ciphertext = try AES._CBC.encrypt(full, using: key, iv: try AES._CBC.IV(ivBytes: iv), noPadding: true)
            return ciphertext.base64EncodedString()
        } catch {
            // Unreachable: the key is 32 bytes, the IV 16 and the input a multiple of 32.
            preconditionFailure("AES-CBC encryption failed: \(error)")
        }
    }
}
