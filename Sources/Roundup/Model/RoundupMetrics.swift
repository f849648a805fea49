import Prometheus
import Synchronization

/// The fixed names of the database writes whose failure is counted in `roundup_store_errors_total`.
public enum StoreOperation: String, Sendable, CaseIterable {
    case ingest
    case presence
    case fanout
    case claim
    case markSending = "mark_sending"
    case finish
    case hold
    case retime
    case settle
    case pause
    case recover
    case housekeeping
    case credits
    case tokenCache = "token_cache"
}

/// Every metric (docs/operations.md, Metrics), created at start so each is exported at zero, with bounded labels:
/// no user, openid, group or message id ever becomes a label. Each instance has its own
/// registry (no process-wide bootstrap), so parallel tests and the demo do not collide.
public final class RoundupMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry

    /// The callback commands Roundup handles; anything else is counted as `other`.
    public static let commands = [
        "State.StateChange", "C2C.CallbackBeforeSendMsg", "C2C.CallbackAfterSendMsg", "C2C.CallbackAfterMsgReport",
        "C2C.CallbackAfterMsgWithDraw", "Group.CallbackAfterSendMsg", "other",
    ]

    /// What happened to a callback.
    public enum CallbackOutcome: String, Sendable, CaseIterable {
        /// A message was stored (joined to a digest or kept unjoined).
        case stored
        /// A state change, read report or recall was applied.
        case applied
        /// Answered at once and only counted (the other of before/after send, unknown commands).
        case answered
        /// Nothing to do: duplicate, online-only, failed send, ignored sender, stale event, …
        case skipped
        /// Not committed within 1.5 s; answered anyway. The only possible loss.
        case shed
        /// Refused: wrong SdkAppid or signature (401).
        case unauthorized
        /// Not decodable (400).
        case malformed
        /// The database failed; answered anyway so the chat is never blocked.
        case failed
    }

    /// Digest outcomes for `roundup_digests_total`.
    public static let digestOutcomes = ["sent", "cancelled", "expired", "dead", "in_doubt", "dry_run"]
    /// The errcodes Roundup acts on by name (docs/operations.md); any other is `other`.
    public static let wechatErrcodes = [
        "-1", "40001", "40003", "40014", "40037", "41030", "42001", "43101", "43107", "43108", "45009", "45011",
        "45168", "47003", "48001", "other",
    ]

    private let callbacks: [String: Counter]
    public let messagesIngested: Counter
    private let digests: [String: Counter]
    private let held: [String: Gauge]
    public let digestMessages: ValueHistogram
    private let wechatErrors: [String: Counter]
    public let pendingMessages: Gauge
    public let openDigests: Gauge
    private let presence: [String: Gauge]
    public let callbackSeconds: DurationHistogram
    public let accessTokenRefreshes: Counter
    /// Access-token fetches that failed (WeChat refused or could not be reached).
    public let accessTokenFailures: Counter
    private let credits = Mutex<[String: Gauge]>([:])
    public let oldestDueAge: Gauge
    private let reloads: [String: Counter]
    private let storeErrors: [StoreOperation: Counter]
    /// `roundup_build_info{version}`: 1, so dashboards can tell which version each instance runs.
    public let buildInfo: Gauge

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        var callbacks: [String: Counter] = [:]
        for command in RoundupMetrics.commands {
            for outcome in CallbackOutcome.allCases {
                callbacks["\(command)|\(outcome.rawValue)"] = registry.makeCounter(descriptor: RoundupMetrics.d("roundup_callbacks_total", "IM callbacks received, by command and outcome."), labels: [("command", command), ("outcome", outcome.rawValue)])
            }
        }
        self.callbacks = callbacks
        messagesIngested = registry.makeCounter(descriptor: RoundupMetrics.d("roundup_messages_ingested_total", "Messages stored for offline users."))
        digests = Dictionary(uniqueKeysWithValues: RoundupMetrics.digestOutcomes.map {
            ($0, registry.makeCounter(descriptor: RoundupMetrics.d("roundup_digests_total", "Digests finished, by outcome."), labels: [("outcome", $0)]))
        })
        held = Dictionary(uniqueKeysWithValues: ["unbound", "no_credit", "config_error"].map {
            ($0, registry.makeGauge(descriptor: RoundupMetrics.d("roundup_digests_held", "Digests held now, by reason."), labels: [("reason", $0)]))
        })
        digestMessages = registry.makeValueHistogram(descriptor: RoundupMetrics.d("roundup_digest_messages", "Messages per sent digest."), buckets: [1, 2, 3, 5, 8, 13, 20, 50, 100])
        wechatErrors = Dictionary(uniqueKeysWithValues: RoundupMetrics.wechatErrcodes.map {
            ($0, registry.makeCounter(descriptor: RoundupMetrics.d("roundup_wechat_errors_total", "WeChat API errors, by errcode."), labels: [("errcode", $0)]))
        })
        pendingMessages = registry.makeGauge(descriptor: RoundupMetrics.d("roundup_pending_messages", "Messages waiting in open or held digests, or unjoined."))
        openDigests = registry.makeGauge(descriptor: RoundupMetrics.d("roundup_open_digests", "Digests open (collecting or waiting to be sent)."))
        presence = Dictionary(uniqueKeysWithValues: PresenceState.allCases.map {
            ($0.rawValue, registry.makeGauge(descriptor: RoundupMetrics.d("roundup_presence_users", "Users by presence."), labels: [("state", $0.rawValue)]))
        })
        callbackSeconds = registry.makeDurationHistogram(descriptor: RoundupMetrics.d("roundup_callback_seconds", "Time to answer an IM callback."), buckets: [.milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
                      .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(1500), .seconds(2)])
        accessTokenRefreshes = registry.makeCounter(descriptor: RoundupMetrics.d("roundup_access_token_refreshes_total", "WeChat access tokens fetched."))
        accessTokenFailures = registry.makeCounter(descriptor: RoundupMetrics.d("roundup_access_token_failures_total", "WeChat access-token fetches that failed."))
        oldestDueAge = registry.makeGauge(descriptor: RoundupMetrics.d("roundup_oldest_due_age_seconds", "How long the most overdue open digest has been due."))
        reloads = Dictionary(uniqueKeysWithValues: ["success", "failure"].map {
            ($0, registry.makeCounter(descriptor: RoundupMetrics.d("roundup_config_reloads_total", "Config reloads, by outcome."), labels: [("outcome", $0)]))
        })
        storeErrors = Dictionary(uniqueKeysWithValues: StoreOperation.allCases.map {
            ($0, registry.makeCounter(descriptor: RoundupMetrics.d("roundup_store_errors_total", "Database writes that failed and were logged, by operation."),
                                      labels: [("operation", $0.rawValue)]))
        })
        buildInfo = registry.makeGauge(descriptor: RoundupMetrics.d("roundup_build_info", "Always 1; the label names the running version."),
                                       labels: [("version", RoundupVersion.current)])
        buildInfo.set(Int64(1))
    }

    /// Counts a callback; unknown commands count as `other`.
    public func callback(_ command: String?, _ outcome: CallbackOutcome) {
        let c = command.flatMap { RoundupMetrics.commands.contains($0) ? $0 : nil } ?? "other"
        callbacks["\(c)|\(outcome.rawValue)"]?.increment()
    }

    /// Counts a finished digest.
    public func digestFinished(_ outcome: String) { digests[outcome]?.increment() }

    /// Counts a WeChat errcode (bounded to `wechatErrcodes`).
    public func wechatError(_ errcode: String) {
        (wechatErrors[errcode] ?? wechatErrors["other"])?.increment()
    }

    public func setHeld(_ reason: String, _ count: Int) { held[reason]?.set(Int64(count)) }

    public func setPresence(online: Int, offline: Int) {
        presence["online"]?.set(Int64(online))
        presence["offline"]?.set(Int64(offline))
    }

    /// Outstanding one-time credits per configured template (labels bounded by the config).
    public func setCredits(_ template: String, _ count: Int) {
        let gauge = credits.withLock { map -> Gauge in
            if let g = map[template] { return g }
            let g = registry.makeGauge(descriptor: RoundupMetrics.d("roundup_credits_outstanding", "Unspent one-time credits, by template."), labels: [("template", template)])
            map[template] = g
            return g
        }
        gauge.set(Int64(count))
    }

    /// Counts a database write that failed (it was logged with the digest or message it concerned).
    public func storeError(_ operation: StoreOperation) { storeErrors[operation]?.increment() }

    public func configReload(success: Bool) { reloads[success ? "success" : "failure"]?.increment() }

    /// A descriptor for a fully spelled metric name.
    private static func d(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// The text exposition format for `GET /metrics`.
    public func exposition() -> String { registry.emitToString() }
}
