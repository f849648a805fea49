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

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

@Suite("Secrets stay out of logs", .serialized)
struct SecretsInLogsTests {
    @Test("a serve run at trace level logs no secret, no access token and no message text, and /metrics shows none")
    func noSecrets() async throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let secrets = [
            "ROUNDUP_IM_CALLBACK_TOKEN": "cbtoken-SECRET-1", "ROUNDUP_SERVER_ADMIN_TOKEN": "admin-SECRET-2",
            "ROUNDUP_WECHAT_APP_SECRET": "appsecret-SECRET-3", "ROUNDUP_IM_SECRET_KEY": "imkey-SECRET-4",
            "ROUNDUP_WECHAT_PUSH_TOKEN": "pushtokenSECRET5", "ROUNDUP_WECHAT_ENCODING_AES_KEY": String(repeating: "S", count: 43),
        ]
        let log = dir.appendingPathComponent("serve.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let process = Process()
        process.executableURL = TestSupport.roundupBinary
        process.arguments = ["serve", "--log-level", "trace"]
        process.currentDirectoryURL = dir
        var env = ["PATH": "/usr/bin:/bin", "HOME": dir.path, "ROUNDUP_SERVER_PORT": "0", "ROUNDUP_IM_SDK_APP_ID": "1400000000",
                   "ROUNDUP_WECHAT_APP_ID": "wx_fake", "ROUNDUP_WECHAT_API_BASE_URL": "http://127.0.0.1:1"]
        env.merge(secrets) { a, _ in a }
        process.environment = env
        process.standardOutput = try FileHandle(forWritingTo: log)
        process.standardError = try FileHandle(forWritingTo: log)
        try process.run()
        defer { if process.isRunning { process.terminate() } }

        var port: Int?
        for _ in 0..<600 where port == nil {
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            if let range = text.range(of: #"address=127\.0\.0\.1:(\d+)"#, options: .regularExpression) {
                port = Int(text[range].split(separator: ":").last ?? "")
            }
            if port == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        let p = try #require(port)
        let t = String(Int64(Date().timeIntervalSince1970))
        let sign = IMCallbackSignature.sign(token: "cbtoken-SECRET-1", requestTime: t)
        var callback = URLRequest(url: URL(string: "http://127.0.0.1:\(p)/im/callback?SdkAppid=1400000000&CallbackCommand=C2C.CallbackAfterSendMsg&OptPlatform=Web&Sign=\(sign)&RequestTime=\(t)")!)
        callback.httpMethod = "POST"
        callback.httpBody = Data(#"{"From_Account":"t","To_Account":"p","MsgKey":"k1","MsgTime":1,"SendMsgResult":0,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"PRIVATE-TEXT-XYZ"}}]}"#.utf8)
        let (callbackBody, callbackResponse) = try await URLSession.shared.data(for: callback)
        #expect((callbackResponse as? HTTPURLResponse)?.statusCode == 200)
        #expect(String(decoding: callbackBody, as: UTF8.self).contains(#""ActionStatus":"OK""#))
        var admin = URLRequest(url: URL(string: "http://127.0.0.1:\(p)/admin/users/p")!)
        admin.httpMethod = "PUT"
        admin.setValue("Bearer admin-SECRET-2", forHTTPHeaderField: "Authorization")
        admin.setValue("application/json", forHTTPHeaderField: "Content-Type")
        admin.httpBody = Data(#"{"openid":"oP"}"#.utf8)
        let (_, adminResponse) = try await URLSession.shared.data(for: admin)
        #expect((adminResponse as? HTTPURLResponse)?.statusCode == 200)
        let (metrics, _) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(p)/metrics")!)
        process.terminate()
        process.waitUntilExit()

        let output = try String(contentsOf: log, encoding: .utf8) + String(decoding: metrics, as: UTF8.self)
        #expect(output.contains("listening"))
        #expect(output.contains("roundup_messages_ingested_total 1"))
        for secret in secrets.values + ["PRIVATE-TEXT-XYZ"] {
            #expect(!output.contains(secret), "\(secret) leaked")
        }
    }
}
