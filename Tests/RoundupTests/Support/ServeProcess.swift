import Foundation
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif

@testable import Roundup

// The real `roundup serve` binary as a child process, and a client posting signed callbacks to it.
// A test that measures how the service answers in time runs it this way: the child has its own
// cooperative thread pool, which the hundreds of tests running beside it in this process cannot
// starve.

/// A `roundup serve` child process whose stdout and stderr go to one log file per run.
final class ServeProcess: @unchecked Sendable {
    let process: Process
    let log: URL

    private init(process: Process, log: URL) {
        self.process = process
        self.log = log
    }

    /// Writes `roundup.yaml` in `dir` — loopback on a free port, signed IM callbacks with
    /// `callbackToken`, then `storage` and `extra` as given (YAML lines, unindented section
    /// headers) — and starts `serve` with it.
    static func startSigned(
        in dir: URL, callbackToken: String, storage: String, extra: String = "", logLevel: String = "info"
    ) async throws -> ServeProcess {
        let config = dir.appendingPathComponent("roundup.yaml")
        try """
            server:
              host: 127.0.0.1
              port: 0
            storage:
            \(storage)
            im:
              sdk_app_id: \(ServiceHarness.sdkAppID)
              callback_token: "\(callbackToken)"
            \(extra)

            """.write(to: config, atomically: true, encoding: .utf8)
        return try await start(in: dir, config: config, logLevel: logLevel)
    }

    /// Starts `serve` in `dir` with `config` (nil: the default `./roundup.yaml`, or none).
    static func start(in dir: URL, config: URL?, logLevel: String = "info", environment: [String: String] = [:]) async throws -> ServeProcess {
        let log = dir.appendingPathComponent("serve-\(UUID().uuidString.prefix(8)).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let process = Process()
        process.executableURL = TestSupport.roundupBinary
        process.arguments = ["serve"] + (config.map { ["--config", $0.path] } ?? []) + ["--log-level", logLevel]
        process.currentDirectoryURL = dir
        var env = ["PATH": "/usr/bin:/bin", "HOME": dir.path]
        env.merge(environment) { _, new in new }
        process.environment = env
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        // The child has its own copy: ours is closed, or every started `serve` leaks one (see `runTool`).
        defer { try? handle.close() }
        await TestSupport.waitForFewDescriptors()
        try process.run()
        return ServeProcess(process: process, log: log)
    }

    var pid: Int32 { process.processIdentifier }
    var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    /// Waits (bounded) for the "listening" line and returns the port it names.
    func waitUntilListening(timeout: Double = 60) async throws -> Int {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let text = output
            if let port = ServeChild.listeningPort(in: text) { return port }
            if !process.isRunning { throw ServeDidNotStart(output: text) }
            try await Task.sleep(for: .milliseconds(25))
        }
        throw ServeDidNotStart(output: output)
    }

    /// SIGKILL, then wait for the process to be gone.
    func sigkill() async {
        if process.isRunning { kill(pid, SIGKILL) }
        await waitUntilDead()
    }

    /// Waits (bounded, without blocking a thread) for the process to end; SIGKILL at the bound.
    func waitUntilDead(timeout: Double = 60) async {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        if process.isRunning { kill(pid, SIGKILL) }
        process.waitUntilExit()
    }

    /// SIGTERM (graceful shutdown), then wait.
    func terminate() async {
        if process.isRunning { process.terminate() }
        await waitUntilDead()
    }

    var wasKilled: Bool { process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL }
    var exitStatus: Int32 { process.terminationStatus }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}

/// `serve` exited, or never said it listens.
struct ServeDidNotStart: Error, CustomStringConvertible {
    let output: String
    var description: String { "roundup serve did not start listening:\n\(output.suffix(2_000))" }
}


/// Posts signed IM callbacks to a running serve.
struct SignedCallbackClient: @unchecked Sendable {
    let port: Int
    let token: String
    let session: URLSession

    init(port: Int, token: String, connections: Int) {
        self.port = port
        self.token = token
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpMaximumConnectionsPerHost = connections
        configuration.timeoutIntervalForRequest = 10
        session = URLSession(configuration: configuration)
    }

    func close() { session.invalidateAndCancel() }

    /// True when the service answered 200 with IM's OK body: the acknowledgement IM relies on.
    func c2c(from: String, to: String, key: String, text: String) async -> Bool {
        let now = Int64(Date().timeIntervalSince1970)
        return await post("C2C.CallbackAfterSendMsg", [
            "CallbackCommand": "C2C.CallbackAfterSendMsg", "From_Account": from, "To_Account": to, "MsgSeq": 1,
            "MsgRandom": abs(key.hashValue % 1_000_000), "MsgTime": now, "MsgKey": key, "OnlineOnlyFlag": 0, "SendMsgResult": 0,
            "ErrorInfo": "send msg succeed",
            "MsgBody": [["MsgType": "TIMTextElem", "MsgContent": ["Text": text]]],
        ])
    }

    /// A `State.StateChange` callback: `action` is `Login`, `Logout` or `Disconnect`.
    func stateChange(user: String, action: String, eventTime: Int64 = Int64(Date().timeIntervalSince1970 * 1000)) async -> Bool {
        await post("State.StateChange", [
            "CallbackCommand": "State.StateChange", "EventTime": eventTime, "Info": ["Action": action, "To_Account": user, "Reason": "x"],
        ])
    }

    /// Posts one signed callback; true when it was answered 200 with IM's OK body.
    func post(_ command: String, _ body: [String: Any]) async -> Bool {
        let now = Int64(Date().timeIntervalSince1970)
        let sign = IMCallbackSignature.sign(token: token, requestTime: String(now))
        let url = URL(string: "http://127.0.0.1:\(port)/im/callback?SdkAppid=1400000000&CallbackCommand=\(command)&contenttype=json&ClientIP=127.0.0.1&OptPlatform=Web&Sign=\(sign)&RequestTime=\(now)")!
        var request = URLRequest(url: url)
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = try? JSONSerialization.data(withJSONObject: body)
        do {
            let (data, response) = try await session.data(for: request)
            return (response as? HTTPURLResponse)?.statusCode == 200
                && String(decoding: data, as: UTF8.self).contains(#""ActionStatus":"OK""#)
        } catch {
            return false
        }
    }
}
