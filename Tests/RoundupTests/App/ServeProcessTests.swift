import Foundation
import Testing

@testable import Roundup

/// `roundup serve` as a real process (SPEC §5.9): one owner per database, a stale lease taken
/// over after SIGKILL, CLI commands beside it, graceful SIGTERM.
@Suite("roundup serve process", .serialized)
struct ServeProcessTests {
    /// A started `serve` whose stderr goes to a file.
    struct Server {
        let process: Process
        let log: URL

        var stderr: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

        /// Waits until the log says it listens (or the process ends).
        func waitUntilListening(timeout: TimeInterval = 60) -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if stderr.contains("listening") { return true }
                if !process.isRunning { return false }
                Thread.sleep(forTimeInterval: 0.05)
            }
            return false
        }
    }

    func start(in dir: URL, name: String) throws -> Server {
        let log = dir.appendingPathComponent("\(name).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let process = Process()
        process.executableURL = TestSupport.roundupBinary
        process.arguments = ["serve"]
        process.currentDirectoryURL = dir
        process.environment = ["PATH": "/usr/bin:/bin", "HOME": dir.path, "ROUNDUP_SERVER_PORT": "0"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: log)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return Server(process: process, log: log)
    }

    @Test("a second serve on the same database is refused naming the owner, also after the owner was SIGKILLed, and CLI commands work beside it")
    func singleOwner() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let first = try start(in: dir, name: "first")
        defer { if first.process.isRunning { first.process.terminate() } }
        #expect(first.waitUntilListening())

        let second = try runRoundup(["serve"], in: dir, environment: ["ROUNDUP_SERVER_PORT": "0"])
        #expect(second.status == 1)
        #expect(second.stderr.contains("another roundup serve (pid \(first.process.processIdentifier)) owns"))

        #expect(try runRoundup(["users", "bind", "p1", "o_p1"], in: dir).status == 0)
        #expect(try runRoundup(["users", "list", "--json"], in: dir).stdout.contains("o_p1"))

        kill(first.process.processIdentifier, SIGKILL)
        first.process.waitUntilExit()
        let third = try start(in: dir, name: "third")
        #expect(third.waitUntilListening())
        third.process.terminate()
        third.process.waitUntilExit()
        #expect(third.process.terminationStatus == 0)
    }
}

@Suite("Config reload")
struct ConfigReloadTests {
    @Test("a changed digest.window re-times open digests; an invalid file keeps the config in force")
    func reload() async throws {
        let h = try ServiceHarness()
        defer { h.remove() }
        let file = h.dir.appendingPathComponent("roundup.yaml")
        try "digest:\n  window: 10m\n".write(to: file, atomically: true, encoding: .utf8)
        let loader = ConfigLoader(environment: [:])
        let reloader = ConfigReloader(path: file.path, loader: loader, live: h.runtime.config, engine: h.runtime.engine, store: h.store,
                                      metrics: h.runtime.metrics, logger: h.runtime.logger, clock: h.clock)
        _ = await h.runtime.ingestor.handle(.c2cAfterSend(IMC2CMessage(
            from: "t", to: "p", msgSeq: 1, msgRandom: 1, msgTime: 1, msgKey: "k", msgID: nil, onlineOnly: false, sendMsgResult: 0,
            elements: [.text("hi")], cloudCustomData: nil, eventTime: nil)), optPlatform: "RESTAPI")
        let start = Timestamp(ServiceHarness.start)
        #expect(try h.store.activeDigest(for: "p")?.dueAt == start + 600_000)

        try "digest:\n  window: 2m\n".write(to: file, atomically: true, encoding: .utf8)
        #expect(reloader.reloadIfChanged())
        #expect(h.runtime.config.snapshot.digest.policy.window == .minutes(2))
        let digest = try #require(try h.store.activeDigest(for: "p"))
        #expect(digest.dueAt == start + 120_000)
        #expect(try h.store.digestLog(digest.id).last?.kind == "retimed")

        try "digest:\n  window: soon\n".write(to: file, atomically: true, encoding: .utf8)
        #expect(!reloader.reloadIfChanged())
        #expect(h.runtime.config.snapshot.digest.policy.window == .minutes(2))
        #expect(h.runtime.metrics.exposition().contains(#"roundup_config_reloads_total{outcome="failure"} 1"#))
    }
}
