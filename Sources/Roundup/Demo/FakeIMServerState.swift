import Foundation

/// The programmable state of `FakeIMServer`: users' online status, groups and their members, what
/// to fail with, and counters of what it was asked. The demo, the benchmark and the tests drive it.
public actor FakeIMState {
    /// What `query_online_status` reports for a user.
    public enum UserStatus: Sendable, Equatable {
        case online
        case pushOnline
        case offline
        /// Listed in `ErrorList` with 70107, as IM does for accounts never imported.
        case notImported
    }

    /// A way to fail the next request(s) instead of answering.
    public enum Failure: Sendable, Equatable {
        /// HTTP 200 with `ActionStatus: FAIL` and this `ErrorCode` (e.g. 60007 rate limited, 70001).
        case errorCode(Int, info: String = "scripted failure")
        /// This HTTP status with a plain-text body (e.g. 500, 502).
        case httpStatus(Int)
        /// Wait this long, then answer normally (to outlast a client's deadline).
        case delay(Duration)
    }

    /// A group as the fake stores it.
    public struct Group: Sendable, Equatable {
        /// `Private`, `Public`, `ChatRoom`, `AVChatRoom` or `Community` (which pages with `Next`).
        public var type: String
        public var members: [IMGroupMember]

        public init(type: String = "Public", members: [IMGroupMember]) {
            self.type = type
            self.members = members
        }
    }

    private var statuses: [String: UserStatus] = [:]
    private var groups: [String: Group] = [:]
    private var queuedFailures: [Failure] = []

    /// The status of users never given one; IM reports imported-but-absent users as `Offline`.
    public var defaultStatus: UserStatus = .offline
    /// Answer each user's state under the older key `State` instead of `Status`.
    public var legacyStateKey = false
    /// Applied to every request while set (after any queued failures).
    public var persistentFailure: Failure?
    /// Added to every answer (for the benchmark and timeout tests).
    public var latency: Duration = .zero

    /// Every request that reached an endpoint, whatever the answer.
    public private(set) var requests = 0
    /// `query_online_status` calls that passed authentication.
    public private(set) var onlineStatusCalls = 0
    /// `get_group_member_info` calls that passed authentication.
    public private(set) var groupMemberCalls = 0
    /// The largest `To_Account` list seen in one `query_online_status` call.
    public private(set) var largestOnlineBatch = 0
    /// The size of each `To_Account` list, in order.
    public private(set) var onlineBatchSizes: [Int] = []
    /// Requests refused because the UserSig, sdkappid or identifier was wrong.
    public private(set) var authenticationFailures = 0
    /// Distinct UserSigs presented (a client that caches its UserSig presents one).
    public private(set) var userSigsSeen: Set<String> = []

    public init() {}

    /// Sets the status `query_online_status` reports for these users.
    public func setStatus(_ status: UserStatus, for users: [String]) {
        for user in users { statuses[user] = status }
    }

    /// The status reported for a user now.
    public func status(of user: String) -> UserStatus { statuses[user] ?? defaultStatus }

    /// Creates or replaces a group.
    public func setGroup(_ groupID: String, type: String = "Public", members: [IMGroupMember]) {
        groups[groupID] = Group(type: type, members: members)
    }

    /// Removes a group (later lookups answer 10010, group missing).
    public func removeGroup(_ groupID: String) { groups[groupID] = nil }

    /// The stored group, if any.
    public func group(_ groupID: String) -> Group? { groups[groupID] }

    /// Fails the next `times` requests with `failure`.
    public func failNext(_ failure: Failure, times: Int = 1) {
        queuedFailures.append(contentsOf: repeatElement(failure, count: times))
    }

    /// Fails every request with `failure` until called with nil.
    public func failAlways(_ failure: Failure?) { persistentFailure = failure }

    /// Sets the status of users never given one.
    public func setDefaultStatus(_ status: UserStatus) { defaultStatus = status }

    /// Chooses `State` (older docs) or `Status` as the per-user key.
    public func useLegacyStateKey(_ legacy: Bool) { legacyStateKey = legacy }

    /// Sets the latency added to every answer.
    public func setLatency(_ latency: Duration) { self.latency = latency }

    /// A `query_online_status` call that asks about any of these users hangs this long first.
    public private(set) var onlineStatusHolds: [String: Duration] = [:]

    /// Makes every `query_online_status` call that includes `user` hang for `duration`.
    public func hold(onlineStatusOf user: String, for duration: Duration) { onlineStatusHolds[user] = duration }

    /// How long a `query_online_status` call for these users should hang.
    func onlineStatusHold(for users: [String]) -> Duration? {
        users.compactMap { onlineStatusHolds[$0] }.max()
    }

    // MARK: Used by the server

    /// Counts a request and returns the failure it should get, if any.
    func arrive() -> Failure? {
        requests += 1
        if !queuedFailures.isEmpty { return queuedFailures.removeFirst() }
        return persistentFailure
    }

    func noteUserSig(_ userSig: String) { userSigsSeen.insert(userSig) }

    func noteAuthenticationFailure() { authenticationFailures += 1 }

    /// Records one authenticated `query_online_status` call and answers each user's status.
    func onlineStatus(of users: [String]) -> [(String, UserStatus)] {
        onlineStatusCalls += 1
        onlineBatchSizes.append(users.count)
        largestOnlineBatch = max(largestOnlineBatch, users.count)
        return users.map { ($0, statuses[$0] ?? defaultStatus) }
    }

    /// Records one authenticated `get_group_member_info` call and answers the group.
    func membersCall(_ groupID: String) -> Group? {
        groupMemberCalls += 1
        return groups[groupID]
    }
}
