/// A person Roundup knows: an IM account, optionally bound to a WeChat openid (parents) and a
/// display name (everyone shown in a digest), with the digest profile that applies to them.
public struct User: Sendable, Equatable {
    public var imUserID: String
    public var openid: String?
    public var name: String?
    public var profile: String?
    public var createdAt: Timestamp
    public var updatedAt: Timestamp

    public init(
        imUserID: String, openid: String? = nil, name: String? = nil, profile: String? = nil,
        createdAt: Timestamp, updatedAt: Timestamp
    ) {
        self.imUserID = imUserID
        self.openid = openid
        self.name = name
        self.profile = profile
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// One field of a merge update: leave it, set it, or clear it (`PUT /admin/users/{id}`: keys left
/// out stay, `null` clears).
public enum FieldUpdate<Value: Sendable & Equatable>: Sendable, Equatable {
    case keep
    case set(Value)
    case clear

    /// The new value given the old one.
    public func applied(to old: Value?) -> Value? {
        switch self {
        case .keep: return old
        case .set(let v): return v
        case .clear: return nil
        }
    }
}

/// A merge update of a user's binding.
public struct UserUpdate: Sendable, Equatable {
    public var openid: FieldUpdate<String>
    public var name: FieldUpdate<String>
    public var profile: FieldUpdate<String>

    public init(openid: FieldUpdate<String> = .keep, name: FieldUpdate<String> = .keep, profile: FieldUpdate<String> = .keep) {
        self.openid = openid
        self.name = name
        self.profile = profile
    }
}

/// What a user may send with one template: a count of one-time credits, or a long-term
/// subscription. Credits belong to an openid, bound or not.
public struct Credit: Sendable, Equatable {
    public var openid: String
    public var templateID: String
    public var count: Int
    public var subscribed: Bool
    public var updatedAt: Timestamp

    public init(openid: String, templateID: String, count: Int, subscribed: Bool, updatedAt: Timestamp) {
        self.openid = openid
        self.templateID = templateID
        self.count = count
        self.subscribed = subscribed
        self.updatedAt = updatedAt
    }
}
