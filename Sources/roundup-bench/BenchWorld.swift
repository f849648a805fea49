import Foundation
import Logging
import Roundup
import Synchronization

/// The PostgreSQL server the benchmark runs on (`--postgres URL`), or nil for SQLite.
let benchPostgresServer = Mutex<PostgresURL?>(nil)

/// What every scenario runs in: a temporary folder, the fake WeChat and IM servers from `Demo/`
/// on loopback, and a config that points the service at them.
struct BenchWorld: Sendable {
    let dir: URL
    let wechat: FakeWeChatServer
    let im: FakeIMServer
    let wechatBase: String
    let imBase: String
    let logger: Logger
    /// The scenario's own PostgreSQL database, created for it and dropped afterwards; nil on SQLite.
    let postgres: PostgresURL?

    var databasePath: String { dir.appendingPathComponent("roundup.sqlite").path }

    /// Runs `body` with both fakes up and a fresh temporary folder, removed afterwards.
    static func with<T: Sendable>(logger: Logger, _ body: (BenchWorld) async throws -> T) async throws -> T {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("roundup-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(at: dir) }
        let wechat = FakeWeChatServer()
        let im = FakeIMServer()
        var database: PostgresURL?
        if let server = benchPostgresServer.withLock({ $0 }) {
            let name = "roundup_bench_\(UInt32.random(in: 0...UInt32.max))"
            try await PostgresAdmin.createDatabase(name, on: server)
            database = server
            database?.database = name
        }
        do {
            let result = try await wechat.withRunning { wechatBase in
                try await im.withRunning { imBase in
                    try await body(BenchWorld(dir: dir, wechat: wechat, im: im, wechatBase: wechatBase, imBase: imBase, logger: logger,
                                              postgres: database))
                }
            }
            if let database, let server = benchPostgresServer.withLock({ $0 }) { try? await PostgresAdmin.dropDatabase(database.database, on: server) }
            return result
        } catch {
            if let database, let server = benchPostgresServer.withLock({ $0 }) { try? await PostgresAdmin.dropDatabase(database.database, on: server) }
            throw error
        }
    }

    /// The service's config: loopback on a free port, signed callbacks, both fakes, one template,
    /// and `digest` keys as given (indented two spaces, e.g. `"  window: 10m\n"`).
    func config(digest: String = "", synchronous: String = "normal") throws -> RoundupConfig {
        var loaded = try sqliteConfig(digest: digest, synchronous: synchronous)
        if let postgres { loaded.storage.url = postgres }
        return loaded
    }

    private func sqliteConfig(digest: String, synchronous: String) throws -> RoundupConfig {
        let yaml = """
            server:
              host: 127.0.0.1
              port: 0
            storage:
              path: "\(databasePath)"
              synchronous: \(synchronous)
            \(FakeConfigYAML.wechat(wechat, baseURL: wechatBase))\
            \(FakeConfigYAML.im(im, baseURL: imBase, callbackToken: BenchIDs.callbackToken))\
            \(FakeConfigYAML.template(id: BenchIDs.templateID))\
            digest:
            \(digest.isEmpty ? "  window: 10m\n" : digest)
            """
        return try ConfigLoader(environment: [:]).load(yaml: yaml, source: "roundup-bench").config
    }

    /// Runs the real service around `body`: the HTTP application on a free loopback port and the
    /// runtime's background services (with the send pipeline when `sending`), as `roundup serve`
    /// runs them. They stop when `body` returns or throws.
    func runService<T: Sendable>(
        _ runtime: RoundupRuntime, sending: Bool, _ body: (_ port: Int) async throws -> T
    ) async throws -> T {
        try await runtime.withBackgroundServices(sending: sending) {
            try await withLoopbackApplication(logger: logger, { onRunning in
                runtime.buildApplication(onServerRunning: onRunning)
            }, body)
        }
    }
}

/// The resident memory of this process (`/proc/self/statm`), in bytes; nil where there is none.
func residentBytes() -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return nil }
    let fields = text.split(separator: " ")
    guard fields.count >= 2, let pages = Int(fields[1]) else { return nil }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// CPU seconds this process has used so far, user and system, all threads (getrusage).
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
}

/// Seconds on a monotonic clock since `start`.
func seconds(since start: ContinuousClock.Instant) -> Double {
    let d = ContinuousClock.now - start
    return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

/// Progress for the operator watching, on stderr (stdout carries only the table or JSON).
func progress(_ line: String) {
    FileHandle.standardError.write(Data(("roundup-bench: " + line + "\n").utf8))
}
