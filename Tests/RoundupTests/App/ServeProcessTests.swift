import Foundation
import Testing

@testable import Roundup

/// `roundup serve` as a real process: one owner per database, a stale lease taken
/// over after SIGKILL, CLI commands beside it, graceful SIGTERM.
@Suite("roundup serve process", .serialized)
struct ServeProcessTests {
    /// `serve` on the default config, bound to loopback on a free port.
    static let loopback = ["ROUNDUP_SERVER_HOST": "127.0.0.1", "ROUNDUP_SERVER_PORT": "0"]

    @Test("a second serve on the same database is refused naming the owner, also after the owner was SIGKILLed, and CLI commands work beside it")
    func singleOwner() async throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let first = try await ServeProcess.start(in: dir, config: nil, environment: Self.loopback)
        _ = try await first.waitUntilListening()

        let second = try await runRoundup(["serve"], in: dir, environment: Self.loopback)
        #expect(second.status == 1)
        #expect(second.stderr.contains("another roundup serve (pid \(first.pid)) owns"))

        let instances = try await runRoundup(["instances", "--json"], in: dir)
        #expect(instances.status == 0)
        #expect(instances.stdout.contains("\"pid\":\(first.pid)"), "roundup instances does not name the owner: \(instances.stdout)")
        #expect(try await runRoundup(["users", "bind", "p1", "o_p1"], in: dir).status == 0)
        #expect(try await runRoundup(["users", "list", "--json"], in: dir).stdout.contains("o_p1"))

        await first.sigkill()
        #expect(first.wasKilled)
        // The dead owner's lease row stays, but nobody holds the lock: no instance.
        #expect(try await runRoundup(["instances", "--json"], in: dir).stdout.contains("\"instances\":[]"))
        let third = try await ServeProcess.start(in: dir, config: nil, environment: Self.loopback)
        _ = try await third.waitUntilListening()
        await third.terminate()
        #expect(third.exitStatus == 0, "\(third.output.suffix(2_000))")
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
        let reloader = ConfigReloader(path: file.path, loader: loader, live: h.runtime.config, scheduler: h.runtime.scheduler, store: h.store,
                                      metrics: h.runtime.metrics, logger: h.runtime.logger, clock: h.clock)
        _ = await h.runtime.ingestor.handle(.c2cAfterSend(IMC2CMessage(
            from: "t", to: "p", msgSeq: 1, msgRandom: 1, msgTime: 1, msgKey: "k", msgID: nil, onlineOnly: false, sendMsgResult: 0,
            elements: [.text("hi")], cloudCustomData: nil, eventTime: nil)), optPlatform: "RESTAPI")
        let start = Timestamp(ServiceHarness.start)
        #expect(try h.store.activeDigest(for: "p")?.dueAt == start + 600_000)

        try "digest:\n  window: 2m\n".write(to: file, atomically: true, encoding: .utf8)
        #expect(await reloader.reloadIfChanged())
        #expect(h.runtime.config.snapshot.digest.policy.window == .minutes(2))
        let digest = try #require(try h.store.activeDigest(for: "p"))
        #expect(digest.dueAt == start + 120_000)
        #expect(try h.store.digestLog(digest.id).last?.kind == "retimed")

        try "digest:\n  window: soon\n".write(to: file, atomically: true, encoding: .utf8)
        #expect(await !reloader.reloadIfChanged())
        #expect(h.runtime.config.snapshot.digest.policy.window == .minutes(2))
        #expect(h.runtime.metrics.exposition().contains(#"roundup_config_reloads_total{outcome="failure"} 1"#))
    }
}

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Privacy and issue 8: no secret, access token, UserSig or message text in a full run's
/// output (trace level), its error bodies, `config check` or `/metrics`.
@Suite("Secrets stay out of logs", .serialized)
struct SecretsInLogsTests {
    static let template = "SECRET_TEST_TEMPLATE"
    static let text = "PRIVATE-TEXT-XYZ"
    static let callbackToken = "cbtoken-SECRET-1"
    static let adminToken = "admin-SECRET-2"
    static let appSecret = "appsecret-SECRET-3"
    static let imSecret = "imkey-SECRET-4"
    static let pushToken = "pushtokenSECRET5"
    /// 43 letters and digits, as the console makes them.
    static let aesKey = "aeskeySECRET6" + "abcdefghijklmnopqrstuvwxyz0123456789".prefix(30)

    /// One HTTP exchange with the running service: status and body text.
    static func call(
        _ method: String, _ url: String, body: String? = nil, bearer: String? = nil, json: Bool = true
    ) async throws -> (status: Int, body: String) {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        request.timeoutInterval = 10
        if let body { request.httpBody = Data(body.utf8) }
        if json { request.setValue("application/json", forHTTPHeaderField: "Content-Type") }
        if let bearer { request.setValue("Bearer \(bearer)", forHTTPHeaderField: "Authorization") }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    @Test("a full serve run at trace level (token fetched, encrypted push, digest sent) leaks no secret, access token, UserSig or message text to its output, error bodies, config check or /metrics")
    func noSecrets() async throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let wechat = FakeWeChatServer(appID: "wx_secret_test", secret: Self.appSecret)
        let im = FakeIMServer(secretKey: Self.imSecret)
        try await wechat.withRunning { wechatBase in
            try await im.withRunning { imBase in
                // Secrets and endpoints come from the environment, the template list from the file.
                let configFile = dir.appendingPathComponent("roundup.yaml")
                try """
                    server:
                      port: 0
                    storage:
                      path: "\(dir.appendingPathComponent("roundup.sqlite").path)"
                    templates:
                      - id: \(Self.template)
                        fields:
                          thing1: "{{first_sender}}等{{sender_count}}人"
                          thing3: { value: "{{preview}}", fallback: "您有新消息" }
                    digest:
                      window: 10m

                    """.write(to: configFile, atomically: true, encoding: .utf8)
                let secrets = [
                    "ROUNDUP_IM_CALLBACK_TOKEN": Self.callbackToken, "ROUNDUP_SERVER_ADMIN_TOKEN": Self.adminToken,
                    "ROUNDUP_WECHAT_APP_SECRET": Self.appSecret, "ROUNDUP_IM_SECRET_KEY": Self.imSecret,
                    "ROUNDUP_WECHAT_PUSH_TOKEN": Self.pushToken, "ROUNDUP_WECHAT_ENCODING_AES_KEY": Self.aesKey,
                ]
                var env = ["ROUNDUP_IM_SDK_APP_ID": String(im.sdkAppID), "ROUNDUP_WECHAT_APP_ID": wechat.appID,
                           "ROUNDUP_WECHAT_API_BASE_URL": wechatBase, "ROUNDUP_IM_API_BASE_URL": imBase]
                env.merge(secrets) { a, _ in a }

                let serve = try await ServeProcess.start(in: dir, config: configFile, logLevel: "trace", environment: env)
                let port = try await serve.waitUntilListening()
                let base = "http://127.0.0.1:\(port)"
                var answers: [String] = []

                // A message in, a binding, a credit from an encrypted (safe-mode) popup push, a flush.
                let t = String(Int64(Date().timeIntervalSince1970))
                let sign = IMCallbackSignature.sign(token: Self.callbackToken, requestTime: t)
                let imQuery = "SdkAppid=\(im.sdkAppID)&CallbackCommand=C2C.CallbackAfterSendMsg&OptPlatform=Web"
                let message = #"{"From_Account":"t","To_Account":"p","MsgKey":"k1","MsgTime":\#(t),"SendMsgResult":0,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"\#(Self.text)"}}]}"#
                let callback = try await Self.call("POST", "\(base)/im/callback?\(imQuery)&Sign=\(sign)&RequestTime=\(t)", body: message)
                #expect(callback.status == 200)
                #expect(callback.body.contains(#""ActionStatus":"OK""#))
                let bind = try await Self.call("PUT", "\(base)/admin/users/p", body: #"{"openid":"oP_secret_test"}"#, bearer: Self.adminToken)
                #expect(bind.status == 200)
                let popup = #"{"ToUserName":"gh_secret","FromUserName":"oP_secret_test","CreateTime":\#(t),"MsgType":"event","Event":"subscribe_msg_popup_event","List":{"PopupScene":"0","SubscribeStatusString":"accept","TemplateId":"\#(Self.template)"}}"#
                let encrypted = try PushCrypto(encodingAESKey: Self.aesKey, appID: wechat.appID).encrypt(Data(popup.utf8))
                let nonce = "7302541"
                let pushQuery = "signature=\(PushSignature.compute(token: Self.pushToken, timestamp: t, nonce: nonce))&timestamp=\(t)&nonce=\(nonce)"
                    + "&encrypt_type=aes&msg_signature=\(PushSignature.compute(token: Self.pushToken, timestamp: t, nonce: nonce, encrypt: encrypted))"
                let push = try await Self.call("POST", "\(base)/wechat/push?\(pushQuery)", body: #"{"ToUserName":"gh_secret","Encrypt":"\#(encrypted)"}"#)
                #expect(push.status == 200 && push.body == "success", "the encrypted push was refused: \(push)")
                let flush = try await Self.call("POST", "\(base)/admin/digests/p/flush", body: "{}", bearer: Self.adminToken)
                #expect(flush.status == 202, "flush: \(flush)")
                var sent = false
                let sendDeadline = Date().addingTimeInterval(30)
                while !sent, Date() < sendDeadline {
                    sent = await wechat.script.accepted.count == 1
                    if !sent { try await Task.sleep(for: .milliseconds(25)) }
                }
                #expect(sent, "the digest was not sent to the fake WeChat")
                #expect(await wechat.script.accepted.first?.body.contains(Self.text) == true, "the sent body does not quote the message")
                #expect(await wechat.script.tokenFetches >= 1)
                #expect(await im.state.onlineStatusCalls >= 1)

                // Refusals: their error bodies must not echo what was presented or expected.
                answers.append(try await Self.call("GET", "\(base)/admin/users/p", bearer: "wrong-\(Self.adminToken.reversed())").body)
                answers.append(try await Self.call("GET", "\(base)/admin/users/p", bearer: Self.adminToken).body)
                answers.append(try await Self.call("POST", "\(base)/im/callback?\(imQuery)&Sign=\(sign.reversed())&RequestTime=\(t)", body: message).body)
                answers.append(try await Self.call("POST", "\(base)/wechat/push?\(pushQuery.replacingOccurrences(of: "nonce=\(nonce)", with: "nonce=1"))",
                                                   body: #"{"ToUserName":"gh_secret","Encrypt":"\#(encrypted)"}"#).body)
                answers.append(try await Self.call("POST", "\(base)/admin/credits", body: #"{"openid":"x","template_id":"nope","count":1}"#, bearer: Self.adminToken).body)
                let metrics = try await Self.call("GET", "\(base)/metrics").body
                await serve.terminate()
                #expect(!serve.wasKilled, "serve did not stop on SIGTERM")
                #expect(serve.exitStatus == 0)

                let check = try await runRoundup(["config", "check", "--config", configFile.path], in: dir, environment: env)
                #expect(check.status == 0, "config check: \(check.stderr)")
                let output = serve.output
                #expect(output.contains("listening"))
                #expect(metrics.contains("roundup_messages_ingested_total 1"))
                #expect(metrics.contains("roundup_access_token_refreshes_total 1"))
                #expect(metrics.contains(#"roundup_digests_total{outcome="sent"} 1"#))

                let accessTokens = [await wechat.script.currentToken]
                let userSigs = Array(await im.state.userSigsSeen)
                #expect(!userSigs.isEmpty, "the fake IM saw no UserSig")
                let places = [("serve output", output), ("error bodies", answers.joined(separator: "\n")), ("/metrics", metrics),
                              ("config check", check.stdout + check.stderr)]
                for secret in secrets.values.sorted() + accessTokens + userSigs + [Self.text] {
                    for (place, text) in places {
                        #expect(!text.contains(secret), "\(secret.prefix(24))… leaked into \(place)")
                    }
                }
            }
        }
    }
}
