import Foundation
import Logging

/// `roundup demo`: the real service in-process on a free loopback port, with the fake
/// WeChat API and fake IM REST API on loopback, a temporary database and windows of a few seconds.
/// It replays a trace as real HTTP calls — signed IM callbacks, signed WeChat pushes, admin API
/// calls — and reports what the service did.
///
/// The runner owns time: it moves the clock from one step to the next (events, and a tick every
/// `tick` seconds), and at each step runs the group fan-out and one engine pass itself instead of
/// relying on background timing. With a `ManualWallClock` the replay is exact and repeatable:
/// `speed` only says how long to really wait between steps (nil: not at all). With any other
/// clock it sleeps until each step.
public struct DemoRunner: Sendable {
    /// The one template of the demo config.
    public static let templateID = "DEMO_TEMPLATE"
    static let callbackToken = "demo-callback-token"
    static let pushToken = "demo-push-token"
    static let adminToken = "demo-admin-token"

    public let trace: DemoTrace
    public let clock: any WallClock
    /// Trace seconds per real second with a manual clock; nil replays as fast as possible.
    public let speed: Double?
    /// Seconds between engine passes when no event is due.
    public let tick: Double
    public let logger: Logger
    let onNote: @Sendable (DemoNote) -> Void

    public init(trace: DemoTrace, clock: any WallClock, speed: Double? = 1, tick: Double = 0.5, logger: Logger,
                onNote: @escaping @Sendable (DemoNote) -> Void = { _ in }) {
        self.trace = trace
        self.clock = clock
        self.speed = speed
        self.tick = tick
        self.logger = logger
        self.onNote = onNote
    }

    /// The demo's config: windows of a few seconds, every credential matching the fakes.
    public static func configYAML(databasePath: String, wechatBaseURL: String, imBaseURL: String, im: FakeIMServer, wechat: FakeWeChatServer) -> String {
        """
        server:
          host: 127.0.0.1
          port: 0
          admin_token: "\(adminToken)"
        storage:
          path: "\(databasePath)"
        \(FakeConfigYAML.wechat(wechat, baseURL: wechatBaseURL, pushToken: pushToken))\
        \(FakeConfigYAML.im(im, baseURL: imBaseURL, callbackToken: callbackToken))\
        \(FakeConfigYAML.template(id: templateID))\
        digest:
          window: 3s
          max_messages: 20
          offline_lookback: 5s
          cancel_on_online: true
          group_messages: mentions

        """
    }

    /// Replays the trace against a fresh service and returns the closing summary.
    public func run() async throws -> DemoSummary {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("roundup-demo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(at: dir) }
        let clock = self.clock
        let wechat = FakeWeChatServer()
        let im = FakeIMServer(now: { clock.now })
        return try await wechat.withRunning { wechatBase in
            try await im.withRunning { imBase in
                let yaml = Self.configYAML(
                    databasePath: dir.appendingPathComponent("roundup.sqlite").path, wechatBaseURL: wechatBase, imBaseURL: imBase,
                    im: im, wechat: wechat)
                let config = try ConfigLoader(environment: [:]).load(yaml: yaml, source: "demo").config
                let runtime = try RoundupRuntime(config: config, clock: clock, logger: logger)
                return try await withLoopbackApplication(logger: logger, { onRunning in
                    runtime.buildApplication(onServerRunning: onRunning)
                }) { port in
                    note("service on http://127.0.0.1:\(port) · fake WeChat API \(wechatBase) · fake IM REST \(imBase)")
                    var replay = DemoReplay(
                        runner: self, runtime: runtime, http: DemoHTTPClient(baseURL: "http://127.0.0.1:\(port)"), im: im, wechat: wechat,
                        start: clock.now)
                    return try await replay.run()
                }
            }
        }
    }

    func note(_ line: String) { onNote(.progress(line)) }
}

/// One replay in progress: the steps, the HTTP calls, and what changed after each step.
struct DemoReplay {
    let runner: DemoRunner
    let runtime: RoundupRuntime
    let http: DemoHTTPClient
    let im: FakeIMServer
    let wechat: FakeWeChatServer
    let start: Date
    let names: [String: String]

    /// The digests seen so far: state and reason by id.
    private var seen: [Int64: (DigestState, DigestReason?)] = [:]
    private var groupSeq: [String: Int64] = [:]

    /// How long after the last event the replay waits at most for open digests to be sent.
    static let drainLimit: Double = 120

    init(runner: DemoRunner, runtime: RoundupRuntime, http: DemoHTTPClient, im: FakeIMServer, wechat: FakeWeChatServer, start: Date) {
        self.runner = runner
        self.runtime = runtime
        self.http = http
        self.im = im
        self.wechat = wechat
        self.start = start
        self.names = runner.trace.names
    }

    /// Steps through the trace, then until no digest is left open, and counts the outcome.
    mutating func run() async throws -> DemoSummary {
        let events = runner.trace.events
        let accounts = runner.trace.accounts
        runner.note("replaying \(events.count) events among \(accounts.count) users; digest window 3s, max 20 messages, offline lookback 5s")
        let lastAt = events.last?.at ?? 0
        var index = 0
        var time = 0.0
        while true {
            try await advance(to: time)
            while index < events.count, events[index].at <= time + 1e-9 {
                try await apply(events[index])
                index += 1
            }
            await runtime.fanout.processPending()
            await runtime.scheduler.runOnce()
            try await reportChanges()
            if index >= events.count {
                // Done when nothing is open any more; held digests wait for something that will not come.
                guard let next = try runtime.store.nextDueAt(), next.date <= start.addingTimeInterval(lastAt + Self.drainLimit) else { break }
            }
            let nextTick = ((time / runner.tick).rounded(.down) + 1) * runner.tick
            time = index < events.count ? min(nextTick, events[index].at) : nextTick
        }
        return try summary(accounts: accounts)
    }

    // MARK: - time

    /// Moves the clock to `offset` seconds after the start (really waiting, scaled, when asked to).
    private func advance(to offset: Double) async throws {
        let target = start.addingTimeInterval(offset)
        if let manual = runner.clock as? ManualWallClock {
            let ahead = target.timeIntervalSince(manual.now)
            if let speed = runner.speed, speed > 0, ahead > 0 {
                try await Task.sleep(for: .milliseconds(Int64((ahead / speed * 1000).rounded())))
            }
            manual.set(target)
        } else {
            try await runner.clock.sleep(until: target)
        }
    }

    private var elapsed: Double { runner.clock.now.timeIntervalSince(start) }

    private func stamp() -> String {
        let seconds = String(format: "%.1f", elapsed)
        return "[" + String(repeating: " ", count: max(0, 5 - seconds.count)) + seconds + "s]"
    }

    private func say(_ text: String) { runner.note("\(stamp()) \(text)") }

    private func name(_ user: String) -> String { names[user] ?? user }

    // MARK: - events, as real HTTP calls

    /// Plays one event as its real caller would: the mini program's backend, IM or WeChat.
    private mutating func apply(_ event: DemoEvent) async throws {
        let now = runner.clock.now
        let seconds = Int64(now.timeIntervalSince1970.rounded(.down))
        let millis = Int64((now.timeIntervalSince1970 * 1000).rounded(.down))
        switch event.kind {
        case .bind(let user, let openid, let name):
            var fields: [(String, JSONValue)] = []
            if let openid { fields.append(("openid", .string(openid))) }
            if let name { fields.append(("name", .string(name))) }
            let path = "/admin/users/" + (user.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(["/"])) ?? user)
            try await http.expectOK(put: true, path, json: .object(fields), bearer: DemoRunner.adminToken)
        case .credit(let openid, let template, let count):
            try await http.expectOK("/admin/credits", json: .object([
                ("openid", .string(openid)), ("template_id", .string(template)), ("count", .int(Int64(count))),
                ("idempotency_key", .string("demo-line-\(event.line)")),
            ]), bearer: DemoRunner.adminToken)
        case .groupMembers(let group, let members):
            await im.state.setGroup(group, members: members.map { IMGroupMember(account: $0) })
            say("class group \(group): \(members.count) members")
        case .state(let user, let action):
            try await callback("State.StateChange", .object([
                ("CallbackCommand", .string("State.StateChange")), ("EventTime", .int(millis)),
                ("Info", .object([("Action", .string(action)), ("To_Account", .string(user)), ("Reason", .string("Demo"))])),
            ]))
            switch action {
            case "Login": await im.state.setStatus(.online, for: [user])
            case "Logout", "Disconnect": await im.state.setStatus(.offline, for: [user])
            default: break
            }
            say("\(name(user)) \(action == "Login" ? "opened the app" : "left the app") (\(action))")
        case .c2c(let from, let to, let text, let key):
            try await callback("C2C.CallbackAfterSendMsg", DemoHTTPClient.c2cBody(
                from: from, to: to, key: key ?? "demo-\(event.line)", seq: Int64(event.line), text: text, now: now))
            // A sender is in the app; the fake IM reports what real IM would.
            await im.state.setStatus(.online, for: [from])
            let presence = runtime.presence.state(of: to) == .online ? "online" : "offline"
            say("\(name(from)) → \(name(to)) (\(presence)): \(Self.short(text))")
        case .group(let group, let from, let text, let atAll, let mentions):
            let seq = (groupSeq[group] ?? 100) + 1
            groupSeq[group] = seq
            var at: [JSONValue] = mentions.map { .object([("GroupAtAllFlag", .int(0)), ("GroupAt_Account", .string($0))]) }
            if atAll { at.append(.object([("GroupAtAllFlag", .int(1))])) }
            try await callback("Group.CallbackAfterSendMsg", .object([
                ("CallbackCommand", .string("Group.CallbackAfterSendMsg")), ("GroupId", .string(group)), ("Type", .string("Public")),
                ("From_Account", .string(from)), ("Operator_Account", .string(from)), ("Random", .int(Int64(event.line))),
                ("MsgSeq", .int(seq)), ("MsgTime", .int(seconds)), ("OnlineOnlyFlag", .int(0)),
                ("MsgBody", .array([.object([("MsgType", .string("TIMTextElem")), ("MsgContent", .object([("Text", .string(text))]))])])),
                ("EventTime", .string(String(millis))), ("GroupAtInfo", .array(at)),
            ]))
            await im.state.setStatus(.online, for: [from])
            say("\(name(from)) → group \(group)\(atAll ? " (@all)" : ""): \(Self.short(text))")
        case .accept(let openid, let template):
            let nonce = String(100_000_000 + event.line)
            let timestamp = String(seconds)
            let signature = PushSignature.compute(token: DemoRunner.pushToken, timestamp: timestamp, nonce: nonce)
            let body = JSONValue.object([
                ("ToUserName", .string("gh_demo_school")), ("FromUserName", .string(openid)), ("CreateTime", .int(seconds)),
                ("MsgType", .string("event")), ("Event", .string("subscribe_msg_popup_event")),
                ("List", .object([("PopupScene", .string("0")), ("SubscribeStatusString", .string("accept")), ("TemplateId", .string(template))])),
            ])
            try await http.expectOK("/wechat/push?signature=\(signature)&timestamp=\(timestamp)&nonce=\(nonce)", json: body)
            let user = (try? runtime.store.user(openid: openid))??.imUserID
            say("\(user.map(name) ?? "a parent") accepted a subscription (\(template)): WeChat pushed subscribe_msg_popup_event")
        case .read(let user, let peer):
            try await callback("C2C.CallbackAfterMsgReport", .object([
                ("CallbackCommand", .string("C2C.CallbackAfterMsgReport")), ("Report_Account", .string(user)),
                ("Peer_Account", .string(peer)), ("LastReadTime", .int(seconds)), ("UnreadMsgNum", .int(0)), ("EventTime", .int(millis)),
            ]))
            say("\(name(user)) read the messages from \(name(peer))")
        case .recall(let from, let to, let key):
            try await callback("C2C.CallbackAfterMsgWithDraw", .object([
                ("CallbackCommand", .string("C2C.CallbackAfterMsgWithDraw")), ("From_Account", .string(from)), ("To_Account", .string(to)),
                ("MsgKey", .string(key)), ("UnreadMsgNum", .int(0)),
            ]))
            say("\(name(from)) recalled a message to \(name(to))")
        }
    }

    /// Posts a callback as Tencent IM does: signed with the callback token at the clock's time.
    private func callback(_ command: String, _ body: JSONValue) async throws {
        try await http.imCallback(command, body, sdkAppID: im.sdkAppID, token: DemoRunner.callbackToken, now: runner.clock.now)
    }

    /// Message text cut to fit a progress line.
    static func short(_ text: String) -> String { text.count <= 24 ? text : String(text.prefix(23)) + "…" }

    // MARK: - what the service did

    /// Reports digests that were held, cancelled, sent or failed since the last step, in id
    /// order, each sent one followed by the body WeChat received.
    private mutating func reportChanges() async throws {
        let accepted = await wechat.script.accepted
        let bodies = Dictionary(accepted.map { ($0.msgid, $0.body) }, uniquingKeysWith: { first, _ in first })
        for digest in try runtime.store.digestSummaries(states: DigestState.allCases).sorted(by: { $0.id < $1.id }) {
            if let previous = seen[digest.id], previous.0 == digest.state, previous.1 == digest.reason { continue }
            seen[digest.id] = (digest.state, digest.reason)
            let who = digest.name ?? digest.imUserID
            // Counted from the messages themselves: a recalled or read message left the digest.
            let kept = digest.state == .cancelled ? "seen" : "delivered"
            let n = DigestState.active.contains(digest.state)
                ? digest.messages
                : try runtime.store.messages(recipient: digest.imUserID).filter { $0.digestID == digest.id && $0.status == kept }.count
            let count = "\(n) message\(n == 1 ? "" : "s")"
            switch digest.state {
            case .open, .sending:
                continue
            case .held:
                let why = digest.reason == .unbound ? "no WeChat openid is bound" : digest.reason == .noCredit ? "no subscription credit left" : "config error"
                say("\(who): digest held (\(digest.reason?.rawValue ?? "?"): \(why)); it keeps collecting")
            case .cancelled:
                if digest.reason == .userOnline {
                    say("\(who) came online first: digest cancelled, \(count) seen in the app, nothing sent, credit kept")
                } else {
                    say("\(who): digest cancelled (\(digest.reason?.rawValue ?? "?"))")
                }
            case .sent, .dryRun:
                let senders = digest.senders.joined(separator: "、")
                say("\(who): \(count) from \(senders) → ONE subscribe message sent (msgid \(digest.msgid ?? "-"))")
                if let msgid = digest.msgid, let body = bodies[msgid] { runner.onNote(.sent(body: body)) }
            case .expired, .dead, .inDoubt:
                say("\(who): digest \(digest.state.rawValue)\(digest.errcode.map { " (errcode \($0))" } ?? "")")
            }
        }
    }

    /// The closing counts, read from the service's database.
    private func summary(accounts: [String]) throws -> DemoSummary {
        let store = runtime.store
        let messages = try accounts.reduce(0) { total, user in total + (try store.messages(recipient: user).count) }
        let sent = try store.digestSummaries(states: [.sent, .dryRun]).count
        let cancelled = try store.digestSummaries(states: [.cancelled]).filter { $0.reason == .userOnline }.count
        let held = try store.digestSummaries(states: [.held]).count
        return DemoSummary(messagesReceived: messages, users: accounts.count, digestsSent: sent, digestsCancelledOnline: cancelled,
                           digestsHeld: held)
    }
}
