/// The IM REST calls the digest engine makes; a protocol because the real thing is remote (the
/// seam for fakes in tests). Implemented over HTTP by `IMRestClient`.
public protocol IMRestAPI: Sendable {
    /// Online status of each user (`v4/openim/query_online_status`), batched by
    /// 500. Users IM says nothing about are absent from the result.
    func queryOnlineStatus(_ users: [String]) async throws(IMRestError) -> [String: IMOnlineStatus]
    /// Every member of a group (`v4/group_open_http_svc/get_group_member_info`),
    /// paging by 100 with `Offset`, or with the `Next` cursor for Community groups.
    func groupMembers(groupID: String) async throws(IMRestError) -> [IMGroupMember]
}

/// One user's state in `query_online_status`.
public enum IMOnlineStatus: Sendable, Equatable, Hashable {
    /// A live connection: the user is in the app.
    case online
    /// The app was killed or lost its connection; offline push still reaches it.
    case pushOnline
    case offline
    /// Listed in `ErrorList` with this code (70107: not imported); counts as offline.
    case error(code: Int)

    /// The status named by `Status`/`State`, case-insensitively; unrecognised names count as offline.
    public init(name: String) {
        switch name.lowercased() {
        case "online": self = .online
        case "pushonline": self = .pushOnline
        default: self = .offline
        }
    }
}

/// One member of a group, with what fan-out needs.
public struct IMGroupMember: Sendable, Equatable, Hashable {
    public var account: String
    /// `AcceptAndNotify`, `AcceptNotNotify`, … ; only `AcceptAndNotify` members are notified.
    public var msgFlag: String?
    /// The member's group nickname; nil when empty.
    public var nameCard: String?
    /// `Owner`, `Admin`, `Member`, trimmed (IM's examples carry stray spaces).
    public var role: String?

    public init(account: String, msgFlag: String? = nil, nameCard: String? = nil, role: String? = nil) {
        self.account = account
        self.msgFlag = msgFlag
        self.nameCard = nameCard
        self.role = role
    }
}

/// Why an IM REST call failed.
public enum IMRestError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No HTTP answer: connection, timeout, TLS.
    case transport(String)
    /// An HTTP status other than 200 (IM answers 200 unless the network failed).
    case http(status: Int)
    /// IM answered `ErrorCode ≠ 0` (e.g. 70009 bad UserSig, 90011 too many accounts).
    case api(code: Int, info: String)
    /// The answer was not the JSON we expected.
    case decoding(String)

    public var description: String {
        switch self {
        case .transport(let why): return "IM REST call failed before an answer: \(why)"
        case .http(let status): return "IM REST call answered HTTP \(status)"
        case .api(let code, let info): return "IM REST call failed with ErrorCode \(code): \(info)"
        case .decoding(let why): return "IM REST answer could not be read: \(why)"
        }
    }
}
