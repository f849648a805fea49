import Foundation
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

@testable import Roundup

/// Crash safety with the real `roundup serve` binary: SIGKILL at
/// seeded random points — mid-ingest, mid-flush, mid-token-fetch — then a restart on the same
/// database. The fake WeChat and IM servers run in the test process and outlive the kills, so
/// their counters see every run. Set `ROUNDUP_CRASH_SEED` to replay a printed seed.
@Suite("Crash safety of roundup serve", .serialized)
struct CrashSafetyTests {
    // MARK: 1. ingest

    @Test("SIGKILL mid-burst of signed callbacks: after restart every acknowledged MsgKey is stored exactly once, nothing is duplicated, and new callbacks are accepted")
    func ingestCrash() async throws {
        var random = CrashSeed.generator(for: "ingest")
        let rig = try ServeRig(sendConcurrency: 4)
        defer { rig.remove() }
        try await rig.withFakes { rig in
            let users = 250
            let perRound = 400
            var acked: Set<String> = []
            var issued: Set<String> = []
            var serve = try await rig.start()
            var port = try await serve.waitUntilListening()
            for round in 0..<3 {
                let killAt = Int.random(in: perRound / 10...perRound * 7 / 10, using: &random)
                print("crash-safety ingest round \(round): seed \(CrashSeed.value), SIGKILL after \(killAt) acknowledged callbacks")
                let result = await CrashCallbackBurst(
                    port: port, token: ServeRig.callbackToken, round: round, total: perRound, users: users, connections: 8
                ).run(killing: serve.pid, afterAcks: killAt)
                await serve.waitUntilDead()
                #expect(serve.wasKilled, "round \(round): serve was not SIGKILLed (seed \(CrashSeed.value))")
                #expect(result.acked.count >= killAt, "round \(round): only \(result.acked.count) callbacks acknowledged (seed \(CrashSeed.value))")
                // Mid-burst: the kill stopped some callbacks from being acknowledged.
                #expect(result.acked.count < perRound && (result.failed > 0 || result.issued.count < perRound),
                        "round \(round): the kill did not land mid-burst (seed \(CrashSeed.value))")
                #expect(!serve.output.contains("callback shed"), "round \(round): a callback was shed (seed \(CrashSeed.value))")
                acked.formUnion(result.acked)
                issued.formUnion(result.issued)

                serve = try await rig.start()
                port = try await serve.waitUntilListening()
                try rig.expectIngestIntact(acked: acked, issued: issued, users: users, context: "after round \(round)")
            }

            // The restarted service takes new callbacks, and a replay of old keys stores nothing twice.
            let replayed = Array(acked.sorted().prefix(20))
            let client = SignedCallbackClient(port: port, token: ServeRig.callbackToken, connections: 4)
            var fresh: [String] = []
            for i in 0..<20 {
                let key = "crash-after-\(i)"
                fresh.append(key)
                #expect(await client.c2c(from: "t1", to: "p\(i)", key: key, text: "复课通知 \(i)"), "a new callback after the restarts was not acknowledged")
            }
            for key in replayed {
                let index = Int(key.split(separator: "-").last ?? "") ?? 0
                #expect(await client.c2c(from: "t1", to: "p\(index % users)", key: key, text: "重放"), "a replayed callback was not acknowledged")
            }
            client.close()
            try rig.expectIngestIntact(acked: acked.union(fresh), issued: issued.union(fresh), users: users, context: "after new callbacks and replays")
            await serve.terminate()
            #expect(serve.exitStatus == 0, "the last serve did not shut down cleanly on SIGTERM")
        }
    }

    // MARK: 2. flush

    @Test("SIGKILL while subscribe sends are in flight (twice): those digests become in_doubt and are never resent; the rest are sent once after restart")
    func flushCrash() async throws {
        var random = CrashSeed.generator(for: "flush")
        let rig = try ServeRig(sendConcurrency: 4)
        defer { rig.remove() }
        let users = 48
        try rig.seedUsers(users, credits: 1)
        try await rig.withFakes { rig in
            await rig.wechat.script.setSendLatency(.milliseconds(250))
            var serve = try await rig.start()
            let port = try await serve.waitUntilListening()
            try await rig.postOneMessageEach(users: users, port: port, messages: 2)
            let flush = try await runRoundup(["flush", "--all", "--config", rig.configFile.path], in: rig.dir)
            #expect(flush.status == 0, "roundup flush --all failed: \(flush.stderr)")

            var inFlightAtKill: Set<Int64> = []
            for round in 0..<2 {
                let before = await rig.wechat.script.sendAttempts
                let target = before + Int.random(in: 2...8, using: &random)
                print("crash-safety flush round \(round): seed \(CrashSeed.value), SIGKILL at send attempt \(target)")
                let reached = try await crashPoll(timeout: 60) { await rig.wechat.script.sendAttempts >= target }
                #expect(reached, "round \(round): the sends never reached attempt \(target) (seed \(CrashSeed.value))")
                await serve.sigkill()
                #expect(serve.wasKilled)
                let sending = try rig.digests(in: [.sending])
                #expect(!sending.isEmpty, "round \(round): no digest was in `sending` at the kill (seed \(CrashSeed.value))")
                inFlightAtKill.formUnion(sending.map(\.id))

                serve = try await rig.start()
                _ = try await serve.waitUntilListening()
                // The engine recovers interrupted sends as it starts; nothing that was `sending` may
                // end anywhere but in_doubt.
                let ids = inFlightAtKill
                let recovered = try await crashPoll(timeout: 30) {
                    try rig.digests(in: [.sending]).allSatisfy { !ids.contains($0.id) }
                }
                #expect(recovered, "round \(round): digests in flight at the kill are still `sending` after the restart")
                let states = try rig.digests(in: DigestState.allCases).filter { ids.contains($0.id) }
                #expect(states.allSatisfy { $0.state == .inDoubt }, "round \(round): \(states.filter { $0.state != .inDoubt }.map { "#\($0.id) \($0.state)" })")
                #expect(try await crashPoll(timeout: 10) { serve.output.contains("in_doubt") }, "the restarted serve did not log the recovered in_doubt digests")
            }

            let settled = try await crashPoll(timeout: 60) {
                try rig.digests(in: [.open, .held, .sending]).isEmpty
            }
            #expect(settled, "digests were still open or sending a minute after the last restart")
            // The fake finishes the sends it received before the kills; wait until each got its answer.
            let quiet = try await crashPoll(timeout: 20) {
                let s = rig.wechat.script
                return await s.sendAttempts == s.accepted.count
            }
            #expect(quiet, "the fake WeChat refused some sends")
            try await rig.expectEachDigestOnce(users: users, inDoubt: inFlightAtKill)
            await serve.terminate()
        }
    }

    // MARK: 3. token refresh

    @Test("SIGKILL while the access-token fetch is in flight: after restart every digest is sent exactly once")
    func tokenFetchCrash() async throws {
        var random = CrashSeed.generator(for: "token")
        let rig = try ServeRig(sendConcurrency: 4)
        defer { rig.remove() }
        let users = 12
        try rig.seedUsers(users, credits: 1)
        try await rig.withFakes { rig in
            await rig.wechat.script.setTokenLatency(.seconds(4))
            var serve = try await rig.start()
            let port = try await serve.waitUntilListening()
            try await rig.postOneMessageEach(users: users, port: port, messages: 1)
            #expect(try await runRoundup(["flush", "--all", "--config", rig.configFile.path], in: rig.dir).status == 0)

            // The kill point: the serve holds a connection to the fake WeChat while no send has
            // reached it, so the token fetch (answered only after 4 s) is in flight. Where the
            // connection table cannot be read, presence confirmation (just before the sends) stands in.
            let wechatPort = rig.wechatPort
            let fetching = try await crashPoll(timeout: 60) {
                if let connected = tcpConnectionEstablished(toLoopbackPort: wechatPort) {
                    guard connected else { return false }
                    return await rig.wechat.script.sendAttempts == 0
                }
                return await rig.im.state.onlineStatusCalls >= 1
            }
            #expect(fetching, "the engine never started fetching the access token")
            let delay = Int.random(in: 0...1_500, using: &random)
            print("crash-safety token: seed \(CrashSeed.value), SIGKILL \(delay) ms into a 4 s token fetch")
            try await Task.sleep(for: .milliseconds(delay))
            let attemptsBeforeKill = await rig.wechat.script.sendAttempts
            await serve.sigkill()
            #expect(attemptsBeforeKill == 0, "a send reached WeChat before the token did (seed \(CrashSeed.value))")
            // The fetch the dead process started still arrives: proof the kill fell inside it.
            let fetched = try await crashPoll(timeout: 15) { await rig.wechat.script.tokenFetches >= 1 }
            #expect(fetched, "no token fetch was in flight at the kill (seed \(CrashSeed.value))")
            let sendingAtKill = try rig.digests(in: [.sending])
            print("crash-safety token: \(sendingAtKill.count) digest(s) were `sending` at the kill")
            // The token comes before `sending` is committed, so a kill inside the fetch leaves none.
            #expect(sendingAtKill.isEmpty, "\(sendingAtKill.count) digest(s) were `sending` with no token yet (seed \(CrashSeed.value))")

            await rig.wechat.script.setTokenLatency(.zero)
            serve = try await rig.start()
            _ = try await serve.waitUntilListening()
            let settled = try await crashPoll(timeout: 60) { try rig.digests(in: [.open, .held, .sending]).isEmpty }
            #expect(settled, "digests were still open or sending a minute after the restart")
            let quiet = try await crashPoll(timeout: 20) {
                let s = rig.wechat.script
                return await s.sendAttempts == s.accepted.count
            }
            #expect(quiet)
            let script = rig.wechat.script
            #expect(await script.overlaps == 0)
            let perOpenID = Dictionary(grouping: await script.accepted, by: \.touser).mapValues(\.count)
            let notOnce = (0..<users).map { "o_u\($0)" }.filter { perOpenID[$0] != 1 }
            #expect(notOnce == [], "these openids did not receive exactly one send: \(notOnce.map { "\($0)×\(perOpenID[$0] ?? 0)" })")
            let all = try rig.digests(in: DigestState.allCases)
            #expect(all.count == users)
            let inDoubt = all.filter { $0.state == .inDoubt }.map(\.imUserID)
            // A digest whose WeChat call never started (it waited for the token) was not in doubt:
            // nothing reached WeChat, so it must be sent, not parked as in_doubt.
            #expect(inDoubt == [], """
                \(inDoubt.count) digest(s) were marked `sending` before the engine had an access token, so the kill during \
                the token fetch left them in_doubt and they were never sent (the sender marked `sending` before \
                SubscribeSender fetches the token); fetch the token before markSending (seed \(CrashSeed.value))
                """)
            #expect(all.allSatisfy { $0.state == .sent }, "\(all.filter { $0.state != .sent }.map { "\($0.imUserID): \($0.state)" })")
            await serve.terminate()
        }
    }
}

// MARK: - the rig: a temp dir, a config pointing at the fakes, and `serve` runs over one database

/// The seed of every random kill point, printed by each test; `ROUNDUP_CRASH_SEED` replays one.
enum CrashSeed {
    static let value: UInt64 = ProcessInfo.processInfo.environment["ROUNDUP_CRASH_SEED"].flatMap { UInt64($0) }
        ?? UInt64.random(in: 1...UInt64(UInt32.max))

    /// A generator for one test, so the tests' draws do not depend on their order.
    static func generator(for test: String) -> SplitMix64 {
        SplitMix64(seed: test.utf8.reduce(value) { ($0 &* 31) &+ UInt64($1) })
    }
}

/// Polls `condition` until it holds or `timeout` seconds pass; true when it held.
func crashPoll(timeout: Double, _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

/// Whether some socket on this host has an established TCP connection to 127.0.0.1:`port`, read
/// from Linux's `/proc/net/tcp`; nil where that table does not exist.
private func tcpConnectionEstablished(toLoopbackPort port: Int) -> Bool? {
    guard let handle = FileHandle(forReadingAtPath: "/proc/net/tcp") else { return nil }
    defer { try? handle.close() }
    let table = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
    let remote = "0100007F:" + String(format: "%04X", port)
    // Columns: sl, local_address, rem_address, st (01 = ESTABLISHED), …
    return table.split(separator: "\n").dropFirst().contains { line in
        let fields = line.split(separator: " ")
        return fields.count > 3 && fields[2] == remote && fields[3] == "01"
    }
}

/// What one burst recorded: keys sent, keys acknowledged, requests that failed.
private actor CrashBurstLedger {
    private let total: Int
    private(set) var next = 0
    private(set) var issued: [String] = []
    private(set) var acked: Set<String> = []
    private(set) var failed = 0
    private(set) var killed = false

    init(total: Int) { self.total = total }

    /// The next index to send, or nil once the burst is over or the process was killed.
    func take() -> Int? {
        guard !killed, next < total else { return nil }
        defer { next += 1 }
        return next
    }

    func issue(_ key: String) { issued.append(key) }

    /// Records an acknowledgement and returns how many there are now.
    func ack(_ key: String) -> Int {
        acked.insert(key)
        return acked.count
    }

    func fail() { failed += 1 }
    func markKilled() { killed = true }
}

/// A burst of unique callbacks from several concurrent connections that SIGKILLs the service
/// the moment the chosen number of acknowledgements has come back.
private struct CrashCallbackBurst {
    let port: Int
    let token: String
    let round: Int
    let total: Int
    let users: Int
    let connections: Int

    struct Result {
        var issued: Set<String>
        var acked: Set<String>
        var failed: Int
    }

    func run(killing pid: Int32, afterAcks killAt: Int) async -> Result {
        let ledger = CrashBurstLedger(total: total)
        let client = SignedCallbackClient(port: port, token: token, connections: connections)
        let round = round, users = users
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<connections {
                group.addTask {
                    while let i = await ledger.take() {
                        let key = "crash-\(round)-\(i)"
                        await ledger.issue(key)
                        let ok = await client.c2c(from: "t\(i % 5)", to: "p\(i % users)", key: key, text: "第\(round)轮第\(i)条消息")
                        guard ok else {
                            await ledger.fail()
                            continue
                        }
                        if await ledger.ack(key) == killAt {
                            kill(pid, SIGKILL)
                            await ledger.markKilled()
                        }
                    }
                }
            }
        }
        if await !ledger.killed { kill(pid, SIGKILL) }
        client.close()
        return Result(issued: Set(await ledger.issued), acked: await ledger.acked, failed: await ledger.failed)
    }
}
