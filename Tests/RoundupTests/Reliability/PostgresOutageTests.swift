import Foundation
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

@testable import Roundup

/// A PostgreSQL outage, made by cutting a TCP proxy between `roundup serve` and the server: every
/// callback is still answered within IM's 2 s budget and counted `shed`, `/healthz` answers 503,
/// and once the database is reachable again ingest goes on by itself.
@Suite("PostgreSQL outage", .serialized)
struct PostgresOutageTests {
    static let burst = 40

    @Test("while the database is unreachable callbacks are shed within 2 s and /healthz is 503; afterwards ingest recovers")
    func outage() async throws {
        guard let url = try await PostgresTestServer.freshDatabaseURL() else { return }
        let server = try PostgresURL(parsing: url)
        let proxy = TCPProxy(targetPort: server.port)
        let proxyPort = try await proxy.start()
        var viaProxy = server
        viaProxy.port = proxyPort
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let serve = try await ServeProcess.startSigned(
            in: dir, callbackToken: OverloadTests.token,
            storage: """
                  url: "postgres://\(viaProxy.user)@127.0.0.1:\(proxyPort)/\(viaProxy.database)?sslmode=disable"
                  pool_size: 4
                """,
            logLevel: "debug")
        let port = try await serve.waitUntilListening()
        let client = SignedCallbackClient(port: port, token: OverloadTests.token, connections: Self.burst)
        defer { client.close() }
        #expect(await client.c2c(from: "t", to: "p_warm", key: "warm", text: "x"), "the first callback was not acknowledged")
        #expect(try await Self.health(port) == 200)

        await proxy.cut()
        let acknowledged = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<Self.burst {
                group.addTask { await client.c2c(from: "t", to: "p\(i)", key: "outage-\(i)", text: "x") }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        let during = try await OverloadTests.metrics(port: port)
        let healthDuring = try await Self.health(port)

        #expect(acknowledged == Self.burst, "IM's chat must never be blocked by Roundup")
        let answered = OverloadTests.value(during, "roundup_callback_seconds_count")
        let withinBudget = OverloadTests.value(during, #"roundup_callback_seconds_bucket{le="2.0"}"#)
        #expect(answered == Double(Self.burst + 1))
        #expect(withinBudget == answered, "\(Int(answered - withinBudget)) callback(s) took longer than 2 s")
        #expect(OverloadTests.value(during, OverloadTests.outcome("shed")) == Double(Self.burst))
        #expect(healthDuring == 503)

        try await proxy.start()
        var recovered = false
        for i in 0..<40 where !recovered {
            let acked = await client.c2c(from: "t", to: "pafter", key: "after-\(i)", text: "x")
            let stored = OverloadTests.value(try await OverloadTests.metrics(port: port), OverloadTests.outcome("stored"))
            recovered = acked && stored >= 2
            if !recovered { try await Task.sleep(for: .milliseconds(250)) }
        }
        #expect(recovered, "ingest did not recover within 10 s of the database coming back")
        #expect(try await Self.health(port) == 200)
        client.close()
        serve.process.terminate()
        let deadline = Date().addingTimeInterval(30)
        while serve.process.isRunning, Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        let diagnosis = serve.process.isRunning ? await Self.diagnoseStuckStop(serve, url: url) : ""
        await serve.terminate()
        // It once hung here about one run in four: a statement sent on a connection the server had
        // closed during the outage was never failed by PostgresNIO, so the engine thread waiting
        // for it, and the stop waiting on that thread, waited for ever. `PostgresTransaction`
        // now refuses a closed connection and its watchdog fails the wait (`closedConnectionFails`);
        // 22 runs in a row then stopped cleanly. Should it hang again, the diagnosis says where.
        #expect(serve.exitStatus == 0, "serve did not stop cleanly:\n\(serve.output.suffix(2_000))\n\(diagnosis)")
        await proxy.cut()
        print("postgres outage: \(Int(withinBudget)) of \(Int(answered)) answered within 2 s; /healthz \(healthDuring) during the outage")
    }

    /// What a serve that does not stop is doing: its threads' stacks (the frames of Roundup and
    /// PostgresNIO, from gdb when it is installed) and the database's sessions.
    static func diagnoseStuckStop(_ serve: ServeProcess, url: String) async -> String {
        var out = "diagnosis of pid \(serve.pid), still running 30 s after SIGTERM:\n"
        let gdb = URL(fileURLWithPath: "/usr/bin/gdb")
        if FileManager.default.isExecutableFile(atPath: gdb.path),
            let dump = try? await runTool(gdb, ["-p", "\(serve.pid)", "-batch", "-ex", "thread apply all bt"], in: URL(fileURLWithPath: "/"), timeout: 60)
        {
            out += dump.stdout.split(separator: "\n")
                .filter { $0.hasPrefix("Thread ") || $0.contains("Roundup") || $0.contains("PostgresNIO") || $0.contains("wait") }
                .map { String($0.prefix(200)) }.joined(separator: "\n")
        } else {
            out += "(no gdb: no thread stacks)"
        }
        let sessions = try? await PostgresTestServer.psql(url, ["""
            SELECT pid, state, wait_event_type, wait_event, client_port, now() - state_change, left(query, 80)
            FROM pg_stat_activity WHERE datname = current_database()
            """])
        out += "\nsessions (pid, state, wait, client port, since, query):\n" + (sessions.map { $0.stdout + $0.stderr } ?? "(psql failed)")
        return out
    }

    static func health(_ port: Int) async throws -> Int {
        let (_, response) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/healthz")!)
        return (response as? HTTPURLResponse)?.statusCode ?? 0
    }
}
