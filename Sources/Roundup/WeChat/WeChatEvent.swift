import Foundation

/// A verified message push, reduced to what Roundup acts on: the three subscribe-message events
/// and everything else by name.
public enum WeChatEvent: Sendable, Equatable {
    /// `subscribe_msg_popup_event`: the user answered `wx.requestSubscribeMessage`.
    case subscribePopup(SubscriptionEvent)
    /// `subscribe_msg_change_event`: the user managed subscriptions (currently only rejections).
    case subscribeChange(SubscriptionEvent)
    /// `subscribe_msg_sent_event`: the final, asynchronous result of a send.
    case subscribeSent(SentEvent)
    /// Any other push (a message, `debug_demo`, an unknown event); answered and ignored.
    case other(event: String?, msgType: String?)

    /// Wire names of the events handled here.
    public static let popupEventName = "subscribe_msg_popup_event"
    public static let changeEventName = "subscribe_msg_change_event"
    public static let sentEventName = "subscribe_msg_sent_event"

    /// The `Event` field as sent.
    public var eventName: String? {
        switch self {
        case .subscribePopup: return Self.popupEventName
        case .subscribeChange: return Self.changeEventName
        case .subscribeSent: return Self.sentEventName
        case .other(let event, _): return event
        }
    }

    /// The idempotency key of one item: FromUserName|CreateTime|Event|template. WeChat re-sends a
    /// push it got no answer to within 5 s, and the same key must be applied once. Nil for events
    /// Roundup does not apply.
    public func eventKey(templateID: String) -> String? {
        switch self {
        case .subscribePopup(let e), .subscribeChange(let e):
            return "\(e.openid)|\(e.createTime)|\(eventName ?? "")|\(templateID)"
        case .subscribeSent(let e):
            return "\(e.openid)|\(e.createTime)|\(Self.sentEventName)|\(templateID)"
        case .other:
            return nil
        }
    }
}

/// A popup or change event: one user's answer for one or more templates.
public struct SubscriptionEvent: Sendable, Equatable {
    /// The mini program's original ID (`ToUserName`, `gh_…`).
    public var toUser: String
    /// The user's openid (`FromUserName`).
    public var openid: String
    /// Unix seconds, as WeChat stamped the event.
    public var createTime: Int64
    public var items: [Item]

    /// One template's answer.
    public struct Item: Sendable, Equatable {
        public var templateID: String
        /// `SubscribeStatusString`: `accept`, `reject`, perhaps `ban`/`filter`/`acceptWith…`.
        public var status: String

        public init(templateID: String, status: String) {
            self.templateID = templateID
            self.status = status
        }

        /// Any status starting with `accept` grants; anything else does not.
        public var isAccept: Bool { status.hasPrefix("accept") }
    }

    public init(toUser: String, openid: String, createTime: Int64, items: [Item]) {
        self.toUser = toUser
        self.openid = openid
        self.createTime = createTime
        self.items = items
    }
}

/// A sent event: the delivery result of earlier sends, keyed by MsgID.
public struct SentEvent: Sendable, Equatable {
    public var toUser: String
    public var openid: String
    public var createTime: Int64
    public var items: [Item]

    /// One message's result.
    public struct Item: Sendable, Equatable {
        public var templateID: String
        /// `MsgID` as exact decimal text; it exceeds 2^53.
        public var msgID: String
        /// `ErrorCode`: 0 is success; failure values are undocumented.
        public var errorCode: Int64
        /// `ErrorStatus`: `success`, or undocumented failure text.
        public var errorStatus: String?

        public init(templateID: String, msgID: String, errorCode: Int64, errorStatus: String?) {
            self.templateID = templateID
            self.msgID = msgID
            self.errorCode = errorCode
            self.errorStatus = errorStatus
        }
    }

    public init(toUser: String, openid: String, createTime: Int64, items: [Item]) {
        self.toUser = toUser
        self.openid = openid
        self.createTime = createTime
        self.items = items
    }
}

extension WeChatEvent {
    /// Reads an event from a parsed push document, leniently: `List` as an object or an array, at
    /// the top level or under the event's wrapper; numbers as strings or numbers.
    static func decode(_ document: PushValue) throws(WeChatPushError) -> WeChatEvent {
        let msgType = document["MsgType"]?.text
        let event = document["Event"]?.text
        guard msgType == "event", let event else { return .other(event: event, msgType: msgType) }
        switch event {
        case popupEventName:
            return .subscribePopup(try subscription(document, wrapper: "SubscribeMsgPopupEvent"))
        case changeEventName:
            return .subscribeChange(try subscription(document, wrapper: "SubscribeMsgChangeEvent"))
        case sentEventName:
            let (toUser, openid, createTime) = try common(document)
            var items: [SentEvent.Item] = []
            for item in try listItems(document, wrapper: "SubscribeMsgSentEvent") {
                guard let msgID = item["MsgID"]?.text.flatMap(decimalText) else {
                    throw .malformed("a sent-event item has no valid MsgID")
                }
                guard let errorCode = item["ErrorCode"]?.text.flatMap(int64) else {
                    throw .malformed("a sent-event item has no valid ErrorCode")
                }
                items.append(
                    .init(templateID: try templateID(item), msgID: msgID, errorCode: errorCode, errorStatus: item["ErrorStatus"]?.text))
            }
            return .subscribeSent(SentEvent(toUser: toUser, openid: openid, createTime: createTime, items: items))
        default:
            return .other(event: event, msgType: msgType)
        }
    }

    private static func subscription(_ document: PushValue, wrapper: String) throws(WeChatPushError) -> SubscriptionEvent {
        let (toUser, openid, createTime) = try common(document)
        var items: [SubscriptionEvent.Item] = []
        for item in try listItems(document, wrapper: wrapper) {
            guard let status = item["SubscribeStatusString"]?.text, !status.isEmpty else {
                throw .malformed("a subscription item has no SubscribeStatusString")
            }
            items.append(.init(templateID: try templateID(item), status: status))
        }
        return SubscriptionEvent(toUser: toUser, openid: openid, createTime: createTime, items: items)
    }

    /// ToUserName, FromUserName and CreateTime (a string in the doc examples, a number in real pushes).
    private static func common(_ document: PushValue) throws(WeChatPushError) -> (String, String, Int64) {
        guard let openid = document["FromUserName"]?.text, !openid.isEmpty else { throw .malformed("FromUserName is missing") }
        guard let createTime = document["CreateTime"]?.text.flatMap(int64) else { throw .malformed("CreateTime is missing or not an integer") }
        return (document["ToUserName"]?.text ?? "", openid, createTime)
    }

    private static func templateID(_ item: PushValue) throws(WeChatPushError) -> String {
        guard let id = item["TemplateId"]?.text, !id.isEmpty else { throw .malformed("an item has no TemplateId") }
        return id
    }

    /// The items of `List`: top-level first (JSON has no wrapper), else under the
    /// wrapper element (XML, and the older wrapped JSON). Objects and arrays are both normalised.
    private static func listItems(_ document: PushValue, wrapper: String) throws(WeChatPushError) -> [PushValue] {
        var lists = document.values("List")
        if lists.isEmpty, let wrapped = document[wrapper] {
            switch wrapped {
            case .object: lists = wrapped.values("List")
            case .array: lists = [wrapped]
            default: break
            }
        }
        var items: [PushValue] = []
        for list in lists {
            switch list {
            case .object: items.append(list)
            case .array(let elements):
                for element in elements {
                    guard case .object = element else { throw .malformed("a List entry is not an object") }
                    items.append(element)
                }
            default: throw .malformed("List is neither an object nor an array")
            }
        }
        guard !items.isEmpty else { throw .malformed("the event has no List items") }
        return items
    }

    /// A decimal integer written as a JSON string or number, surrounding blanks allowed.
    static func int64(_ text: String) -> Int64? {
        Int64(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// A non-negative decimal integer kept as text (MsgID never becomes a Double).
    static func decimalText(_ text: String) -> String? {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty, trimmed.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return trimmed
    }
}
