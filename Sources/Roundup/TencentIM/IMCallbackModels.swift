import Foundation

/// One element of an IM message body (`MsgBody[]`), reduced to what a summary needs.
public enum IMMessageElement: Sendable, Equatable, Hashable {
    case text(String)
    case image
    case sound
    case video
    case file(name: String?)
    case location(desc: String?)
    case face
    case custom(desc: String?)
    /// A merged-forward message (`TIMRelayElem`).
    case relay(title: String?)
    /// A `MsgType` Roundup does not know (group tips, future types); never a decoding failure.
    case unknown(type: String)
}

/// What a `State.StateChange` callback reports.
public enum IMStateAction: Sendable, Equatable, Hashable {
    case login
    case logout
    case disconnect
    /// An action Roundup ignores (e.g. custom-status changes), kept verbatim.
    case other(String)

    /// The action named by `Info.Action`, compared case-insensitively (IM's docs are inconsistent
    /// about case elsewhere); unknown names become `.other`, kept verbatim.
    public init(_ name: String) {
        switch name.lowercased() {
        case "login": self = .login
        case "logout": self = .logout
        case "disconnect": self = .disconnect
        default: self = .other(name)
        }
    }
}

/// A user's connection state changed (`State.StateChange`).
public struct IMStateChange: Sendable, Equatable {
    public var userID: String
    public var action: IMStateAction
    /// `Register`, `Unregister`, `LinkClose`, `TimeOut`, or nil.
    public var reason: String?
    /// Milliseconds since the epoch; 0 when the body has none.
    public var eventTime: Int64

    public init(userID: String, action: IMStateAction, reason: String? = nil, eventTime: Int64) {
        self.userID = userID
        self.action = action
        self.reason = reason
        self.eventTime = eventTime
    }
}

/// A one-to-one message, before or after IM delivered it.
public struct IMC2CMessage: Sendable, Equatable {
    public var from: String
    public var to: String
    public var msgSeq: Int64?
    public var msgRandom: Int64?
    /// Seconds since the epoch; falls back to `EventTime / 1000`, then 0, when the body has none.
    public var msgTime: Int64
    /// IM's unique message id, Roundup's idempotency key for C2C messages.
    public var msgKey: String
    public var msgID: String?
    /// `OnlineOnlyFlag = 1`: delivered only to online recipients, never digested.
    public var onlineOnly: Bool
    /// 0 = delivered; nil for the before-send callback, which has no result yet.
    public var sendMsgResult: Int64?
    public var elements: [IMMessageElement]
    public var cloudCustomData: String?
    /// Milliseconds; not documented for C2C callbacks, so usually nil.
    public var eventTime: Int64?

    public init(
        from: String, to: String, msgSeq: Int64? = nil, msgRandom: Int64? = nil, msgTime: Int64, msgKey: String,
        msgID: String? = nil, onlineOnly: Bool = false, sendMsgResult: Int64? = nil, elements: [IMMessageElement],
        cloudCustomData: String? = nil, eventTime: Int64? = nil
    ) {
        self.from = from
        self.to = to
        self.msgSeq = msgSeq
        self.msgRandom = msgRandom
        self.msgTime = msgTime
        self.msgKey = msgKey
        self.msgID = msgID
        self.onlineOnly = onlineOnly
        self.sendMsgResult = sendMsgResult
        self.elements = elements
        self.cloudCustomData = cloudCustomData
        self.eventTime = eventTime
    }
}

/// A read receipt: `reportAccount` read the C2C conversation with `peerAccount` up to `lastReadTime`
/// (`C2C.CallbackAfterMsgReport`).
public struct IMReadReport: Sendable, Equatable {
    public var reportAccount: String
    public var peerAccount: String
    /// Seconds since the epoch.
    public var lastReadTime: Int64
    /// Milliseconds, when present.
    public var eventTime: Int64?

    public init(reportAccount: String, peerAccount: String, lastReadTime: Int64, eventTime: Int64? = nil) {
        self.reportAccount = reportAccount
        self.peerAccount = peerAccount
        self.lastReadTime = lastReadTime
        self.eventTime = eventTime
    }
}

/// A recalled C2C message (`C2C.CallbackAfterMsgWithDraw`).
public struct IMWithdrawal: Sendable, Equatable {
    /// The sender; empty when the body does not say.
    public var from: String
    public var to: String
    public var msgKey: String

    public init(from: String, to: String, msgKey: String) {
        self.from = from
        self.to = to
        self.msgKey = msgKey
    }
}

/// A message sent to a group (`Group.CallbackAfterSendMsg`); recipients are not
/// listed, they come from `get_group_member_info`.
public struct IMGroupMessage: Sendable, Equatable {
    public var groupID: String
    /// `Private`, `Public`, `ChatRoom`, `AVChatRoom`, `Community`; empty when absent.
    public var groupType: String
    public var from: String
    public var operatorAccount: String?
    public var random: Int64?
    /// Server-generated, increasing per group: `(groupID, msgSeq)` is the idempotency key.
    public var msgSeq: Int64
    /// Seconds since the epoch; falls back to `EventTime / 1000`, then 0, when the body has none.
    public var msgTime: Int64
    public var onlineOnly: Bool
    public var elements: [IMMessageElement]
    public var cloudCustomData: String?
    public var eventTime: Int64?
    /// `GroupAtAllFlag = 1` in any `GroupAtInfo` entry.
    public var atAll: Bool
    /// The `GroupAt_Account`s of the other entries, in order, without repeats.
    public var mentioned: [String]
    public var topicID: String?

    public init(
        groupID: String, groupType: String, from: String, operatorAccount: String? = nil, random: Int64? = nil,
        msgSeq: Int64, msgTime: Int64, onlineOnly: Bool = false, elements: [IMMessageElement],
        cloudCustomData: String? = nil, eventTime: Int64? = nil, atAll: Bool = false, mentioned: [String] = [],
        topicID: String? = nil
    ) {
        self.groupID = groupID
        self.groupType = groupType
        self.from = from
        self.operatorAccount = operatorAccount
        self.random = random
        self.msgSeq = msgSeq
        self.msgTime = msgTime
        self.onlineOnly = onlineOnly
        self.elements = elements
        self.cloudCustomData = cloudCustomData
        self.eventTime = eventTime
        self.atAll = atAll
        self.mentioned = mentioned
        self.topicID = topicID
    }

    /// AVChatRoom members cannot be listed, so such groups are never fanned out.
    public var isAVChatRoom: Bool { groupType.caseInsensitiveCompare("AVChatRoom") == .orderedSame }
}
