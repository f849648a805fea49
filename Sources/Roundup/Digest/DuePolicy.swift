import Foundation

/// When a digest is due: a pure function of what is known about the digest, the
/// user's policy and the time zone. Due times are absolute instants, so a digest that came due
/// while Roundup was down is due at start.
public enum DuePolicy {
    /// What the due time depends on.
    public struct Facts: Sendable, Equatable {
        /// Receipt of the first message, or when the user went offline (lookback joins).
        public var windowStart: Timestamp
        /// Receipt of the newest message.
        public var lastMessageAt: Timestamp
        /// Messages still pending in the digest.
        public var pendingCount: Int
        /// An urgent message is in the digest (skips the window and `min_interval`).
        public var urgent: Bool
        /// Since when the digest is due early (urgent or `max_messages` reached), if it is.
        public var earlySince: Timestamp?
        /// The user's last `sent` or `dry_run` digest, for `min_interval`.
        public var lastSentAt: Timestamp?
        /// An operator's flush: when, and whether it also skips quiet hours.
        public var flush: Flush?

        public init(
            windowStart: Timestamp, lastMessageAt: Timestamp, pendingCount: Int, urgent: Bool = false,
            earlySince: Timestamp? = nil, lastSentAt: Timestamp? = nil, flush: Flush? = nil
        ) {
            self.windowStart = windowStart
            self.lastMessageAt = lastMessageAt
            self.pendingCount = pendingCount
            self.urgent = urgent
            self.earlySince = earlySince
            self.lastSentAt = lastSentAt
            self.flush = flush
        }
    }

    /// `roundup flush` / `POST /admin/digests/{id}/flush`.
    public struct Flush: Sendable, Equatable {
        public var at: Timestamp
        /// `--force`: quiet hours are skipped too.
        public var force: Bool
        public init(at: Timestamp, force: Bool) {
            self.at = at
            self.force = force
        }
    }

    /// Whether the digest is due early: urgent, or `max_messages` pending.
    public static func isEarly(_ f: Facts, policy: DigestPolicy) -> Bool {
        f.urgent || f.pendingCount >= policy.maxMessages
    }

    /// The due instant.
    public static func dueAt(_ f: Facts, policy: DigestPolicy, timeZone: TimeZone) -> Timestamp {
        if let flush = f.flush {
            return flush.force ? flush.at : afterQuietHours(flush.at, policy.quietHours, timeZone)
        }
        var due: Timestamp
        switch policy.mode {
        case .fixed:
            due = f.windowStart + policy.window.milliseconds
        case .sliding:
            due = min(f.lastMessageAt + policy.window.milliseconds, f.windowStart + policy.maxWait.milliseconds)
        }
        if isEarly(f, policy: policy) {
            due = min(due, f.earlySince ?? f.lastMessageAt)
        }
        if !f.urgent, let last = f.lastSentAt {
            due = max(due, last + policy.minInterval.milliseconds)
        }
        return afterQuietHours(due, policy.quietHours, timeZone)
    }

    /// `t`, or the end of the quiet hours it falls in (repeatedly, for back-to-back ranges).
    public static func afterQuietHours(_ t: Timestamp, _ quiet: QuietHours, _ timeZone: TimeZone) -> Timestamp {
        guard !quiet.ranges.isEmpty else { return t }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        var current = t
        for _ in 0...quiet.ranges.count {
            guard let end = quietEnd(containing: current.date, quiet, calendar) else { return current }
            current = Timestamp(end)
        }
        return current
    }

    /// Whether no WeChat call may start at `t`.
    public static func isQuiet(_ t: Timestamp, _ quiet: QuietHours, _ timeZone: TimeZone) -> Bool {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        return quietEnd(containing: t.date, quiet, calendar) != nil
    }

    /// The end of the quiet range that contains `date`, or nil when it is not quiet.
    private static func quietEnd(containing date: Date, _ quiet: QuietHours, _ calendar: Calendar) -> Date? {
        let parts = calendar.dateComponents([.hour, .minute], from: date)
        let minute = (parts.hour ?? 0) * 60 + (parts.minute ?? 0)
        guard let range = quiet.ranges.first(where: { $0.contains(minuteOfDay: minute) }) else { return nil }
        let startOfDay = calendar.startOfDay(for: date)
        // Crossing midnight and already past the start: the range ends tomorrow.
        let endDay = (range.start > range.end && minute >= range.start)
            ? calendar.date(byAdding: .day, value: 1, to: startOfDay) ?? startOfDay
            : startOfDay
        // In a DST gap the end time may not exist: take the first instant after it.
        return calendar.date(
            bySettingHour: range.end / 60, minute: range.end % 60, second: 0, of: endDay,
            matchingPolicy: .nextTime, repeatedTimePolicy: .first, direction: .forward)
    }
}
