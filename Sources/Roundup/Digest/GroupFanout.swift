import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Delivers stored group messages to their members after the callback was answered:
/// members come from IM's `get_group_member_info` (cached for `im.group_members_ttl`); the sender
/// and members whose `MsgFlag` is not `AcceptAndNotify` are skipped; `digest.group_messages`
/// decides who gets a digest opened (`mentions`: only the @-mentioned, or everyone on @all;
/// others only join a digest already pending). Pending rows survive restarts and are retried.
public final class GroupFanout: Service, Sendable {
    let store: RoundupStore
    let presence: PresenceMap
    let config: LiveConfig
    let clock: any WallClock
    let api: (any IMRestAPI)?
    let metrics: RoundupMetrics?
    let logger: Logger
    /// How long to wait before retrying after IM failed.
    let retryInterval: Duration

    private let cache = Mutex<[String: (fetchedAt: Date, members: [IMGroupMember])]>([:])
    private let bell = WakeSignal()

    public init(store: RoundupStore, presence: PresenceMap, config: LiveConfig, clock: any WallClock, api: (any IMRestAPI)?,
                metrics: RoundupMetrics? = nil, logger: Logger, retryInterval: Duration = .seconds(30)) {
        self.metrics = metrics
        self.store = store
        self.presence = presence
        self.config = config
        self.clock = clock
        self.api = api
        self.logger = logger
        self.retryInterval = retryInterval
    }

    /// Wakes the service: a group message was stored.
    public func signal() { bell.signal() }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                let pendingLeft = await self.processPending()
                // Sleep until the next group message, or retry after a while when IM failed.
                await self.bell.wait(timeout: pendingLeft ? self.retryInterval : .seconds(3600))
            }
        }
    }

    /// Fans out every pending group message; returns true when some are left for a retry.
    @discardableResult
    public func processPending() async -> Bool {
        while true {
            let batch: [PendingGroupMessage]
            do {
                batch = try await store.pendingGroupMessages(limit: 50)
            } catch {
                logger.error("cannot read pending group messages", metadata: ["error": "\(error)"])
                return true
            }
            guard !batch.isEmpty else { return false }
            for message in batch {
                guard await fanOut(message) else { return true }
            }
        }
    }

    /// One group message to all its members; false when IM could not be asked (retry later).
    func fanOut(_ g: PendingGroupMessage) async -> Bool {
        let cfg = config.snapshot
        let now = clock.timestamp
        guard let members = await members(of: g.groupID, ttl: cfg.im.groupMembersTTL) else { return false }
        let presence = self.presence
        let senderCard = members.first { $0.account == g.sender }?.nameCard
        do {
            let lifecycle = DigestLifecycle(config: cfg, now: now)
            let delivered = try await store.write { tx -> Int in
                // Another instance may be fanning out the same row: the lock makes this one wait
                // for it, then see the row done and skip it, so each group message is fanned out once.
                guard try tx.lockPendingFanout(g.id) else { return 0 }
                var count = 0
                for member in members where member.account != g.sender && (member.msgFlag ?? "AcceptAndNotify") == "AcceptAndNotify" {
                    let user = try tx.user(member.account)
                    let policy = cfg.digest.policy(forProfile: user?.profile)
                    if policy.groupMessages == .none || policy.ignoreSenders.contains(g.sender) { continue }
                    let notify = policy.groupMessages == .all || g.atAll || g.mentions.contains(member.account)
                    let online = presence.state(of: member.account) == .online
                    if !notify {
                        guard !online, try tx.activeDigest(for: member.account) != nil else { continue }
                    }
                    let urgent = g.urgent || policy.urgentSenders.contains(g.sender)
                    let message = NewMessage(msgKey: "", recipient: member.account, sender: g.sender, msgTime: g.msgTime,
                                             receivedAt: now, summary: g.summary, urgent: urgent)
                    guard let id = try tx.insertMessage(message, senderNameCard: senderCard, groupMessageID: g.id) else { continue }
                    count += 1
                    if online { continue }
                    try lifecycle.join(tx, user: member.account, messages: [id], from: g.sender, windowStart: now, urgent: urgent,
                                       policy: policy,
                                       why: "group message from \(g.sender) in \(g.groupID)\(notify && !g.atAll && policy.groupMessages != .all ? " (mention)" : "") added")
                }
                try tx.finishFanout(g.id, state: "done", at: now)
                return count
            }
            logger.debug("group message fanned out", metadata: ["GroupId": "\(g.groupID)", "MsgSeq": "\(g.msgSeq)", "members": "\(delivered)"])
            return true
        } catch {
            metrics?.storeError(.fanout)
            logger.error("group fan-out failed", metadata: ["GroupId": "\(g.groupID)", "MsgSeq": "\(g.msgSeq)", "error": "\(error)"])
            return false
        }
    }

    /// The group's members, from the cache when fresh enough.
    private func members(of groupID: String, ttl: ConfigDuration) async -> [IMGroupMember]? {
        let now = clock.now
        if let cached = cache.withLock({ $0[groupID] }), now.timeIntervalSince(cached.fetchedAt) < ttl.seconds {
            return cached.members
        }
        guard let api else {
            logger.warning("group messages wait: the IM REST API is not configured (im.sdk_app_id, im.secret_key)")
            return nil
        }
        do {
            let members = try await api.groupMembers(groupID: groupID)
            cache.withLock { $0[groupID] = (now, members) }
            return members
        } catch {
            logger.warning("cannot list group members; will retry", metadata: ["GroupId": "\(groupID)", "error": "\(error)"])
            return nil
        }
    }
}
