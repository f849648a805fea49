/// The rules a binding must keep, the same for the admin API, `users bind` and `users import`:
/// each function returns why a value is refused, as a sentence fragment, or nil when it is fine.
public enum BindingRules {
    /// The longest openid accepted; WeChat's are 28 characters today.
    public static let maximumOpenidLength = 64
    /// The longest IM UserID in UTF-8 bytes, as IM allows.
    public static let maximumUserIDBytes = 32

    /// An IM UserID: 1 to 32 bytes, no whitespace and no control characters.
    public static func problem(userID id: String) -> String? {
        if id.isEmpty { return "im_user_id is empty" }
        if id.utf8.count > maximumUserIDBytes { return "im_user_id \"\(id)\" is longer than IM's \(maximumUserIDBytes) bytes" }
        if id.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.properties.generalCategory == .control }) {
            return "im_user_id \"\(id)\" contains spaces or control characters"
        }
        return nil
    }

    /// An openid: 1 to 64 characters, each an ASCII letter or digit, `-` or `_`.
    public static func problem(openid: String) -> String? {
        isValidOpenid(openid) ? nil : "openid \"\(openid)\" is not an openid (letters, digits, - and _, up to \(maximumOpenidLength))"
    }

    /// Whether `openid` is 1 to 64 characters of `[A-Za-z0-9_-]`.
    public static func isValidOpenid(_ openid: String) -> Bool {
        !openid.isEmpty && openid.utf8.count <= maximumOpenidLength
            && openid.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                    UInt8(ascii: "-"), UInt8(ascii: "_"):
                    return true
                default:
                    return false
                }
            }
    }

    /// A display name: no control characters (it is shown on one line of a digest).
    public static func problem(name: String) -> String? {
        name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) ? "name contains control characters" : nil
    }

    /// A profile: a key of `digest.profiles`.
    public static func problem(profile: String, known: Set<String>) -> String? {
        guard !known.contains(profile) else { return nil }
        let configured = known.isEmpty ? "none are configured" : "configured: \(known.sorted().joined(separator: ", "))"
        return "profile \"\(profile)\" is not in digest.profiles (\(configured))"
    }
}
