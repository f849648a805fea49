import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// `roundup demo --postgres URL`: the way from one instance on SQLite to two on PostgreSQL, and
/// a machine failure in the middle of a flush, on this machine with the fake WeChat and IM
/// servers of the plain demo.
///
/// 1. One instance on SQLite (in this process) binds 200 parents, grants each a subscription and
///    takes a message for the first 100 of them: 100 digests open.
/// 2. The SQLite file is copied into the empty PostgreSQL database, exactly as
///    `roundup storage copy` does.
/// 3. Two `roundup serve` processes, A and B, run on that database; a message for each of the 200
///    parents goes to them in turn, as a load balancer would spread them.
/// 4. `roundup flush --all` makes every digest due. As soon as one instance has a send in flight
///    at WeChat and more claimed, the demo SIGKILLs it.
/// 5. The survivor marks the killed instance's sends in flight `in_doubt` once its heartbeat is
///    `storage.instance_timeout` old (WeChat may or may not have them: Roundup never resends one),
///    and sends everything else, the killed instance's unstarted claims included.
///
/// The closing checks read the database and the fake WeChat's record of every send.
public struct ClusterDemo: Sendable {
    /// Parents in the demo.
    public static let users = 200
    /// Parents whose first message reaches the SQLite instance, before the move.
    public static let usersBeforeMove = 100
    /// `storage.instance_timeout` of the two instances, in seconds.
    static let instanceTimeout = 5
    /// `digest.window`: nothing comes due by itself while the demo runs; `roundup flush --all` starts the flush.
    static let window = "10m"
    /// How long the fake WeChat takes to answer each send: sends are in flight long enough to be
    /// caught by the kill.
    static let sendLatency = Duration.milliseconds(100)
    /// `digest.send_concurrency` of each instance.
    static let sendConcurrency = 4

    /// The empty database to use, as given.
    public let url: String
    /// The `roundup` program, started as `roundup serve` for each instance.
    public let executable: URL
    public let logger: Logger
    let onNote: @Sendable (String) -> Void

    /// Checks that `url` parses; nothing connects yet.
    public init(url: String, executable: URL, logger: Logger, onNote: @escaping @Sendable (String) -> Void = { _ in }) throws {
        _ = try PostgresURL(parsing: url)
        self.url = url
        self.executable = executable
        self.logger = logger
        self.onNote = onNote
    }

    /// Runs the five steps and the checks.
    public func run() async throws -> ClusterDemoSummary {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("roundup-cluster-demo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(at: dir) }
        let wechat = FakeWeChatServer()
        let im = FakeIMServer()
        await wechat.script.setSendLatency(Self.sendLatency)
        return try await wechat.withRunning { wechatBase in
            try await im.withRunning { imBase in
                let fakes = Fakes(wechat: wechat, im: im, wechatBase: wechatBase, imBase: imBase)
                var run = ClusterDemoRun(demo: self, dir: dir, fakes: fakes)
                return try await run.run()
            }
        }
    }

    func note(_ line: String) { onNote(line) }
}

/// The fake remote APIs of one demo run and where they listen.
struct Fakes: Sendable {
    let wechat: FakeWeChatServer
    let im: FakeIMServer
    let wechatBase: String
    let imBase: String

    /// The config sections aiming Roundup at them.
    var yaml: String {
        FakeConfigYAML.wechat(wechat, baseURL: wechatBase, pushToken: DemoRunner.pushToken)
            + FakeConfigYAML.im(im, baseURL: imBase, callbackToken: DemoRunner.callbackToken)
            + FakeConfigYAML.template(id: DemoRunner.templateID)
    }
}

/// One run of the cluster demo.
struct ClusterDemoRun {
    let demo: ClusterDemo
    let dir: URL
    let fakes: Fakes
    let start = Date()
    private var acknowledged: [String] = []
    private var children: [ServeChild] = []

    init(demo: ClusterDemo, dir: URL, fakes: Fakes) {
        self.demo = demo
        self.dir = dir
        self.fakes = fakes
    }

    mutating func run() async throws -> ClusterDemoSummary {
        do {
            let summary = try await steps()
            for child in children { await child.stop() }
            return summary
        } catch {
            for child in children { child.signal(SIGKILL) }
            throw error
        }
    }

    private func say(_ text: String) {
        let seconds = String(format: "%.1f", Date().timeIntervalSince(start))
        demo.note("[" + String(repeating: " ", count: max(0, 5 - seconds.count)) + seconds + "s] " + text)
    }

    private static func parent(_ i: Int) -> String { "parent\(i)" }
    private static func openid(_ i: Int) -> String { openid(of: parent(i)) }
    private static func openid(of user: String) -> String { "o_" + user }

    private mutating func steps() async throws -> ClusterDemoSummary {
        var settings = StorageSettings()
        settings.url = try PostgresURL(parsing: demo.url)
        settings.poolSize = 2
        // The instances' own timeout: it says which of them `liveInstances` counts as live.
        settings.instanceTimeout = .seconds(Int64(ClusterDemo.instanceTimeout))
        let store = try RoundupStore.open(settings)
        defer { store.postgres?.shutdown() }
        // Refused now, not after the SQLite step: the copy needs an empty database.
        do {
            try await StorageCopy.requireEmptyTarget(store)
        } catch let error as StorageCopyError {
            throw ClusterDemoError.copyRefused(error.description)
        }

        // 1. SQLite.
        let sqlitePath = dir.appendingPathComponent("roundup.sqlite").path
        try await sqliteInstance(path: sqlitePath)
        say("1. one instance on SQLite: \(ClusterDemo.users) parents bound with a subscription each; "
            + "\(ClusterDemo.usersBeforeMove) of them got a message, so \(ClusterDemo.usersBeforeMove) digests are open; the instance stopped")

        // 2. The move.
        let copy: StorageCopyResult
        do {
            copy = try await StorageCopy.run(from: try SQLiteCopySource.open(path: sqlitePath), to: store, now: Timestamp(Date()))
        } catch let error as StorageCopyError {
            throw ClusterDemoError.copyRefused(error.description)
        }
        let tables = copy.tables.filter { $0.rows > 0 }.map { "\($0.table) \($0.rows)" }.joined(separator: ", ")
        say("2. roundup storage copy: \(copy.totalRows) rows into PostgreSQL (\(tables)), each table read back with the same SHA-256")

        // 3. Two instances.
        let config = dir.appendingPathComponent("roundup.yaml")
        try serveYAML().write(to: config, atomically: true, encoding: .utf8)
        for name in ["A", "B"] {
            children.append(try ServeChild.start(name: name, executable: demo.executable, config: config, dir: dir,
                                                 environment: ["ROUNDUP_STORAGE_URL": demo.url]))
        }
        var ports: [Int] = []
        for child in children { ports.append(try await child.waitUntilListening(timeout: 60)) }
        let live = try await InstanceHeartbeat.liveInstances(store)
        var ids: [String: ServeChild] = [:]
        for row in live { if let child = children.first(where: { Int($0.pid) == row.pid }) { ids[row.id] = child } }
        guard ids.count == children.count else { throw ClusterDemoError.notRegistered(live.map(\.pid)) }
        say("3. two roundup serve processes on the PostgreSQL database: "
            + zip(children, ports).map { "\($0.name) (pid \($0.pid), port \($1))" }.joined(separator: ", "))
        let clients = ports.map { DemoHTTPClient(baseURL: "http://127.0.0.1:\($0)") }
        // Eight at a time, as IM's callbacks arrive side by side.
        for first in stride(from: 0, to: ClusterDemo.users, by: 8) {
            let batch = first..<min(first + 8, ClusterDemo.users)
            let fakes = self.fakes
            let keys = try await withThrowingTaskGroup(of: String.self) { group in
                for i in batch {
                    group.addTask {
                        let key = "cluster-\(i)-b"
                        try await Self.message(to: i, through: clients[i % clients.count], key: key, fakes: fakes)
                        return key
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            acknowledged += keys
        }
        say("   a message for each of the \(ClusterDemo.users) parents, spread over A and B: \(ClusterDemo.users) digests open")
        let flush = try await ServeChild.run(["flush", "--all", "--config", config.path], executable: demo.executable, dir: dir,
                                             environment: ["ROUNDUP_STORAGE_URL": demo.url])
        guard flush.status == 0 else { throw ClusterDemoError.flushFailed(flush.output) }
        say("   roundup flush --all: every open digest due now; both instances wake and send")

        // 4. The kill.
        let victim = try await killMidFlush(store: store, ids: ids)
        let survivor = children.first { $0 !== victim.child }!
        try await Task.sleep(for: .milliseconds(300))
        let atKill = try await InstanceHeartbeat.claimedDigests(store).filter { $0.instanceID == victim.id }
        let inFlight = Set(atKill.filter { $0.state == .sending }.map(\.id))
        let unstarted = Set(atKill.filter { $0.state == .open || $0.state == .held }.map(\.id))
        say("4. SIGKILL \(victim.child.name) (pid \(victim.child.pid)) with \(inFlight.count) send\(inFlight.count == 1 ? "" : "s") in flight at WeChat "
            + "and \(unstarted.count) more digests claimed, not started")

        // 5. The takeover.
        let killedAt = Date()
        var doubtedAfter: Double?
        let settleDeadline = Date().addingTimeInterval(90)
        while Date() < settleDeadline {
            let rows = try await store.read { tx in try tx.digestSummaries(.states(DigestState.allCases, user: nil), limit: nil) }
            if doubtedAfter == nil, rows.filter({ inFlight.contains($0.id) }).allSatisfy({ $0.state == .inDoubt }) {
                doubtedAfter = Date().timeIntervalSince(killedAt)
            }
            let attempts = await fakes.wechat.script.sendAttempts, answered = await fakes.wechat.script.accepted.count
            if doubtedAfter != nil, !rows.contains(where: { [.open, .held, .sending].contains($0.state) }), attempts == answered { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        // Long enough for a wrong second send to show.
        try await Task.sleep(for: .seconds(1))
        say("5. \(survivor.name) took over: \(victim.child.name)'s sends in flight were in_doubt "
            + (doubtedAfter.map { String(format: "%.1f s", $0) } ?? "never") + " after the kill; \(survivor.name) sent the rest")
        return try await summary(store: store, copy: copy, victim: victim, survivorID: ids.first { $0.value === survivor }?.key ?? "",
                                 inFlight: inFlight, unstarted: unstarted, doubtedAfter: doubtedAfter)
    }

    // MARK: - steps

    /// Step 1: the service in this process on an SQLite file, fed over HTTP, then stopped. Its
    /// clock stands still, so nothing comes due before the move however slow the machine.
    private mutating func sqliteInstance(path: String) async throws {
        let yaml = """
            server:
              host: 127.0.0.1
              port: 0
              admin_token: "\(DemoRunner.adminToken)"
            storage:
              path: "\(path)"
            \(fakes.yaml)\
            digest:
              window: \(ClusterDemo.window)

            """
        let config = try ConfigLoader(environment: [:]).load(yaml: yaml, source: "demo").config
        let clock = ManualWallClock(Date())
        let runtime = try RoundupRuntime(config: config, clock: clock, logger: demo.logger)
        let keys = try await withLoopbackApplication(logger: demo.logger, { runtime.buildApplication(onServerRunning: $0) }) { port in
            let http = DemoHTTPClient(baseURL: "http://127.0.0.1:\(port)")
            for i in 0..<ClusterDemo.users {
                try await http.expectOK(put: true, "/admin/users/\(Self.parent(i))", json: .object([
                    ("openid", .string(Self.openid(i))), ("name", .string("家长\(i)")),
                ]), bearer: DemoRunner.adminToken)
                try await http.expectOK("/admin/credits", json: .object([
                    ("openid", .string(Self.openid(i))), ("template_id", .string(DemoRunner.templateID)), ("count", .int(1)),
                    ("idempotency_key", .string("cluster-demo-credit-\(i)")),
                ]), bearer: DemoRunner.adminToken)
            }
            var keys: [String] = []
            for i in 0..<ClusterDemo.usersBeforeMove {
                let key = "cluster-\(i)-a"
                try await http.imCallback("C2C.CallbackAfterSendMsg", DemoHTTPClient.c2cBody(
                    from: "teacher", to: Self.parent(i), key: key, seq: Int64(i), text: "明天春游，请带水壶", now: clock.now),
                    sdkAppID: fakes.im.sdkAppID, token: DemoRunner.callbackToken, now: clock.now)
                keys.append(key)
            }
            return keys
        }
        acknowledged += keys
    }

    /// The config of both `serve` processes; the database URL reaches them in the environment.
    private func serveYAML() -> String {
        """
        server:
          host: 127.0.0.1
          port: 0
          admin_token: "\(DemoRunner.adminToken)"
        storage:
          instance_timeout: \(ClusterDemo.instanceTimeout)s
          pool_size: 4
        \(fakes.yaml)\
        digest:
          window: \(ClusterDemo.window)
          send_concurrency: \(ClusterDemo.sendConcurrency)

        """
    }

    /// Posts one signed C2C callback for parent `i` through `client`; it must be acknowledged.
    private static func message(to i: Int, through client: DemoHTTPClient, key: String, fakes: Fakes) async throws {
        let now = Date()
        try await client.imCallback("C2C.CallbackAfterSendMsg", DemoHTTPClient.c2cBody(
            from: "teacher", to: parent(i), key: key, seq: Int64(1_000 + i), text: "春游改到周五", now: now),
            sdkAppID: fakes.im.sdkAppID, token: DemoRunner.callbackToken, now: now)
    }

    /// Step 4: waits (bounded) until an instance has a send in flight and at least one more
    /// digest claimed, and SIGKILLs it; after 30 s, any instance with a send in flight.
    private func killMidFlush(store: RoundupStore, ids: [String: ServeChild]) async throws -> (child: ServeChild, id: String) {
        let deadline = Date().addingTimeInterval(60)
        let relaxAt = Date().addingTimeInterval(30)
        while Date() < deadline {
            let claims = try await InstanceHeartbeat.claimedDigests(store)
            for (id, child) in ids.sorted(by: { $0.value.name < $1.value.name }) {
                let mine = claims.filter { $0.instanceID == id }
                let sending = mine.contains { $0.state == .sending }
                let waiting = mine.contains { $0.state == .open }
                if sending && (waiting || Date() > relaxAt) {
                    child.signal(SIGKILL)
                    guard await child.waitUntilExited(timeout: 10) else { throw ClusterDemoError.didNotDie(child.name) }
                    return (child, id)
                }
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ClusterDemoError.noSendInFlight
    }

    // MARK: - checks

    private func summary(store: RoundupStore, copy: StorageCopyResult, victim: (child: ServeChild, id: String), survivorID: String,
                         inFlight: Set<Int64>, unstarted: Set<Int64>, doubtedAfter: Double?) async throws -> ClusterDemoSummary {
        let keys = acknowledged
        let stored = try await store.read { tx in try keys.map { try tx.messageCount(msgKey: $0) } }
        let digests = try await store.read { tx in try tx.digestSummaries(.states(DigestState.allCases, user: nil), limit: nil) }
        let claims = Dictionary(uniqueKeysWithValues: try await InstanceHeartbeat.claimedDigests(store).map { ($0.id, $0.instanceID) })
        let script = fakes.wechat.script
        let accepted = await script.accepted
        let overlaps = await script.overlaps
        let byOpenID = Dictionary(grouping: accepted, by: \.touser)
        let sentTwice = byOpenID.filter { $0.value.count > 1 }.count
        let inDoubt = Set(digests.filter { $0.state == .inDoubt }.map(\.id))
        let sent = digests.filter { $0.state == .sent }
        let msgids = Set(accepted.map(\.msgid))
        let unmatched = sent.filter { $0.msgid.map { !msgids.contains($0) } ?? true }.count
        let takenOver = unstarted.filter { id in digests.contains { $0.id == id && $0.state == .sent } && claims[id] == survivorID }.count
        let inDoubtDelivered = digests.filter { inFlight.contains($0.id) }
            .filter { byOpenID[Self.openid(of: $0.imUserID)] != nil }.count
        let listed = try await InstanceHeartbeat.liveInstances(store).map(\.id)

        let storedOnce = stored.allSatisfy { $0 == 1 }
        var checks: [ClusterDemoCheck] = []
        checks.append(ClusterDemoCheck(
            ok: storedOnce && keys.count == ClusterDemo.users + ClusterDemo.usersBeforeMove,
            text: "\(keys.count) callbacks acknowledged, \(stored.filter { $0 == 1 }.count) of them stored exactly once"
                + (storedOnce ? "" : ", \(stored.filter { $0 == 0 }.count) missing, \(stored.filter { $0 > 1 }.count) twice")))
        checks.append(ClusterDemoCheck(
            ok: sentTwice == 0 && overlaps == 0,
            text: "\(accepted.count) subscribe messages reached WeChat; \(sentTwice) parent\(sentTwice == 1 ? "" : "s") got two"))
        checks.append(ClusterDemoCheck(
            ok: !inFlight.isEmpty && inDoubt == inFlight,
            text: "in_doubt: the \(inFlight.count) digests sending on \(victim.child.name) when it died"
                + (inDoubt == inFlight ? ", and nothing else" : "; but in_doubt now: \(inDoubt.sorted())")
                + " (WeChat had \(inDoubtDelivered) of them; Roundup cannot know, so it never resends one: roundup dead lists them)"))
        checks.append(ClusterDemoCheck(
            ok: sent.count + inDoubt.count == ClusterDemo.users && digests.count == ClusterDemo.users && unmatched == 0
                && takenOver == unstarted.count,
            text: "sent once: the other \(sent.count) of \(digests.count) digests, each with WeChat's msgid; "
                + "the \(unstarted.count) \(victim.child.name) had claimed but not started were sent by the survivor (\(takenOver))"))
        checks.append(ClusterDemoCheck(
            ok: listed == [survivorID],
            text: "roundup instances lists \(listed.count) live instance\(listed.count == 1 ? "" : "s")"
                + (listed == [survivorID] ? ", the survivor" : ": \(listed)")))
        return ClusterDemoSummary(
            callbacksAcknowledged: keys.count, messagesStoredOnce: stored.filter { $0 == 1 }.count, rowsCopied: copy.totalRows,
            digests: digests.count, digestsSent: sent.count, digestsInDoubt: inDoubt.count, inFlightAtKill: inFlight.count,
            claimedNotStartedAtKill: unstarted.count, takenOver: takenOver, wechatSends: accepted.count, openidsSentTwice: sentTwice,
            killedPID: Int(victim.child.pid), inDoubtAfterSeconds: doubtedAfter, checks: checks)
    }
}

/// One closing check of the cluster demo.
public struct ClusterDemoCheck: Sendable, Equatable {
    public var ok: Bool
    public var text: String
}

/// What the cluster demo saw.
public struct ClusterDemoSummary: Sendable, Equatable {
    public var callbacksAcknowledged: Int
    public var messagesStoredOnce: Int
    public var rowsCopied: Int
    public var digests: Int
    public var digestsSent: Int
    public var digestsInDoubt: Int
    public var inFlightAtKill: Int
    public var claimedNotStartedAtKill: Int
    /// Of those claimed and not started, how many the survivor sent.
    public var takenOver: Int
    public var wechatSends: Int
    public var openidsSentTwice: Int
    public var killedPID: Int
    /// Seconds from the kill until its sends in flight were all in_doubt; nil if they never were.
    public var inDoubtAfterSeconds: Double?
    public var checks: [ClusterDemoCheck]

    /// True when every check passed.
    public var ok: Bool { checks.allSatisfy(\.ok) }

    /// The `--json` summary object.
    public var json: JSONValue {
        .object([
            ("callbacks_acknowledged", .int(Int64(callbacksAcknowledged))), ("messages_stored_once", .int(Int64(messagesStoredOnce))),
            ("rows_copied", .int(Int64(rowsCopied))), ("digests", .int(Int64(digests))), ("digests_sent", .int(Int64(digestsSent))),
            ("digests_in_doubt", .int(Int64(digestsInDoubt))), ("in_flight_at_kill", .int(Int64(inFlightAtKill))),
            ("claimed_not_started_at_kill", .int(Int64(claimedNotStartedAtKill))), ("taken_over", .int(Int64(takenOver))),
            ("wechat_sends", .int(Int64(wechatSends))), ("openids_sent_twice", .int(Int64(openidsSentTwice))),
            ("killed_pid", .int(Int64(killedPID))), ("in_doubt_after_seconds", inDoubtAfterSeconds.map { .double($0) } ?? .null),
            ("checks", .array(checks.map { .object([("ok", .bool($0.ok)), ("check", .string($0.text))]) })), ("ok", .bool(ok)),
        ])
    }

    /// The closing checks for people.
    public var text: String {
        (["Checks"] + checks.map { "  \($0.ok ? "✓" : "✗") \($0.text)" }).joined(separator: "\n") + "\n"
    }
}

/// Why the cluster demo stopped.
public enum ClusterDemoError: Error, Equatable, CustomStringConvertible {
    case copyRefused(String)
    case serveDidNotStart(name: String, output: String)
    case notRegistered([Int])
    case didNotDie(String)
    case noSendInFlight
    case flushFailed(String)

    public var description: String {
        switch self {
        case .copyRefused(let why):
            return "the copy into PostgreSQL was refused: \(why) (the demo needs an empty database: drop and create it again)"
        case .serveDidNotStart(let name, let output):
            return "instance \(name) (roundup serve) did not start listening; its output ends:\n\(output)"
        case .notRegistered(let pids):
            return "the two instances listen but only pids \(pids) have a heartbeat row"
        case .didNotDie(let name):
            return "instance \(name) did not exit within 10 s of SIGKILL"
        case .noSendInFlight:
            return "no instance had a send in flight within a minute, so there was nothing to kill mid-flush"
        case .flushFailed(let output):
            return "roundup flush --all failed: \(output.suffix(1_000))"
        }
    }
}
