import Foundation
import Testing

@testable import Roundup

/// A temporary directory for the real `roundup serve` binary: a `roundup.yaml` aimed at fake
/// WeChat and IM servers (which run in the test process and outlive a killed serve), and the
/// helpers to start `serve` on it, feed it and inspect its database.
struct ServeRig: Sendable {
    static let callbackToken = "crash-callback-token"
    static let template = "CRASH_TEMPLATE"

    let dir: URL
    let sendConcurrency: Int
    /// The `digest:` keys besides `send_concurrency`, indented two spaces.
    let digestYAML: String
    /// The PostgreSQL database every `serve` of the rig shares (`storage.url`), with its
    /// `storage.instance_timeout`; nil keeps the rig's own SQLite file at `databasePath`.
    let postgres: (url: String, instanceTimeout: String)?
    let wechat = FakeWeChatServer()
    let im = FakeIMServer()
    /// The fake WeChat's port while `withFakes` runs.
    private(set) var wechatPort = 0
    var configFile: URL { dir.appendingPathComponent("roundup.yaml") }
    var databasePath: String { dir.appendingPathComponent("roundup.sqlite").path }

    init(sendConcurrency: Int, digestYAML: String = "  window: 10m\n  max_messages: 1000\n",
         postgres: (url: String, instanceTimeout: String)? = nil) throws {
        dir = try TestSupport.temporaryDirectory()
        self.sendConcurrency = sendConcurrency
        self.digestYAML = digestYAML
        self.postgres = postgres
    }

    func remove() { try? FileManager.default.removeItem(at: dir) }

    /// Runs the fakes around `body`, with the config written to point at them.
    func withFakes(_ body: (ServeRig) async throws -> Void) async throws {
        try await wechat.withRunning { wechatBase in
            try await im.withRunning { imBase in
                try yaml(wechatBase: wechatBase, imBase: imBase).write(to: configFile, atomically: true, encoding: .utf8)
                var running = self
                running.wechatPort = Int(wechatBase.split(separator: ":").last ?? "") ?? 0
                try await body(running)
            }
        }
    }

    private func yaml(wechatBase: String, imBase: String) -> String {
        """
        server:
          host: 127.0.0.1
          port: 0
        storage:
        \(storageYAML)\
        \(FakeConfigYAML.wechat(wechat, baseURL: wechatBase))\
        \(FakeConfigYAML.im(im, baseURL: imBase, callbackToken: ServeRig.callbackToken))\
        \(FakeConfigYAML.template(id: ServeRig.template))\
        digest:
        \(digestYAML)  send_concurrency: \(sendConcurrency)

        """
    }

    /// The `storage:` keys, indented two spaces, each line ending in a newline.
    private var storageYAML: String {
        guard let postgres else { return "  path: \"\(databasePath)\"\n" }
        return "  url: \"\(postgres.url)\"\n  instance_timeout: \(postgres.instanceTimeout)\n"
    }

    /// Starts `serve` on the rig's config; each run logs to its own file.
    func start() async throws -> ServeProcess {
        try await ServeProcess.start(in: dir, config: configFile)
    }

    /// Opens the database as the CLI would (beside a running serve, or after it died).
    func store() throws -> RoundupStore { try RoundupStore.open(path: databasePath) }

    /// Binds users u0…u(n-1) to openids o_u0… and grants each `credits` one-time credits.
    func seedUsers(_ n: Int, credits: Int) throws {
        let store = try store()
        let now = Timestamp(Date())
        for i in 0..<n {
            try store.updateUser("u\(i)", UserUpdate(openid: .set("o_u\(i)"), name: .set("家长\(i)")), now: now)
            try store.applyCredit(openid: "o_u\(i)", templateID: ServeRig.template, change: .add(credits), eventKey: nil, now: now)
        }
    }

    /// Posts `messages` signed callbacks to each of u0…u(n-1); every one must be acknowledged.
    func postOneMessageEach(users: Int, port: Int, messages: Int) async throws {
        let client = SignedCallbackClient(port: port, token: ServeRig.callbackToken, connections: 4)
        defer { client.close() }
        for m in 0..<messages {
            for i in 0..<users {
                let ok = await client.c2c(from: "teacher\(m)", to: "u\(i)", key: "flush-\(i)-\(m)", text: "第\(m)条 给u\(i)")
                #expect(ok, "callback for u\(i) not acknowledged")
            }
        }
    }

    /// Every digest in these states.
    func digests(in states: [DigestState]) throws -> [DigestSummary] {
        try store().digestSummaries(states: states)
    }

    /// The ingest invariants after a crash and restart: each acknowledged key stored exactly
    /// once, joined to its recipient's one open digest; nothing stored twice or never sent.
    func expectIngestIntact(acked: Set<String>, issued: Set<String>, users: Int, context: String) throws {
        let store = try store()
        var rows: [String: [StoredMessage]] = [:]
        for u in 0..<users {
            let recipient = "p\(u)"
            let messages = try store.messages(recipient: recipient)
            for m in messages { rows[m.msgKey ?? "<none>", default: []].append(m) }
            guard !messages.isEmpty else { continue }
            let digest = try store.activeDigest(for: recipient)
            #expect(digest?.state == .open, "\(context): \(recipient) has messages but no open digest")
            #expect(messages.allSatisfy { $0.status == "pending" && $0.digestID == digest?.id },
                    "\(context): a message of \(recipient) is not pending in its open digest")
            #expect(digest?.pendingCount == messages.count, "\(context): \(recipient)'s digest counts \(digest?.pendingCount ?? -1) of \(messages.count)")
        }
        let missing = acked.filter { rows[$0] == nil }
        #expect(missing.isEmpty, "\(context): \(missing.count) acknowledged callbacks are not stored, e.g. \(missing.sorted().prefix(5)) (seed \(CrashSeed.value))")
        let doubled = rows.filter { $0.value.count != 1 }
        #expect(doubled.isEmpty, "\(context): stored more than once: \(doubled.keys.sorted().prefix(5))")
        let phantom = Set(rows.keys).subtracting(issued)
        #expect(phantom.isEmpty, "\(context): stored but never sent: \(phantom.sorted().prefix(5))")
        #expect(acked.count <= rows.count)
    }

    /// After the flush crashes: each user has one digest, sent exactly once or in_doubt (the
    /// ones in flight at a kill) and never resent; credits and messages match the outcome.
    func expectEachDigestOnce(users: Int, inDoubt expected: Set<Int64>) async throws {
        let script = wechat.script
        #expect(await script.overlaps == 0, "two sends to one openid overlapped")
        let accepted = await script.accepted
        let byOpenID = Dictionary(grouping: accepted, by: \.touser)
        #expect(byOpenID.values.allSatisfy { $0.count == 1 }, "sent twice: \(byOpenID.filter { $0.value.count > 1 }.keys.sorted())")
        let store = try store()
        var sent = 0
        var doubted = 0
        for i in 0..<users {
            let user = "u\(i)", openid = "o_u\(i)"
            let digests = try store.digests(for: user)
            #expect(digests.count == 1, "\(user) has \(digests.count) digests")
            guard let digest = digests.first, let summary = try store.digestSummary(digest.id) else { continue }
            let credit = try store.credit(openid: openid, templateID: ServeRig.template)?.count
            let messages = try store.messages(recipient: user)
            #expect(messages.count == 2, "\(user) lost messages: \(messages.count) of 2")
            if expected.contains(digest.id) {
                doubted += 1
                #expect(summary.state == .inDoubt, "\(user): in flight at a kill but now \(summary.state)")
                #expect((byOpenID[openid]?.count ?? 0) <= 1)
                #expect(credit == 1, "\(user): an in_doubt digest spent a credit")
                #expect(messages.allSatisfy { $0.status == "pending" }, "\(user): an in_doubt digest lost its messages")
            } else {
                sent += 1
                #expect(summary.state == .sent, "\(user): \(summary.state), expected sent")
                #expect(byOpenID[openid]?.count == 1, "\(user): the fake saw \(byOpenID[openid]?.count ?? 0) sends")
                #expect(summary.msgid != nil && summary.msgid == byOpenID[openid]?.first?.msgid, "\(user): msgid does not match the fake's")
                #expect(credit == 0, "\(user): the sent digest did not spend its credit")
                #expect(messages.allSatisfy { $0.status == "delivered" })
            }
        }
        #expect(sent + doubted == users, "a digest is neither sent nor in_doubt")
        #expect(doubted == expected.count)
        #expect(accepted.count >= sent && accepted.count <= users, "the fake accepted \(accepted.count) sends for \(sent) sent digests")
    }
}

