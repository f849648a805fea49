import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import Roundup

/// `roundup demo --postgres URL`, run as a newcomer runs it: the command as a subprocess, which
/// starts its own two `roundup serve` processes on a fresh database and kills one of them. One
/// test at a time: each demo is three busy processes, and several at once beside the rest of the
/// suite slowed unrelated tests past their client timeouts.
@Suite("Demo on PostgreSQL", .serialized)
struct ClusterDemoTests {
    @Test("roundup demo --postgres moves SQLite over, kills an instance mid-flush, and every check it prints holds")
    func killsOneAndLosesNothing() async throws {
        guard let url = try await PostgresTestServer.freshDatabaseURL() else {
            print("skipped: \(PostgresTestServer.skipReason ?? "no PostgreSQL server")")
            return
        }
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let result = try await runRoundup(["demo", "--postgres", url, "--json"], in: dir, timeout: 240)
        await PostgresTestServer.dropDatabase(url)
        try #require(result.status == 0, "roundup demo --postgres exited \(result.status): \(result.stderr.suffix(3_000))")
        let summary = try parseJSON(result.stdout)
        let checks = try #require(summary["checks"] as? [[String: Any]])
        #expect(checks.count == 5 && checks.allSatisfy { $0["ok"] as? Bool == true }, "\(checks)")
        #expect(summary["ok"] as? Bool == true)

        let users = ClusterDemo.users, callbacks = users + ClusterDemo.usersBeforeMove
        #expect(summary["callbacks_acknowledged"] as? Int == callbacks)
        #expect(summary["messages_stored_once"] as? Int == callbacks)
        #expect(summary["digests"] as? Int == users)
        let inFlight = try #require(summary["in_flight_at_kill"] as? Int)
        #expect(inFlight > 0, "the instance was not killed with a send in flight")
        #expect(summary["digests_in_doubt"] as? Int == inFlight)
        #expect(summary["digests_sent"] as? Int == users - inFlight)
        #expect(summary["taken_over"] as? Int == summary["claimed_not_started_at_kill"] as? Int)
        #expect(summary["openids_sent_twice"] as? Int == 0)
        let sends = try #require(summary["wechat_sends"] as? Int)
        #expect(sends >= users - inFlight && sends <= users)
        // The copy carried every row of the SQLite phase: 200 users, their credits and events, 100 digests and messages.
        #expect((summary["rows_copied"] as? Int ?? 0) >= 4 * users)
        let doubtedAfter = try #require(summary["in_doubt_after_seconds"] as? Double, "the killed instance's sends never became in_doubt")
        #expect(doubtedAfter < 3 * Double(ClusterDemo.instanceTimeout),
                "in_doubt only \(doubtedAfter) s after the kill, with instance_timeout \(ClusterDemo.instanceTimeout) s")
        let killed = try #require(summary["killed_pid"] as? Int)
        #expect(kill(Int32(killed), 0) != 0, "the killed instance \(killed) is still running")
        // Progress goes to stderr with --json, one numbered line per step.
        for step in ["1. one instance on SQLite", "2. roundup storage copy", "3. two roundup serve processes", "4. SIGKILL", "5. "] {
            #expect(result.stderr.contains(step), "stderr lacks \"\(step)\": \(result.stderr)")
        }
    }

    @Test("roundup demo --postgres refuses a database that is not empty before it starts, saying so, and leaves it as it was")
    func refusesANonEmptyDatabase() async throws {
        guard let url = try await PostgresTestServer.freshDatabaseURL() else {
            print("skipped: \(PostgresTestServer.skipReason ?? "no PostgreSQL server")")
            return
        }
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // Roundup data already there: one bound user, as a second run of the demo would find.
        var settings = StorageSettings()
        settings.url = try PostgresURL(parsing: url)
        settings.poolSize = 1
        let store = try RoundupStore.open(settings)
        try await store.write { tx in _ = try tx.updateUser("keep_me", UserUpdate(openid: .set("o_keep_me")), now: Timestamp(Date())) }
        store.postgres?.shutdown()
        let result = try await runRoundup(["demo", "--postgres", url], in: dir, timeout: 120)
        let left = try await PostgresTestServer.psql(url, ["SELECT im_user_id FROM users"])
        await PostgresTestServer.dropDatabase(url)
        #expect(result.status == 1, "exit \(result.status): \(result.stderr)")
        #expect(result.stderr.contains("already holds Roundup data") && result.stderr.contains("needs an empty database"), "\(result.stderr)")
        #expect(!result.stderr.contains("\n    at "), "a stack trace: \(result.stderr)")
        #expect(!result.stdout.contains("1. one instance on SQLite"), "the demo ran its first step before refusing: \(result.stdout)")
        #expect(left.stdout.split(separator: "\n") == ["keep_me"], "the demo changed the database it refused: \(left.stdout) \(left.stderr)")
    }

    @Test("Ctrl-C during roundup demo --postgres takes its two serve processes with it")
    func interruptStopsTheInstances() async throws {
        guard let url = try await PostgresTestServer.freshDatabaseURL() else {
            print("skipped: \(PostgresTestServer.skipReason ?? "no PostgreSQL server")")
            return
        }
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let log = dir.appendingPathComponent("demo.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let demo = Process()
        demo.executableURL = TestSupport.roundupBinary
        demo.arguments = ["demo", "--postgres", url]
        demo.currentDirectoryURL = dir
        demo.environment = ["PATH": "/usr/bin:/bin", "HOME": dir.path]
        let handle = try FileHandle(forWritingTo: log)
        demo.standardOutput = handle
        demo.standardError = handle
        demo.standardInput = FileHandle.nullDevice
        try demo.run()
        try? handle.close()
        defer { if demo.isRunning { kill(demo.processIdentifier, SIGKILL) } }

        // Step 3 names the two serve processes by pid.
        var pids: [Int32] = []
        _ = try await poll(timeout: 120) {
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            guard let line = text.split(separator: "\n").first(where: { $0.contains("3. two roundup serve processes") }) else { return false }
            pids = line.matches(of: /pid (\d+)/).compactMap { Int32($0.output.1) }
            return true
        }
        try #require(pids.count == 2, "the demo never said which serve processes it started: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
        kill(demo.processIdentifier, SIGINT)
        _ = try await poll(timeout: 30) { !demo.isRunning }
        #expect(!demo.isRunning, "the demo did not exit on SIGINT")
        if !demo.isRunning { #expect(demo.terminationStatus == 128 + SIGINT, "exit status \(demo.terminationStatus)") }
        // Gone, or a zombie waiting for init to reap it: either way no longer running.
        func running(_ pid: Int32) -> Bool {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let state = stat.split(separator: ")").last?.split(separator: " ").first else { return false }
            return state != "Z" && state != "X"
        }
        let stopped = try await poll(timeout: 10) { pids.allSatisfy { !running($0) } }
        #expect(stopped, "serve processes \(pids.filter(running)) outlived the interrupted demo")
        for pid in pids where running(pid) { kill(pid, SIGKILL) }
        await PostgresTestServer.dropDatabase(url)
    }

    @Test("roundup demo --postgres with a URL that is not PostgreSQL's exits 2 naming the option")
    func badURL() async throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let result = try await runRoundup(["demo", "--postgres", "mysql://root@127.0.0.1/db"], in: dir, timeout: 60)
        #expect(result.status == 2, "exit \(result.status): \(result.stderr)")
        #expect(result.stderr.contains("--postgres"), "\(result.stderr)")
        let both = try await runRoundup(["demo", "--postgres", "postgres://u@127.0.0.1/db", "--trace", "x.jsonl"], in: dir, timeout: 60)
        #expect(both.status == 2 && both.stderr.contains("--trace"), "exit \(both.status): \(both.stderr)")
    }
}
