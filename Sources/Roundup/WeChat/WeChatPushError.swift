/// Why a message push (or the GET server check) was refused; `httpStatus` is the answer `/wechat/push`
/// gives for it: 401 when the sender is not proven to be WeChat, 400 when the body is unusable.
public enum WeChatPushError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `signature` or `msg_signature` does not match.
    case badSignature
    /// A query parameter needed to check the signature is absent.
    case missingParameter(String)
    /// The ciphertext decrypted, but for another mini program's AppID.
    case appIDMismatch
    /// `encrypt_type=aes` arrived but no `wechat.encoding_aes_key` is configured, so it cannot be read.
    case encryptionNotConfigured
    /// The `Encrypt` value is not valid ciphertext under our key (base64, block size, padding, length).
    case undecryptable(String)
    /// The body is not a JSON object or an XML document of the expected shape.
    case malformed(String)
    /// The XML body declares a DOCTYPE, which is refused before parsing.
    case doctypeRefused
    /// `wechat.encoding_aes_key` is not 43 base64 characters decoding to 32 bytes.
    case invalidEncodingAESKey
    /// No `wechat.push_token` is configured, so no signature can be trusted.
    case notConfigured

    /// The HTTP status `/wechat/push` answers with for this error.
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
