/// The values the store hands out and takes in, the same for every engine.

/// A change to one (openid, template) credit row.
public enum CreditChange: Sendable, Equatable {
    /// One-time accepts or an admin grant: add to the count.
    case add(Int)
    /// Long-term accept: subscribed from now on.
    case subscribe
    /// A reject, or a 43101: count 0 and unsubscribed.
    case revoke
    /// A one-time credit spent on a sent digest.
    case spend
}

/// The facts of one digest that every view shows (the "digest object" of docs/cli.md).
public struct DigestSummary: Sendable, Equatable {
    public var id: Int64
    public var imUserID: String
    public var name: String?
    public var openidBound: Bool
    public var state: DigestState
    public var reason: DigestReason?
    public var messages: Int
    /// Display names of the senders (bound name, else group NameCard, else IM id), first-appearance order.
    public var senders: [String]
    public var firstAt: Timestamp?
    public var dueAt: Timestamp?
    public var templateID: String?
    public var errcode: String?
    public var errmsg: String?
    public var msgid: String?
    public var heldSince: Timestamp?
    public var openedAt: Timestamp
    public var finishedAt: Timestamp?
}

/// A digest as stored, for the engine and the operator's views.
public struct DigestRow: Sendable, Equatable {
    public var id: Int64
    public var imUserID: String
    public var state: DigestState
    public var reason: DigestReason?
    public var openedAt: Timestamp
    public var windowStartAt: Timestamp
    public var dueAt: Timestamp?
    public var updatedAt: Timestamp
}

/// A digest whose due time has come, with what the send path needs about its user.
public struct DueDigest: Sendable, Equatable {
    public var id: Int64
    public var imUserID: String
    public var openid: String?
    public var name: String?
    public var profile: String?
    public var state: DigestState
    public var reason: DigestReason?
    public var dueAt: Timestamp?
    public var attempts: Int
    public var flushForce: Bool
    /// An operator's flush is pending (it skips `min_interval`).
    public var flushed: Bool = false
    /// An urgent message is in the digest (it skips `min_interval`).
    public var urgent: Bool = false
}

/// A pending message of a digest as the renderer needs it.
public struct DigestMessageRow: Sendable, Equatable {
    public var id: Int64
    public var sender: String
    public var senderName: String?
    public var senderNameCard: String?
    public var msgTime: Int64
    public var summary: String
}

/// What re-timing an open digest needs (after a config change or a profile change).
public struct OpenDigestTiming: Sendable, Equatable {
    public var id: Int64
    public var imUserID: String
    public var profile: String?
    public var windowStartAt: Timestamp
    public var lastMessageAt: Timestamp?
    public var dueAt: Timestamp
    public var urgent: Bool
    public var pendingCount: Int
    public var flushRequested: Int
}

/// A one-to-one message to keep for its recipient.
public struct NewMessage: Sendable, Equatable {
    public var msgKey: String
    public var recipient: String
    public var sender: String
    /// IM `MsgTime`, seconds: shown in renders and used for ordering only.
    public var msgTime: Int64
    /// Roundup's receipt time: windows, retention and lookback use this.
    public var receivedAt: Timestamp
    /// The one-line summary; erased after `storage.text_retention`.
    public var summary: String
    public var urgent: Bool

    public init(msgKey: String, recipient: String, sender: String, msgTime: Int64, receivedAt: Timestamp, summary: String, urgent: Bool = false) {
        self.msgKey = msgKey
        self.recipient = recipient
        self.sender = sender
        self.msgTime = msgTime
        self.receivedAt = receivedAt
        self.summary = summary
        self.urgent = urgent
    }
}

/// What an operator's flush of one user's digest found (`roundup flush`,
/// `POST /admin/digests/{id}/flush`).
public enum FlushOutcome: Sendable, Equatable {
    /// The open digest is due now; its summary after the change.
    case flushed(DigestSummary)
    /// The user's digest is held: a flush never skips binding or credit.
    case held(DigestSummary)
    /// The user has no open or held digest.
    case noDigest
}

/// The timing facts of a digest that `roundup explain` reasons from.
public struct DigestTimingFacts: Sendable, Equatable {
    public var windowStartAt: Timestamp
    public var lastMessageAt: Timestamp?
    public var urgent: Bool
    /// 0 none, 1 flushed, 2 flushed with `--force` (quiet hours skipped too).
    public var flushRequested: Int
    /// WeChat calls made for this digest so far (backoff retries count).
    public var attempts: Int
    public var sendingAt: Timestamp?
    public var updatedAt: Timestamp
}

/// Whole-service counts for `roundup stats`.
public struct OperatorStats: Sendable, Equatable {
    /// Digests per state; every state is present.
    public var digestsByState: [DigestState: Int]
    /// Held digests per hold reason; every hold reason is present.
    public var heldByReason: [DigestReason: Int]
    /// Message rows ever stored: C2C messages plus per-member copies of group messages.
    public var messagesStored: Int
    public var c2cMessages: Int
    public var groupCopies: Int
    /// Messages still waiting (joined to a digest or kept unjoined while the user is online).
    public var pendingMessages: Int
    /// Sum of one-time credit counts.
    public var creditsOutstanding: Int
    /// One-time credits per template id.
    public var creditsByTemplate: [String: Int]
    /// Long-term subscriptions in force.
    public var subscriptions: Int

    /// Digests that produced a subscribe message (`sent`, and `dry_run` which was rendered).
    public var digestsSent: Int { digestsByState[.sent, default: 0] + digestsByState[.dryRun, default: 0] }
    /// Messages that did not need a send of their own (ingested − digests sent, dry_run included).
    public var sendsSaved: Int { messagesStored - digestsSent }
}

/// A stored message as the operator's views and the tests see it (no text).
public struct StoredMessage: Sendable, Equatable {
    public var id: Int64
    public var msgKey: String?
    public var groupMessageID: Int64?
    public var recipient: String
    public var sender: String
    public var msgTime: Int64
    public var receivedAt: Timestamp
    public var status: String
    public var digestID: Int64?
    public var urgent: Bool
    public var hasText: Bool
}

/// Counts that describe the state of the whole service, for metrics and `roundup stats`.
public struct StatusSnapshot: Sendable, Equatable {
    public var pendingMessages: Int
    public var openDigests: Int
    public var held: [String: Int]
    /// How long the most overdue open digest has been due (0 when none is overdue).
    public var oldestOverdueSeconds: Double
    public var creditsByTemplate: [String: Int]
}

/// One row of a roster import: the whole binding of one user (empty values clear).
public struct RosterEntry: Sendable, Equatable {
    public var imUserID: String
    public var openid: String?
    public var name: String?
    public var profile: String?

    public init(imUserID: String, openid: String?, name: String?, profile: String?) {
        self.imUserID = imUserID
        self.openid = openid
        self.name = name
        self.profile = profile
    }
}

/// The outcome of a roster import.
public struct RosterImportResult: Sendable, Equatable {
    public var created: Int
    public var updated: Int
    public var unchanged: Int
}

/// One `subscribe_msg_sent_event` item: WeChat's final word on a message it accepted.
public struct SentEventRecord: Sendable, Equatable {
    public var msgID: String
    public var openid: String
    public var templateID: String
    public var errorCode: Int64
    public var errorStatus: String?
    /// `CreateTime`, Unix seconds.
    public var createTime: Int64

    public init(msgID: String, openid: String, templateID: String, errorCode: Int64, errorStatus: String?, createTime: Int64) {
        self.msgID = msgID
        self.openid = openid
        self.templateID = templateID
        self.errorCode = errorCode
        self.errorStatus = errorStatus
        self.createTime = createTime
    }
}

/// The open, joinable digest of a user with what the due-time policy needs to know.
public struct ActiveDigest: Sendable, Equatable {
    public var id: Int64
    public var state: DigestState
    public var reason: DigestReason?
    public var windowStartAt: Timestamp
    public var lastMessageAt: Timestamp?
    public var dueAt: Timestamp?
    public var urgent: Bool
    public var pendingCount: Int
    /// An operator's flush is pending (1, or 2 with `--force`): the due time stays "now".
    public var flushRequested: Int = 0
}

/// A pending message as the ingest logic sees it.
public struct PendingMessageRef: Sendable, Equatable {
    public var id: Int64
    public var recipient: String
    public var digestID: Int64?
    public var receivedAt: Timestamp
    public var status: MessageStatus
}

/// A group message to store as one row before the callback is answered.
public struct NewGroupMessage: Sendable, Equatable {
    public var groupID: String
    public var msgSeq: Int64
    public var groupType: String
    public var sender: String
    public var msgTime: Int64
    public var receivedAt: Timestamp
    public var summary: String
    public var atAll: Bool
    public var mentions: [String]
    public var urgent: Bool

    public init(
        groupID: String, msgSeq: Int64, groupType: String, sender: String, msgTime: Int64, receivedAt: Timestamp,
        summary: String, atAll: Bool, mentions: [String], urgent: Bool
    ) {
        self.groupID = groupID
        self.msgSeq = msgSeq
        self.groupType = groupType
        self.sender = sender
        self.msgTime = msgTime
        self.receivedAt = receivedAt
        self.summary = summary
        self.atAll = atAll
        self.mentions = mentions
        self.urgent = urgent
    }
}

/// A group message waiting for its fan-out to members.
public struct PendingGroupMessage: Sendable, Equatable {
    public var id: Int64
    public var groupID: String
    public var msgSeq: Int64
    public var sender: String
    public var msgTime: Int64
    public var receivedAt: Timestamp
    public var summary: String
    public var atAll: Bool
    public var mentions: [String]
    public var urgent: Bool
}

/// A digest with the instance that claimed it (PostgreSQL): who holds, sends or sent it.
public struct ClaimedDigest: Sendable, Equatable {
    public var id: Int64
    public var imUserID: String
    public var state: DigestState
    /// The claiming instance's id, as `roundup instances` lists it.
    public var instanceID: String
}

/// A live `roundup serve` sharing a PostgreSQL database (`roundup instances`).
public struct InstanceRow: Sendable, Equatable {
    public var id: String
    public var host: String
    public var pid: Int
    public var version: String
    /// A short hash of the instance's effective `digest` config: instances that disagree show it.
    public var configFingerprint: String
    public var heartbeatAgeSeconds: Double
    public var startedAt: Timestamp
}
