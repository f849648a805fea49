import Foundation

/// The whole effective configuration: the YAML file over the built-in defaults, with
/// `ROUNDUP_*` environment overrides on top. Built only by `ConfigLoader`, which validates it.
public struct RoundupConfig: Sendable, Equatable {
    public var server: ServerSettings
    public var storage: StorageSettings
    public var wechat: WeChatSettings
    public var im: IMSettings
    public var templates: [TemplateConfig]
    public var digest: DigestSettings

    /// The built-in defaults: enough to start on a fresh machine.
    public static let defaults = RoundupConfig(
        server: .init(), storage: .init(), wechat: .init(), im: .init(), templates: [], digest: .init())

    public init(
        server: ServerSettings, storage: StorageSettings, wechat: WeChatSettings, im: IMSettings,
        templates: [TemplateConfig], digest: DigestSettings
    ) {
        self.server = server
        self.storage = storage
        self.wechat = wechat
        self.im = im
        self.templates = templates
        self.digest = digest
    }

    /// The template with this id, if configured.
    public func template(id: String) -> TemplateConfig? { templates.first { $0.id == id } }
}

/// `server.*`: the HTTP listener and the admin API's token.
public struct ServerSettings: Sendable, Equatable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// Bearer token for `/admin/*`; empty → the admin API answers 403.
    public var adminToken = ""
    public var maxBodyBytes = 1_048_576
    public init() {}
}

/// `storage.*`: the database (an SQLite file, or PostgreSQL when `url` is set) and how long
/// message text is kept.
public struct StorageSettings: Sendable, Equatable {
    /// How hard SQLite works to keep a committed transaction (`storage.synchronous`).
    public enum Synchronous: String, Sendable, CaseIterable {
        /// Survives a process crash (WAL with `synchronous=NORMAL`).
        case normal
        /// Also survives power loss (`synchronous=FULL`).
        case full
    }

    /// The SQLite database; unused when `url` is set.
    public var path = "./roundup-data/roundup.sqlite"
    /// The PostgreSQL database shared by every instance; nil (`storage.url: ""`) means SQLite at `path`.
    /// A secret: never printed or logged whole.
    public var url: PostgresURL?
    /// PostgreSQL connections per instance, besides the one that listens for notifications (1 to 1000).
    public var poolSize = 10
    /// PostgreSQL only: an instance whose heartbeat is this old is taken for dead (at least 2 s).
    public var instanceTimeout = ConfigDuration.seconds(15)
    public var textRetention = ConfigDuration.days(30)
    /// SQLite only.
    public var synchronous = Synchronous.normal
    public init() {}

    /// Whether the database is PostgreSQL (`url` is set) rather than SQLite.
    public var isPostgres: Bool { url != nil }
}

/// `wechat.*`: the mini program's credentials and its message-push settings.
public struct WeChatSettings: Sendable, Equatable {
    public var appID = ""
    public var appSecret = ""
    public var pushToken = ""
    public var encodingAESKey = ""
    public var apiBaseURL = "https://api.weixin.qq.com"
    public var dryRun = false
    public init() {}

    /// Dry-run when asked to, or when the credentials to call WeChat are missing.
    public var isDryRun: Bool { dryRun || appID.isEmpty || appSecret.isEmpty }
}

/// `im.*`: the Tencent IM application, its callbacks and its REST API.
public struct IMSettings: Sendable, Equatable {
    /// Which C2C callback carries the messages Roundup stores.
    public enum IngestFrom: String, Sendable, CaseIterable {
        case afterSend = "after_send"
        case beforeSend = "before_send"
    }

    public var sdkAppID: UInt32 = 0
    public var secretKey = ""
    public var adminIdentifier = "administrator"
    public var callbackToken = ""
    public var allowUnsignedCallbacks = false
    public var ingestFrom = IngestFrom.afterSend
    public var groupMembersTTL = ConfigDuration.minutes(10)
    public var apiBaseURL = "https://console.tim.qq.com"
    public init() {}
}

/// One subscribe-message template from `templates:`.
public struct TemplateConfig: Sendable, Equatable {
    public enum MiniProgramState: String, Sendable, CaseIterable {
        case developer, trial, formal
    }

    public var id: String
    public var kind: TemplateKind
    /// Page opened when the card is tapped; only `{{from}}` may appear in it.
    public var page: String
    public var miniprogramState: MiniProgramState
    public var lang: String
    /// Keyword fields in config order.
    public var fields: [TemplateField]

    public init(
        id: String, kind: TemplateKind = .oneTime, page: String = "", miniprogramState: MiniProgramState = .formal,
        lang: String = "zh_CN", fields: [TemplateField]
    ) {
        self.id = id
        self.kind = kind
        self.page = page
        self.miniprogramState = miniprogramState
        self.lang = lang
        self.fields = fields
    }

    /// WeChat's `lang` values for the "进入小程序查看" link.
    public static let languages = ["zh_CN", "en_US", "zh_HK", "zh_TW"]
}

/// One keyword of a template: `thing1: "{{first_sender}}等{{sender_count}}人"`.
public struct TemplateField: Sendable, Equatable {
    /// The WeChat keyword (`thing1`).
    public var keyword: String
    /// Its type, from the keyword's prefix.
    public var type: KeywordType
    /// Text with placeholders.
    public var value: String
    /// Literal text used when the rendered value is empty or cannot fit.
    public var fallback: String?

    public init(keyword: String, type: KeywordType, value: String, fallback: String? = nil) {
        self.keyword = keyword
        self.type = type
        self.value = value
        self.fallback = fallback
    }
}

/// The placeholders a template field may use.
public enum Placeholder: String, Sendable, CaseIterable {
    case count, senderCount = "sender_count", firstSender = "first_sender", lastSender = "last_sender"
    case senders, preview, firstTime = "first_time", lastTime = "last_time", user, from

    /// The `{{name}}` occurrences in a text, in order, whether known or not.
    public static func names(in text: String) -> [String] {
        var names: [String] = []
        var rest = Substring(text)
        while let open = rest.range(of: "{{") {
            guard let close = rest[open.upperBound...].range(of: "}}") else { break }
            names.append(String(rest[open.upperBound..<close.lowerBound]).trimmingCharacters(in: .whitespaces))
            rest = rest[close.upperBound...]
        }
        return names
    }
}

/// How a digest's due time is computed from its messages (`digest.mode`).
public enum WindowMode: String, Sendable, CaseIterable {
    /// Due `window` after the first message.
    case fixed
    /// Due `window` after the last message, never later than first + `max_wait`.
    case sliding
}

/// Which group messages notify.
public enum GroupMessagePolicy: String, Sendable, CaseIterable {
    case all, mentions, none
}

/// The batching rules for one user: `digest.*` with their profile's overrides applied.
public struct DigestPolicy: Sendable, Equatable {
    public var window = ConfigDuration.minutes(10)
    public var mode = WindowMode.fixed
    public var maxWait = ConfigDuration.hours(1)
    public var maxMessages = 20
    public var minInterval = ConfigDuration.zero
    public var quietHours = QuietHours.none
    public var cancelOnOnline = true
    public var offlineLookback = ConfigDuration.seconds(60)
    public var groupMessages = GroupMessagePolicy.mentions
    public var retention = ConfigDuration.days(7)
    public var urgentSenders: Set<String> = []
    public var ignoreSenders: Set<String> = []
    public init() {}
}

/// A named profile: overrides of any `digest.*` key but `send_concurrency` and `timezone`.
public struct DigestProfile: Sendable, Equatable {
    public var window: ConfigDuration?
    public var mode: WindowMode?
    public var maxWait: ConfigDuration?
    public var maxMessages: Int?
    public var minInterval: ConfigDuration?
    public var quietHours: QuietHours?
    public var cancelOnOnline: Bool?
    public var offlineLookback: ConfigDuration?
    public var groupMessages: GroupMessagePolicy?
    public var retention: ConfigDuration?
    public var urgentSenders: Set<String>?
    public var ignoreSenders: Set<String>?
    public init() {}

    /// `base` with this profile's keys laid over it.
    public func applied(to base: DigestPolicy) -> DigestPolicy {
        var p = base
        if let window { p.window = window }
        if let mode { p.mode = mode }
        if let maxWait { p.maxWait = maxWait }
        if let maxMessages { p.maxMessages = maxMessages }
        if let minInterval { p.minInterval = minInterval }
        if let quietHours { p.quietHours = quietHours }
        if let cancelOnOnline { p.cancelOnOnline = cancelOnOnline }
        if let offlineLookback { p.offlineLookback = offlineLookback }
        if let groupMessages { p.groupMessages = groupMessages }
        if let retention { p.retention = retention }
        if let urgentSenders { p.urgentSenders = urgentSenders }
        if let ignoreSenders { p.ignoreSenders = ignoreSenders }
        return p
    }
}

/// `digest.*`: the default policy, the settings that only exist once, and the profiles.
public struct DigestSettings: Sendable, Equatable {
    public var policy = DigestPolicy()
    public var timezone = TimeZone(identifier: "Asia/Shanghai")!
    public var sendConcurrency = 16
    public var profiles: [String: DigestProfile] = [:]
    public init() {}

    /// The policy for a user with this profile; an unknown or absent profile gets the default.
    public func policy(forProfile name: String?) -> DigestPolicy {
        guard let name, let profile = profiles[name] else { return policy }
        return profile.applied(to: policy)
    }
}
