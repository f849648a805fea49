import Foundation
import Yams

/// Loads the effective configuration: built-in defaults, then the YAML file, then `ROUNDUP_*`
/// environment variables for scalar keys. Every problem is collected with its key
/// path; a config with any problem is not returned.
///
/// ## Configuration keys
/// Every key in docs/configuration.md. The environment variable for a scalar key is its path upper-cased with
/// `.` → `_` and prefixed `ROUNDUP_` (`digest.window` → `ROUNDUP_DIGEST_WINDOW`). Lists
/// (`templates`, `digest.urgent_senders`, `digest.ignore_senders`) and `digest.profiles` come from
/// the file only.
public struct ConfigLoader: Sendable {
    /// The file used when none is named and it exists.
    public static let defaultPath = "./roundup.yaml"

    /// Every scalar key path that an environment variable may override.
    public static let scalarKeys: [String] = [
        "server.host", "server.port", "server.admin_token", "server.max_body_bytes",
        "storage.path", "storage.url", "storage.pool_size", "storage.instance_timeout", "storage.text_retention",
        "storage.synchronous",
        "wechat.app_id", "wechat.app_secret", "wechat.push_token", "wechat.encoding_aes_key",
        "wechat.api_base_url", "wechat.dry_run",
        "im.sdk_app_id", "im.secret_key", "im.admin_identifier", "im.callback_token",
        "im.allow_unsigned_callbacks", "im.ingest_from", "im.group_members_ttl", "im.api_base_url",
    ] + (RawDigest.policyScalars + ["timezone", "send_concurrency"]).map { "digest.\($0)" }

    /// Keys whose values are secrets: always printed masked.
    public static let secretKeys: Set<String> = [
        "wechat.app_secret", "wechat.encoding_aes_key", "wechat.push_token", "im.secret_key",
        "im.callback_token", "server.admin_token", "storage.url",
    ]

    /// The environment variable that overrides a key path.
    public static func environmentName(for keyPath: String) -> String {
        "ROUNDUP_" + keyPath.uppercased().replacingOccurrences(of: ".", with: "_")
    }

    public let environment: [String: String]

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    /// Where the config comes from: a named file (which must exist), or the default file if it
    /// exists, else the built-in defaults.
    public func load(path: String?) throws(ConfigError) -> LoadedConfig {
        if let path {
            guard let data = FileManager.default.contents(atPath: path) else {
                let exists = FileManager.default.fileExists(atPath: path)
                throw ConfigError(problems: [ConfigProblem("", exists
                    ? "cannot read config file \(path)" : "config file \(path) does not exist")])
            }
            guard let text = String(data: data, encoding: .utf8) else {
                throw ConfigError(problems: [ConfigProblem("", "config file \(path) is not UTF-8 text")])
            }
            return try load(yaml: text, source: path)
        }
        if FileManager.default.fileExists(atPath: ConfigLoader.defaultPath) {
            return try load(path: ConfigLoader.defaultPath)
        }
        return try load(yaml: "", source: nil)
    }

    /// Builds the effective config from YAML text (empty text means defaults only).
    public func load(yaml: String, source: String? = nil) throws(ConfigError) -> LoadedConfig {
        var root: Node
        do {
            root = try Yams.compose(yaml: yaml) ?? Node.mapping(Node.Mapping([]))
        } catch {
            throw ConfigError(problems: [ConfigProblem("", "the file is not valid YAML: \(yamlErrorSummary(error))")])
        }
        if case .scalar(let s) = root, s.string.isEmpty || s.tag == Tag(.null) {
            root = Node.mapping(Node.Mapping([]))
        }

        var warnings: [ConfigProblem] = []
        let overridden = applyEnvironment(to: &root, warnings: &warnings)

        let log = ProblemLog()
        var raw: RawConfig?
        do {
            raw = try YAMLDecoder().decode(RawConfig.self, from: root, userInfo: [.roundupProblemLog: log])
        } catch {
            log.add("", "expected a mapping with the sections \(RawConfig.sections.joined(separator: ", "))")
        }
        var builder = ConfigBuilder(log: log)
        let config = builder.build(raw)
        let problems = log.all.map { problem in
            overridden.contains(problem.keyPath)
                ? ConfigProblem(problem.keyPath, "\(problem.message) (from \(ConfigLoader.environmentName(for: problem.keyPath)))")
                : problem
        }
        guard problems.isEmpty, let config else { throw ConfigError(problems: problems) }
        let setStorageKeys = raw?.storage.map { Set($0.values.keys.map { "storage.\($0)" }) } ?? []
        warnings += ConfigLoader.warnings(for: config, explicitlySet: setStorageKeys)
        return LoadedConfig(config: config, source: source, overriddenKeys: overridden, warnings: warnings)
    }

    /// Lays `ROUNDUP_*` variables over the document; returns the key paths they set.
    private func applyEnvironment(to root: inout Node, warnings: inout [ConfigProblem]) -> Set<String> {
        var overridden: Set<String> = []
        let byName = Dictionary(uniqueKeysWithValues: ConfigLoader.scalarKeys.map { (ConfigLoader.environmentName(for: $0), $0) })
        for (name, value) in environment.sorted(by: { $0.key < $1.key }) where name.hasPrefix("ROUNDUP_") {
            guard let keyPath = byName[name] else {
                warnings.append(ConfigProblem(name, "is not a config key and is ignored"))
                continue
            }
            let parts = keyPath.split(separator: ".").map(String.init)
            guard case .mapping(var top) = root else { continue }
            var section: Node.Mapping
            if case .mapping(let existing)? = top[parts[0]] {
                section = existing
            } else {
                section = Node.Mapping([])
            }
            section[parts[1]] = Node(value, Tag(.implicit), .plain)
            top[parts[0]] = .mapping(section)
            root = .mapping(top)
            overridden.insert(keyPath)
        }
        return overridden
    }

    /// The config's warnings (empty tokens, dry-run, storage keys the chosen database ignores):
    /// they go to stderr and do not change the exit code. `explicitlySet` holds the key paths
    /// given a value by the file or a `ROUNDUP_*` variable; a key left at its default is never
    /// warned about for being ignored.
    static func warnings(for config: RoundupConfig, explicitlySet: Set<String> = []) -> [ConfigProblem] {
        var out: [ConfigProblem] = []
        let postgresOnly = ["storage.pool_size", "storage.instance_timeout"]
        let sqliteOnly = ["storage.path", "storage.synchronous"]
        if config.storage.isPostgres {
            for key in sqliteOnly where explicitlySet.contains(key) {
                out.append(ConfigProblem(key, "is ignored: storage.url is set, so the database is PostgreSQL"))
            }
        } else {
            for key in postgresOnly where explicitlySet.contains(key) {
                out.append(ConfigProblem(key, "applies to PostgreSQL only and is ignored: storage.url is empty, so the database is SQLite"))
            }
        }
        if config.wechat.pushToken.isEmpty {
            out.append(ConfigProblem("wechat.push_token", "is empty: /wechat/push answers 503 until it is set"))
        }
        if config.im.callbackToken.isEmpty {
            out.append(ConfigProblem("im.callback_token", config.im.allowUnsignedCallbacks
                ? "is empty and im.allow_unsigned_callbacks is true: anyone who can reach /im/callback can post callbacks"
                : "is empty: /im/callback refuses every callback (401) until it is set"))
        }
        if config.wechat.isDryRun {
            let why = config.wechat.dryRun ? "wechat.dry_run is true" : "wechat.app_id or wechat.app_secret is empty"
            out.append(ConfigProblem("wechat", "dry-run mode (\(why)): digests are rendered and recorded, never sent"))
        }
        if config.server.adminToken.isEmpty {
            out.append(ConfigProblem("server.admin_token", "is empty: the admin API answers 403"))
        }
        if config.templates.isEmpty {
            out.append(ConfigProblem("templates", "none configured: every digest will be held for lack of a usable template"))
        }
        return out
    }

    private func yamlErrorSummary(_ error: any Error) -> String {
        if let y = error as? YamlError {
            return "\(y)".split(separator: "\n").first.map(String.init) ?? "\(y)"
        }
        return "\(error)"
    }
}

/// A loaded, valid configuration with where it came from and what deserves a warning.
public struct LoadedConfig: Sendable {
    public let config: RoundupConfig
    /// The file read, or nil for built-in defaults.
    public let source: String?
    /// Key paths set from `ROUNDUP_*` variables.
    public let overriddenKeys: Set<String>
    public let warnings: [ConfigProblem]
}
