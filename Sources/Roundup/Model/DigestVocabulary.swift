/// Where a stored message is in its life. Raw values are the spellings stored in the database.
public enum MessageStatus: String, Sendable, CaseIterable, Codable, Hashable {
    /// Waiting: joined to an open or held digest, or unjoined while its recipient is online.
    case pending
    /// Part of a digest that was sent (or rendered in dry-run mode).
    case delivered
    /// The recipient came online before the digest was sent: seen in the app, nothing sent.
    case seen
    /// A read report covered it.
    case read
    /// Its sender recalled it; its text is erased at once.
    case recalled
    /// Older than `digest.retention` while still pending.
    case expired
    /// Left without a notification: unjoined and older than `offline_lookback` when the user
    /// went offline, or in a digest an operator cancelled.
    case dropped
}

/// The kinds of line in a digest's decision log (`roundup show`).
public enum DigestEventKind: String, Sendable, CaseIterable, Codable, Hashable {
    case opened
    /// A message joined or left the digest.
    case message
    /// A state change (every compare-and-set that succeeded).
    case state
    /// The due time moved (quiet hours, `min_interval`, a config or profile change).
    case retimed
    /// Presence confirmed before sending.
    case presence
    /// A WeChat answer that did not end the digest (43101 with another template to try).
    case wechat
    /// An operator's flush.
    case flush
    /// WeChat's `subscribe_msg_sent_event` for the message this digest sent.
    case delivery
}

/// A pause of sending kept in the database: the daily quota (errcode 45009) stops every send
/// until the next quota day; a configuration error stops one template until the config changes.
public enum SendPauseKey: Sendable, Hashable {
    case quota
    case template(String)

    /// The key as stored.
    public var rawValue: String {
        switch self {
        case .quota: return "quota"
        case .template(let id): return "template:\(id)"
        }
    }

    /// Parses a stored key; nil for one this version does not know.
    public init?(rawValue: String) {
        if rawValue == "quota" {
            self = .quota
        } else if rawValue.hasPrefix("template:") {
            self = .template(String(rawValue.dropFirst("template:".count)))
        } else {
            return nil
        }
    }
}

/// The sending pauses in force: each key with its end (nil: until the config changes).
public struct SendPauses: Sendable, Equatable {
    public var entries: [SendPauseKey: Timestamp?]

    public init(_ entries: [SendPauseKey: Timestamp?] = [:]) { self.entries = entries }

    /// Whether the daily quota pause holds every send back.
    public var quota: Bool { entries.keys.contains(.quota) }

    /// Whether sending with this template is paused by a configuration error.
    public func isPaused(template id: String) -> Bool { entries.keys.contains(.template(id)) }

    /// Whether any pause with this key is in force.
    public func contains(_ key: SendPauseKey) -> Bool { entries.keys.contains(key) }
}
