import Synchronization

/// Who is in the app, as far as IM's callbacks say: an in-memory map from IM user to
/// online/offline with the `EventTime` of the last event applied, so late events are ignored.
/// Users never seen are `unknown` (everyone is after a restart). Sharded locks keep concurrent
/// callbacks from contending; an entry is a few dozen bytes, so a million users fit easily.
public final class PresenceMap: Sendable {
    /// What an event did.
    public struct Change: Sendable, Equatable {
        public let previous: PresenceState
        public let current: PresenceState
        /// False when the event was older than the last one applied (ignored).
        public let applied: Bool

        /// Whether the user's presence actually changed.
        public var changed: Bool { applied && previous != current }
    }

    private struct Entry {
        var online: Bool
        /// Milliseconds; `Int64.min` when only a confirmation has been seen.
        var eventTime: Int64
    }

    /// One lock and its part of the map.
    private final class Shard: Sendable {
        let map = Mutex<[String: Entry]>([:])
    }

    private static let shardCount = 64
    private let shards: [Shard]
    /// The observer sits in a class box: a closure kept directly in a `Mutex` is re-abstracted on
    /// every `withLock` (the inout access wraps it in one more thunk each time), so each event made
    /// the next call deeper and slower.
    private final class Observer: Sendable {
        let call: @Sendable (_ user: String, _ online: Bool, _ eventTime: Int64) -> Void
        init(_ call: @escaping @Sendable (_ user: String, _ online: Bool, _ eventTime: Int64) -> Void) { self.call = call }
    }

    private let observer = Mutex<Observer?>(nil)
    private let onlineCount = Atomic<Int>(0)
    private let offlineCount = Atomic<Int>(0)

    public init() {
        shards = (0..<PresenceMap.shardCount).map { _ in Shard() }
    }

    private func shard(_ user: String) -> Shard {
        var h = Hasher()
        h.combine(user)
        return shards[Int(UInt(bitPattern: h.finalize()) % UInt(PresenceMap.shardCount))]
    }

    /// Applies a Login (online) or Logout/Disconnect (offline) with its `EventTime` in ms. An
    /// event older than the last one applied for the user is ignored; an equal one applies.
    @discardableResult
    public func apply(user: String, online: Bool, eventTime: Int64) -> Change {
        let change = applyEvent(user: user, online: online, eventTime: eventTime)
        if change.applied, let observer = observer.withLock({ $0 }) { observer.call(user, online, eventTime) }
        return change
    }

    /// Applies an event another instance received (the same EventTime guard; not passed on again).
    @discardableResult
    public func applyRemote(user: String, online: Bool, eventTime: Int64) -> Change {
        applyEvent(user: user, online: online, eventTime: eventTime)
    }

    /// Calls `observe` with every event `apply` applies (several instances pass them on).
    public func observe(_ observe: @escaping @Sendable (_ user: String, _ online: Bool, _ eventTime: Int64) -> Void) {
        observer.withLock { $0 = Observer(observe) }
    }

    private func applyEvent(user: String, online: Bool, eventTime: Int64) -> Change {
        let change = shard(user).map.withLock { map -> Change in
            if let old = map[user] {
                let previous: PresenceState = old.online ? .online : .offline
                guard eventTime >= old.eventTime else { return Change(previous: previous, current: previous, applied: false) }
                map[user] = Entry(online: online, eventTime: eventTime)
                return Change(previous: previous, current: online ? .online : .offline, applied: true)
            }
            map[user] = Entry(online: online, eventTime: eventTime)
            return Change(previous: .unknown, current: online ? .online : .offline, applied: true)
        }
        count(change)
        return change
    }

    /// Records what `query_online_status` said, without moving the EventTime guard.
    @discardableResult
    public func confirm(user: String, online: Bool) -> Change {
        let change = shard(user).map.withLock { map -> Change in
            if let old = map[user] {
                map[user]!.online = online
                return Change(previous: old.online ? .online : .offline, current: online ? .online : .offline, applied: true)
            }
            map[user] = Entry(online: online, eventTime: Int64.min)
            return Change(previous: .unknown, current: online ? .online : .offline, applied: true)
        }
        count(change)
        return change
    }

    /// The user's presence now.
    public func state(of user: String) -> PresenceState {
        shard(user).map.withLock { map in
            guard let e = map[user] else { return .unknown }
            return e.online ? .online : .offline
        }
    }

    /// Users currently known online and offline (for `roundup_presence_users`).
    public var counts: (online: Int, offline: Int) {
        (onlineCount.load(ordering: .relaxed), offlineCount.load(ordering: .relaxed))
    }

    private func count(_ change: Change) {
        guard change.applied, change.previous != change.current else { return }
        switch change.previous {
        case .online: onlineCount.subtract(1, ordering: .relaxed)
        case .offline: offlineCount.subtract(1, ordering: .relaxed)
        case .unknown: break
        }
        switch change.current {
        case .online: onlineCount.add(1, ordering: .relaxed)
        case .offline: offlineCount.add(1, ordering: .relaxed)
        case .unknown: break
        }
    }
}
