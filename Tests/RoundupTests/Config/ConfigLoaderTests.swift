import Foundation
import Testing

@testable import Roundup

@Suite("Config loading")
struct ConfigLoaderTests {
    /// Problems from loading YAML that must fail.
    func problems(_ yaml: String, env: [String: String] = [:]) -> [ConfigProblem] {
        do {
            _ = try TestSupport.loader(env).load(yaml: yaml)
            Issue.record("expected the config to be rejected")
            return []
        } catch {
            return error.problems
        }
    }

    @Test("no file gives the built-in defaults: SQLite under ./roundup-data, 127.0.0.1:8080, dry-run")
    func defaults() throws {
        let loaded = try TestSupport.loader().load(yaml: "")
        let c = loaded.config
        #expect(c.storage.path == "./roundup-data/roundup.sqlite")
        #expect(c.server.host == "127.0.0.1")
        #expect(c.server.port == 8080)
        #expect(c.server.maxBodyBytes == 1_048_576)
        #expect(c.wechat.isDryRun)
        #expect(c.wechat.apiBaseURL == "https://api.weixin.qq.com")
        #expect(c.im.apiBaseURL == "https://console.tim.qq.com")
        #expect(c.im.adminIdentifier == "administrator")
        #expect(c.im.ingestFrom == .afterSend)
        #expect(c.im.groupMembersTTL == .minutes(10))
        #expect(c.digest.policy.window == .minutes(10))
        #expect(c.digest.policy.mode == .fixed)
        #expect(c.digest.policy.maxWait == .hours(1))
        #expect(c.digest.policy.maxMessages == 20)
        #expect(c.digest.policy.minInterval == .zero)
        #expect(c.digest.policy.quietHours == .none)
        #expect(c.digest.policy.cancelOnOnline)
        #expect(c.digest.policy.offlineLookback == .seconds(60))
        #expect(c.digest.policy.groupMessages == .mentions)
        #expect(c.digest.policy.retention == .days(7))
        #expect(c.digest.timezone.identifier == "Asia/Shanghai")
        #expect(c.digest.sendConcurrency == 16)
        #expect(c.storage.textRetention == .days(30))
        #expect(c.storage.synchronous == .normal)
        #expect(c == RoundupConfig.defaults)
        let warned = Set(loaded.warnings.map(\.keyPath))
        #expect(warned.isSuperset(of: ["wechat.push_token", "im.callback_token", "wechat", "server.admin_token"]))
    }

    @Test("the commented example config loads and keeps every value")
    func exampleConfig() throws {
        let loaded = try TestSupport.loader().load(path: TestSupport.fixture("config/roundup.example.yaml").path)
        let c = loaded.config
        #expect(c.templates.count == 1)
        let t = try #require(c.templates.first)
        #expect(t.kind == .oneTime)
        #expect(t.page == "pages/chat/index?peer={{from}}")
        #expect(t.fields.map(\.keyword) == ["thing1", "number2", "thing3", "time4"])
        #expect(t.fields.map(\.type) == [.thing, .number, .thing, .time])
        #expect(t.fields[2].fallback == "您有新消息")
        #expect(c.digest.policy.quietHours.description == "21:30-07:00")
        #expect(c.digest.policy.urgentSenders == ["principal_office"])
        #expect(c.digest.policy.ignoreSenders == ["notice_bot"])
        #expect(Set(c.digest.profiles.keys) == ["clinic", "night_shift"])
        let clinic = c.digest.policy(forProfile: "clinic")
        #expect(clinic.window == .minutes(2))
        #expect(clinic.quietHours == .none)
        #expect(clinic.groupMessages == .none)
        #expect(clinic.maxMessages == 20)
        #expect(c.digest.policy(forProfile: "night_shift").minInterval == .minutes(30))
        #expect(c.digest.policy(forProfile: "nobody") == c.digest.policy)
    }

    @Test("ROUNDUP_* variables override scalar keys, typed like the file")
    func environmentOverrides() throws {
        let env = [
            "ROUNDUP_WECHAT_APP_SECRET": "s3cret", "ROUNDUP_SERVER_PORT": "9090", "ROUNDUP_DIGEST_WINDOW": "90s",
            "ROUNDUP_IM_ALLOW_UNSIGNED_CALLBACKS": "true", "ROUNDUP_DIGEST_QUIET_HOURS": "22:00-06:30",
            "ROUNDUP_IM_SDK_APP_ID": "1400000000",
        ]
        let loaded = try TestSupport.loader(env).load(yaml: "server:\n  port: 8081\nwechat:\n  app_id: wx1\n")
        #expect(loaded.config.wechat.appSecret == "s3cret")
        #expect(loaded.config.server.port == 9090)
        #expect(loaded.config.digest.policy.window == .seconds(90))
        #expect(loaded.config.im.allowUnsignedCallbacks)
        #expect(loaded.config.im.sdkAppID == 1_400_000_000)
        #expect(loaded.config.digest.policy.quietHours.ranges.count == 1)
        #expect(loaded.config.wechat.appID == "wx1")
        #expect(!loaded.config.wechat.isDryRun)
        #expect(loaded.overriddenKeys.contains("server.port"))
    }

    @Test("a bad environment value names both the key and the variable")
    func badEnvironmentValue() {
        let p = problems("", env: ["ROUNDUP_DIGEST_MAX_MESSAGES": "lots"])
        #expect(p.count == 1)
        #expect(p.first?.keyPath == "digest.max_messages")
        #expect(p.first?.message.contains("ROUNDUP_DIGEST_MAX_MESSAGES") == true)
    }

    @Test("an unknown ROUNDUP_ variable is a warning, not an error")
    func unknownVariable() throws {
        let loaded = try TestSupport.loader(["ROUNDUP_DIGEST_WINDOWS": "5m"]).load(yaml: "")
        #expect(loaded.warnings.contains { $0.keyPath == "ROUNDUP_DIGEST_WINDOWS" })
    }

    @Test("unknown keys are reported with a suggestion, never ignored")
    func unknownKeys() throws {
        let p = problems(try TestSupport.fixtureText("config/invalid/unknown-key.yaml"))
        #expect(p.map(\.keyPath).sorted() == ["digest.windw", "server.prot"])
        #expect(p.contains { $0.message.contains("did you mean \"window\"") })
        #expect(p.contains { $0.message.contains("did you mean \"port\"") })
        #expect(problems("colour: blue\n").map(\.keyPath) == ["colour"])
        #expect(problems("templates:\n  - id: T\n    feilds: {thing1: x}\n").map(\.keyPath).contains("templates[0].feilds"))
        // An empty or null key is named too (a top-level one once gave an empty key path).
        #expect(problems("\"\": 1\n").map(\.keyPath) == ["\"\""])
        #expect(problems("? \n: 1\n").map(\.keyPath) == ["\"\""])
        #expect(problems("server:\n  \"\": 1\n").map(\.keyPath) == ["server.\"\""])
    }

    @Test("every bad value in a file is reported, each with its key path")
    func everyProblem() throws {
        let p = problems(try TestSupport.fixtureText("config/invalid/bad-values.yaml"))
        #expect(Set(p.map(\.keyPath)) == [
            "server.port", "storage.synchronous", "wechat.encoding_aes_key", "im.ingest_from", "digest.window",
            "digest.max_messages", "digest.quiet_hours", "digest.timezone", "digest.group_messages",
        ])
        #expect(p.first { $0.keyPath == "wechat.encoding_aes_key" }?.message.contains("43") == true)
        #expect(p.first { $0.keyPath == "digest.window" }?.message.contains("not a duration") == true)
    }

    @Test("template mistakes: keyword types, amount and enum, placeholders, page, fallbacks, duplicates")
    func templateProblems() throws {
        let p = problems(try TestSupport.fixtureText("config/invalid/bad-templates.yaml"))
        let paths = Set(p.map(\.keyPath))
        #expect(paths.isSuperset(of: [
            "templates[0].page", "templates[0].fields.thingy1", "templates[0].fields.amount2",
            "templates[0].fields.enum3", "templates[0].fields.thing4", "templates[0].fields.thing5.fallback",
            "templates[1].id", "templates[1].kind", "templates[1].fields",
        ]))
        #expect(p.first { $0.keyPath == "templates[0].page" }?.message.contains("{{user}}") == true)
        #expect(p.first { $0.keyPath == "templates[0].fields.thing4" }?.message.contains("{{sender}}") == true)
    }

    @Test("profiles cannot set timezone or send_concurrency and are validated like digest")
    func profileProblems() throws {
        let p = problems(try TestSupport.fixtureText("config/invalid/bad-profiles.yaml"))
        #expect(Set(p.map(\.keyPath)) == [
            "digest.profiles.clinic.timezone", "digest.profiles.clinic.send_concurrency", "digest.profiles.clinic.window",
        ])
    }

    @Test("text that is not YAML is one clear problem")
    func notYAML() throws {
        let p = problems(try TestSupport.fixtureText("config/invalid/not-yaml.yaml"))
        #expect(p.count == 1)
        #expect(p.first?.message.contains("not valid YAML") == true)
    }

    @Test("a section of the wrong shape and a list where a value belongs are problems")
    func wrongShapes() {
        #expect(problems("server: 5\n").map(\.keyPath) == ["server"])
        #expect(problems("server:\n  host: [a, b]\n").map(\.keyPath) == ["server.host"])
        #expect(problems("digest:\n  urgent_senders: teacher\n").map(\.keyPath) == ["digest.urgent_senders"])
        #expect(problems("templates:\n  id: T\n").map(\.keyPath) == ["templates"])
    }

    @Test("quiet hours that cover the whole day and sliding windows longer than max_wait are rejected")
    func impossiblePolicies() {
        #expect(problems("digest:\n  quiet_hours: \"00:00-12:00,12:00-00:00\"\n").map(\.keyPath) == ["digest.quiet_hours"])
        #expect(problems("digest:\n  mode: sliding\n  window: 2h\n  max_wait: 1h\n").map(\.keyPath) == ["digest.max_wait"])
    }

    @Test("a named config file that does not exist is an error; the default file is optional")
    func missingFile() throws {
        #expect(throws: ConfigError.self) { try TestSupport.loader().load(path: "/nonexistent/roundup.yaml") }
    }

    @Test("the effective config masks every secret and can be loaded again")
    func masking() throws {
        let env = [
            "ROUNDUP_WECHAT_APP_SECRET": "app-secret-value", "ROUNDUP_WECHAT_PUSH_TOKEN": "pushtokenvalue",
            "ROUNDUP_WECHAT_ENCODING_AES_KEY": String(repeating: "k", count: 43), "ROUNDUP_IM_SECRET_KEY": "im-secret-value",
            "ROUNDUP_IM_CALLBACK_TOKEN": "callback-token-value", "ROUNDUP_SERVER_ADMIN_TOKEN": "admin-token-value",
        ]
        let loaded = try TestSupport.loader(env).load(path: TestSupport.fixture("config/roundup.example.yaml").path)
        let yaml = loaded.config.effectiveYAML()
        for secret in env.values { #expect(!yaml.contains(secret)) }
        #expect(yaml.components(separatedBy: RoundupConfig.secretMask).count - 1 == 6)
        #expect(yaml.contains("{{first_sender}}等{{sender_count}}人"))
        // The printed config is itself a valid config (secrets aside) with the same policy.
        let again = try TestSupport.loader(["ROUNDUP_WECHAT_ENCODING_AES_KEY": String(repeating: "k", count: 43)]).load(yaml: yaml).config
        #expect(again.digest == loaded.config.digest)
        #expect(again.templates == loaded.config.templates)
    }
}

@Suite("Config values")
struct ConfigValueTests {
    @Test("durations parse with units and print in their shortest form", arguments: [
        ("500ms", 500), ("30s", 30_000), ("10m", 600_000), ("2h", 7_200_000), ("7d", 604_800_000), ("1h30m", 5_400_000),
        ("0s", 0),
    ])
    func durations(text: String, ms: Int64) throws {
        let d = try #require(ConfigDuration(parsing: text))
        #expect(d.milliseconds == ms)
        #expect(ConfigDuration(parsing: d.description) == d)
    }

    @Test("durations without a unit or with a bad one are refused", arguments: ["600", "10 m", "10min", "-5s", "", "1.5h", "m"])
    func badDurations(text: String) {
        #expect(ConfigDuration(parsing: text) == nil)
    }

    @Test("quiet hours are half-open ranges that may cross midnight")
    func quietHours() throws {
        let q = try QuietHours(parsing: "21:30-07:00,12:00-13:30")
        #expect(q.contains(minuteOfDay: 21 * 60 + 30))
        #expect(q.contains(minuteOfDay: 0))
        #expect(q.contains(minuteOfDay: 6 * 60 + 59))
        #expect(!q.contains(minuteOfDay: 7 * 60))
        #expect(q.contains(minuteOfDay: 12 * 60))
        #expect(!q.contains(minuteOfDay: 13 * 60 + 30))
        #expect(!q.contains(minuteOfDay: 21 * 60 + 29))
        #expect(q.description == "21:30-07:00,12:00-13:30")
        #expect(try QuietHours(parsing: "").ranges.isEmpty)
    }

    @Test("malformed quiet hours are refused", arguments: ["21:30", "25:00-07:00", "21:30-07:60", "9-17", "07:00-07:00", "a-b"])
    func badQuietHours(text: String) {
        #expect(throws: ConfigValueError.self) { try QuietHours(parsing: text) }
    }

    @Test("keyword types come from the keyword's prefix", arguments: [
        ("thing1", KeywordType.thing), ("character_string12", .characterString), ("phone_number3", .phoneNumber),
        ("time4", .time), ("amount2", .amount),
    ])
    func keywordTypes(keyword: String, type: KeywordType) {
        #expect(KeywordType.of(keyword: keyword) == type)
    }

    @Test("keywords without a number or with an unknown type are not keywords", arguments: ["thing", "1thing", "thingy1", "thing1a", ""])
    func badKeywords(keyword: String) {
        #expect(KeywordType.of(keyword: keyword) == nil)
    }
}
