import Foundation

/// The query parameters of a message push or server check.
public struct PushQuery: Sendable, Equatable {
    public var signature: String?
    public var timestamp: String?
    public var nonce: String?
    /// `aes` in compatible and safe modes.
    public var encryptType: String?
    public var msgSignature: String?

    public init(
        signature: String?, timestamp: String?, nonce: String?, encryptType: String? = nil, msgSignature: String? = nil
    ) {
        self.signature = signature
        self.timestamp = timestamp
        self.nonce = nonce
        self.encryptType = encryptType
        self.msgSignature = msgSignature
    }

    /// From already-decoded query parameters (`openid`, `echostr` and unknown names are ignored).
    public init(_ parameters: [String: String]) {
        self.init(
            signature: parameters["signature"], timestamp: parameters["timestamp"], nonce: parameters["nonce"],
            encryptType: parameters["encrypt_type"], msgSignature: parameters["msg_signature"])
    }

    /// From a raw query string (`a=b&c=d`), percent-decoded once.
    public init(queryString: String) {
        var parameters: [String: String] = [:]
        for pair in queryString.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0]).removingPercentEncoding ?? String(parts[0])
            let value = parts.count > 1 ? (String(parts[1]).removingPercentEncoding ?? String(parts[1])) : ""
            if parameters[name] == nil { parameters[name] = value }
        }
        self.init(parameters)
    }

    /// Whether WeChat says the body is encrypted (compatible or safe mode).
    public var isEncrypted: Bool { encryptType == "aes" }
}

/// Checks that a push really comes from WeChat and turns it into a `WeChatEvent`: the server-side
/// half of `/wechat/push` with no HTTP in it.
///
/// Plaintext mode: `signature` is verified before the body is parsed. Compatible and safe mode
/// (`encrypt_type=aes`): `msg_signature` over the body's `Encrypt` is verified, then decrypted,
/// and only the decrypted document is read; the plaintext copies compatible mode sends beside it
/// are unauthenticated and ignored. `signature`, always sent, is checked too when present.
public struct WeChatPushVerifier: Sendable {
    /// `wechat.push_token`.
    public let token: String
    /// Present when `wechat.encoding_aes_key` is set; carries our AppID.
    public let crypto: PushCrypto?

    public init(token: String, crypto: PushCrypto?) {
        self.token = token
        self.crypto = crypto
    }

    /// From the `wechat.*` settings; throws when a set `encoding_aes_key` is invalid.
    public init(settings: WeChatSettings) throws(WeChatPushError) {
        let crypto = settings.encodingAESKey.isEmpty
            ? nil : try PushCrypto(encodingAESKey: settings.encodingAESKey, appID: settings.appID)
        self.init(token: settings.pushToken, crypto: crypto)
    }

    /// The GET server check: `signature` over (token, timestamp, nonce); the caller echoes `echostr`.
    public func verifyServerCheck(_ query: PushQuery) throws(WeChatPushError) {
        try checkSignature(query)
    }

    /// The event of a POST push, or why it must be refused (`httpStatus` gives the answer).
    public func verify(query: PushQuery, body: Data) throws(WeChatPushError) -> WeChatEvent {
        guard !token.isEmpty else { throw .notConfigured }
        guard query.isEncrypted else {
            try checkSignature(query)
            return try WeChatEvent.decode(PushDocument.parse(body).1)
        }
        guard let crypto else { throw .encryptionNotConfigured }
        let timestamp = try required(query.timestamp, "timestamp")
        let nonce = try required(query.nonce, "nonce")
        let msgSignature = try required(query.msgSignature, "msg_signature")
        let (format, outer) = try PushDocument.parse(body)
        guard let encrypt = outer["Encrypt"]?.text, !encrypt.isEmpty else {
            throw .malformed("encrypt_type=aes but the body has no Encrypt")
        }
        guard PushSignature.verify(msgSignature, token: token, timestamp: timestamp, nonce: nonce, encrypt: encrypt) else {
            throw .badSignature
        }
        if query.signature != nil { try checkSignature(query) }
        let inner = try crypto.decrypt(encrypt)
        return try WeChatEvent.decode(PushDocument.parse(inner, as: format))
    }

    /// `signature` over (token, timestamp, nonce).
    private func checkSignature(_ query: PushQuery) throws(WeChatPushError) {
        guard !token.isEmpty else { throw .notConfigured }
        let signature = try required(query.signature, "signature")
        let timestamp = try required(query.timestamp, "timestamp")
        let nonce = try required(query.nonce, "nonce")
        guard PushSignature.verify(signature, token: token, timestamp: timestamp, nonce: nonce) else { throw .badSignature }
    }

    private func required(_ value: String?, _ name: String) throws(WeChatPushError) -> String {
        guard let value, !value.isEmpty else { throw .missingParameter(name) }
        return value
    }
}
