import Foundation
import Testing
import Yams

@testable import Roundup

@Suite("Storage config: storage.url, pool_size, instance_timeout")
struct StorageConfigTests {
    static let password = "Pg-S3cr3t-Pw"
    static let host = "pg-primary.internal"
    static let url = "postgres://roundup:\(password)@\(host):5433/roundup?sslmode=require"

    func load(_ yaml: String, env: [String: String] = [:]) throws -> LoadedConfig {
        try TestSupport.loader(env).load(yaml: yaml)
    }

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

    /// The storage keys that drew a warning.
    func storageWarnings(_ loaded: LoadedConfig) -> Set<String> {
        Set(loaded.warnings.map(\.keyPath).filter { $0.hasPrefix("storage.") })
    }

    @Test("by default there is no URL (SQLite), 10 connections and a 15 s instance timeout")
    func defaults() throws {
        let storage = try load("").config.storage
        #expect(storage.url == nil)
        #expect(!storage.isPostgres)
        #expect(storage.poolSize == 10)
        #expect(storage.instanceTimeout == .seconds(15))
        #expect(try load("storage:\n  url: \"\"\n").config.storage.url == nil)
    }

    @Test("storage.url from the file is parsed into its parts")
    func urlFromFile() throws {
        let storage = try load("storage:\n  url: \"\(Self.url)\"\n  pool_size: 25\n  instance_timeout: 30s\n").config.storage
        let url = try #require(storage.url)
        #expect(url == PostgresURL(host: Self.host, port: 5433, user: "roundup", password: Self.password, database: "roundup", sslMode: .require))
        #expect(storage.isPostgres)
        #expect(storage.poolSize == 25)
        #expect(storage.instanceTimeout == .seconds(30))
    }

    @Test("ROUNDUP_STORAGE_URL, _POOL_SIZE and _INSTANCE_TIMEOUT override the file")
    func environment() throws {
        let env = [
            "ROUNDUP_STORAGE_URL": Self.url, "ROUNDUP_STORAGE_POOL_SIZE": "40", "ROUNDUP_STORAGE_INSTANCE_TIMEOUT": "1m",
        ]
        let loaded = try load("storage:\n  url: \"postgres://other@elsewhere/other\"\n  pool_size: 5\n", env: env)
        #expect(loaded.config.storage.url?.host == Self.host)
        #expect(loaded.config.storage.url?.password == Self.password)
        #expect(loaded.config.storage.poolSize == 40)
        #expect(loaded.config.storage.instanceTimeout == .minutes(1))
        #expect(loaded.overriddenKeys.isSuperset(of: ["storage.url", "storage.pool_size", "storage.instance_timeout"]))
        // An empty variable means SQLite, whatever the file says.
        let sqlite = try load("storage:\n  url: \"\(Self.url)\"\n", env: ["ROUNDUP_STORAGE_URL": ""])
        #expect(sqlite.config.storage.url == nil)
    }

    @Test("a bad URL is a problem at storage.url with the parser's sentence, and never shows the password")
    func badURL() throws {
        let fromFile = problems("storage:\n  url: \"postgres://roundup:\(Self.password)@\(Self.host):70000/roundup\"\n")
        #expect(fromFile.map(\.keyPath) == ["storage.url"])
        #expect(fromFile.first?.message == "the URL's port must be a number from 1 to 65535")

        let fromEnv = problems("", env: ["ROUNDUP_STORAGE_URL": "postgres://roundup:\(Self.password)@\(Self.host)/roundup?sslmode=on"])
        #expect(fromEnv.map(\.keyPath) == ["storage.url"])
        let message = try #require(fromEnv.first?.message)
        #expect(message.contains("sslmode must be one of"))
        #expect(message.contains("ROUNDUP_STORAGE_URL"))
        for problem in fromFile + fromEnv {
            #expect(!problem.description.contains(Self.password))
            #expect(!problem.description.contains(Self.host))
        }
    }

    @Test("storage.pool_size must be 1 to 1000", arguments: [("0", false), ("1", true), ("1000", true), ("1001", false), ("ten", false), ("-3", false)])
    func poolSize(value: String, accepted: Bool) throws {
        let yaml = "storage:\n  pool_size: \(value)\n"
        if accepted {
            #expect(try load(yaml).config.storage.poolSize == Int(value))
        } else {
            #expect(problems(yaml).map(\.keyPath) == ["storage.pool_size"])
        }
    }

    /// An instance_timeout and the problem it gives (nil: accepted).
    static let timeouts: [(value: String, problem: String?)] = [
        ("1s", "must be at least 2s"), ("1999ms", "must be at least 2s"), ("0s", "must be at least 2s"), ("2s", nil), ("2m", nil),
        ("15", "is not a duration"), ("soon", "is not a duration"),
    ]

    @Test("storage.instance_timeout must be a duration of at least 2s", arguments: timeouts)
    func instanceTimeout(value: String, problem: String?) throws {
        let yaml = "storage:\n  instance_timeout: \(value)\n"
        if let problem {
            let found = problems(yaml)
            #expect(found.map(\.keyPath) == ["storage.instance_timeout"])
            #expect(found.first?.message.contains(problem) == true, "\(found)")
        } else {
            #expect(try load(yaml).config.storage.instanceTimeout == ConfigDuration(parsing: value))
        }
    }

    @Test("with storage.url set, a path or synchronous given in the file or environment draws an 'ignored' warning")
    func sqliteKeysIgnored() throws {
        let given = try load("storage:\n  url: \"\(Self.url)\"\n  path: ./data/r.sqlite\n",
                             env: ["ROUNDUP_STORAGE_SYNCHRONOUS": "full"])
        #expect(storageWarnings(given) == ["storage.path", "storage.synchronous"])
        #expect(given.warnings.first { $0.keyPath == "storage.path" }?.message.contains("ignored") == true)
        for warning in given.warnings { #expect(!warning.description.contains(Self.password) && !warning.description.contains(Self.host)) }
        // Left at their defaults, they draw none, and PostgreSQL's own keys draw none either.
        let defaults = try load("storage:\n  url: \"\(Self.url)\"\n  pool_size: 20\n  instance_timeout: 20s\n")
        #expect(storageWarnings(defaults).isEmpty)
    }

    @Test("without storage.url, a pool_size or instance_timeout given draws a 'PostgreSQL only' warning")
    func postgresKeysIgnored() throws {
        let given = try load("storage:\n  pool_size: 20\n", env: ["ROUNDUP_STORAGE_INSTANCE_TIMEOUT": "30s"])
        #expect(storageWarnings(given) == ["storage.pool_size", "storage.instance_timeout"])
        #expect(given.warnings.first { $0.keyPath == "storage.pool_size" }?.message.contains("PostgreSQL only") == true)
        #expect(storageWarnings(try load("storage:\n  path: ./data/r.sqlite\n  synchronous: full\n")).isEmpty)
    }

    @Test("the printed config shows storage.url as the secret mask: neither password nor host appears")
    func effectiveYAMLMasksURL() throws {
        let config = try load("", env: ["ROUNDUP_STORAGE_URL": Self.url]).config
        let yaml = config.effectiveYAML()
        #expect(!yaml.contains(Self.password))
        #expect(!yaml.contains(Self.host))
        let printed = try #require(try Yams.load(yaml: yaml) as? [String: Any])
        let storage = try #require(printed["storage"] as? [String: Any])
        #expect(storage["url"] as? String == RoundupConfig.secretMask)
        #expect(storage["pool_size"] as? Int == 10)
        #expect(storage["instance_timeout"] as? String == "15s")
        #expect(ConfigLoader.secretKeys.contains("storage.url"))
        // Printing the config value itself masks the password too.
        #expect(!"\(config)".contains(Self.password))
        #expect(!String(reflecting: config).contains(Self.password))
    }

    @Test("roundup config check prints storage.url masked and names it in a warning without showing it")
    func configCheck() async throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("roundup.yaml")
        try Data("storage:\n  path: ./data/r.sqlite\n".utf8).write(to: file)

        let ok = try await runRoundup(["config", "check", "--config", file.path], in: dir, environment: ["ROUNDUP_STORAGE_URL": Self.url])
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(ok.stdout.contains(RoundupConfig.secretMask))
        #expect(ok.stdout.contains("storage.url from ROUNDUP_STORAGE_URL"))
        #expect(ok.stderr.contains("storage.path"))
        for output in [ok.stdout, ok.stderr] {
            #expect(!output.contains(Self.password))
            #expect(!output.contains(Self.host))
        }

        let bad = try await runRoundup(["config", "check", "--config", file.path], in: dir,
                                       environment: ["ROUNDUP_STORAGE_URL": "postgres://roundup:\(Self.password)@\(Self.host)/roundup?sslmode=yes"])
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("storage.url"))
        for output in [bad.stdout, bad.stderr] {
            #expect(!output.contains(Self.password))
            #expect(!output.contains(Self.host))
        }
    }
}
