import Foundation

/// One `subscribeMessage.send` body. `data` keeps config order so the body shown
/// by `roundup show` is byte-for-byte what is sent.
public struct SubscribeMessage: Sendable, Equatable {
    /// One keyword: `"thing1": {"value": "…"}`.
    public struct Field: Sendable, Equatable {
        public var key: String
        public var value: String

        public init(key: String, value: String) {
            self.key = key
            self.value = value
        }
    }

    /// The recipient's openid.
    public var touser: String
    public var templateID: String
    /// Opened when the card is tapped; omitted from the body when nil or empty.
    public var page: String?
    /// `developer`, `trial` or `formal`; always sent, though old docs call it optional.
    public var miniprogramState: String
    /// `zh_CN`, `en_US`, `zh_HK` or `zh_TW`; always sent.
    public var lang: String
    public var data: [Field]

    public init(
        touser: String, templateID: String, page: String? = nil, miniprogramState: String = "formal", lang: String = "zh_CN",
        data: [Field]
    ) {
        self.touser = touser
        self.templateID = templateID
        self.page = page
        self.miniprogramState = miniprogramState
        self.lang = lang
        self.data = data
    }

    /// The body as JSON: `data` a nested object (never a JSON string), keys in a fixed order.
    public var json: JSONValue {
        var pairs: [(String, JSONValue)] = [("touser", .string(touser)), ("template_id", .string(templateID))]
        if let page, !page.isEmpty { pairs.append(("page", .string(page))) }
        pairs.append(("miniprogram_state", .string(miniprogramState)))
        pairs.append(("lang", .string(lang)))
        pairs.append(("data", .object(data.map { ($0.key, .object([("value", .string($0.value))])) })))
        return .object(pairs)
    }

    /// The exact UTF-8 body sent to WeChat.
    public var body: Data { Data(json.serialized.utf8) }
}

/// What became of one send, typed by the action Roundup takes for it (docs/operations.md, WeChat errcodes).
public enum SendOutcome: Sendable, Equatable {
    /// errcode 0: accepted; `msgid` (exact decimal text) when WeChat returned one.
    case sent(msgid: String?)
    /// 43101: no credit left for this template; not an error worth paging anyone.
    case noCredit
    /// 40001, 40014, 42001: the token is stale; invalidate it if still cached, refetch, retry once.
    case tokenInvalid(errcode: Int64)
    /// WeChat surely did not act: -1, 43108, 45011, or a connection that failed before the request
    /// was sent. `errcode` is the WeChat code as text, or a transport word (`connect_failed`, …).
    case retryable(errcode: String, errmsg: String)
    /// WeChat may have delivered it: a timeout or reset after sending, or HTTP 5xx. Never retried automatically.
    case inDoubt(reason: String)
    /// 45009: the daily quota is used up; all sending pauses until the quota day ends.
    case quotaExhausted
    /// 40037, 41030, 43107, 48001: the template or account setup is wrong; the template pauses.
    case configError(errcode: Int64, errmsg: String)
    /// 40003, 45168, 47003 and any other errcode: this digest cannot be sent as it is.
    case contentError(errcode: Int64, errmsg: String)

    /// errcodes that mean the access token is stale.
    public static let tokenErrcodes: Set<Int64> = [40001, 40014, 42001]
    /// errcodes worth retrying later.
    public static let retryableErrcodes: Set<Int64> = [-1, 43108, 45011]
    /// errcodes that pause a template.
    public static let configErrcodes: Set<Int64> = [40037, 41030, 43107, 48001]

    /// The outcome of a `{"errcode":…,"errmsg":…}` answer.
    public static func classify(errcode: Int64, errmsg: String, msgid: String?) -> SendOutcome {
        switch errcode {
        case 0: return .sent(msgid: msgid)
        case 43101: return .noCredit
        case 45009: return .quotaExhausted
        case _ where tokenErrcodes.contains(errcode): return .tokenInvalid(errcode: errcode)
        case _ where retryableErrcodes.contains(errcode): return .retryable(errcode: String(errcode), errmsg: errmsg)
        case _ where configErrcodes.contains(errcode): return .configError(errcode: errcode, errmsg: errmsg)
        default: return .contentError(errcode: errcode, errmsg: errmsg)
        }
    }
}
