/// Why a message push (or the GET server check) was refused; `httpStatus` is the answer SPEC §4
/// gives for it: 401 when the sender is not proven to be WeChat, 400 when the body is unusable.
public enum WeChatPushError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `signature` or `msg_signature` does not match (wechat.md §2, §3.1).
    case badSignature
    /// A query parameter needed to check the signature is absent.
    case missingParameter(String)
    /// The ciphertext decrypted, but for another mini program's AppID (wechat.md §3.4, §8.13).
    case appIDMismatch
    /// `encrypt_type=aes` arrived but no `wechat.encoding_aes_key` is configured, so it cannot be read.
    case encryptionNotConfigured
    /// The `Encrypt` value is not valid ciphertext under our key (base64, block size, padding, length).
    case undecryptable(String)
    /// The body is not a JSON object or an XML document of the expected shape.
    case malformed(String)
    /// The XML body declares a DOCTYPE, which is refused before parsing (wechat.md §8.14).
    case doctypeRefused
    /// `wechat.encoding_aes_key` is not 43 base64 characters decoding to 32 bytes (wechat.md §3.3).
    case invalidEncodingAESKey
    /// No `wechat.push_token` is configured, so no signature can be trusted (SPEC §5.15).
    case notConfigured

    /// The HTTP status `/wechat/push` answers with for this error (SPEC §4, §5.15).
    public var httpStatus: Int {
        switch self {
        case .badSignature, .missingParameter, .appIDMismatch: return 401
        case .encryptionNotConfigured, .undecryptable, .malformed, .doctypeRefused: return 400
        case .invalidEncodingAESKey, .notConfigured: return 503
        }
    }

    public var description: String {
        switch self {
        case .badSignature: return "the push signature does not match"
        case .missingParameter(let name): return "the query parameter \(name) is missing"
        case .appIDMismatch: return "the push was encrypted for another AppID"
        case .encryptionNotConfigured: return "encrypted push but no encoding_aes_key configured"
        case .undecryptable(let why): return "the push cannot be decrypted: \(why)"
        case .malformed(let why): return "the push body is malformed: \(why)"
        case .doctypeRefused: return "XML with a DOCTYPE is refused"
        case .invalidEncodingAESKey: return "encoding_aes_key must be 43 base64 characters"
        case .notConfigured: return "wechat.push_token is not configured"
        }
    }
}
