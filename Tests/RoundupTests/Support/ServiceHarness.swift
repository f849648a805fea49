import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing

@testable import Roundup

/// A Roundup runtime over a temporary database and a manual clock, plus helpers to post
/// signed IM callbacks to it over loopback HTTP.
struct ServiceHarness {
    static let sdkAppID: UInt32 = 1_400_000_000
    static let token = "test-callback-token"
    /// 2025-03-04 08:00:00 UTC (16:00 in Shanghai).
    static let start = Date(timeIntervalSince1970: 1_741_075_200)

    let dir: URL
    let clock: ManualWallClock
    let runtime: RoundupRuntime

    /// - Parameter yaml: extra config appended to the harness's own (storage and IM keys).
    init(yaml: String = "", token: String = ServiceHarness.token, env: [String: String] = [:]) throws {
        dir = try TestSupport.temporaryDirectory()
        clock = ManualWallClock(ServiceHarness.start)
        let base = """
            storage:
              path: \(dir.appendingPathComponent("roundup.sqlite").path)
            server:
              port: 0
            im:
              sdk_app_id: \(ServiceHarness.sdkAppID)
              callback_token: "\(token)"

            """
        let config = try ConfigLoader(environment: env).load(yaml: base + yaml).config
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        runtime = try RoundupRuntime(config: config, clock: clock, logger: logger)
    }

    func remove() { try? FileManager.default.removeItem(at: dir) }

    var store: RoundupStore { runtime.store }

    /// The callback URL IM would call, signed with the harness token at the clock's time.
    func callbackURI(_ command: String, platform: String = "Web", sign: Bool = true, appID: UInt32 = ServiceHarness.sdkAppID, requestTime: Date? = nil) -> String {
        var uri = "/im/callback?SdkAppid=\(appID)&CallbackCommand=\(command)&contenttype=json&ClientIP=1.2.3.4&OptPlatform=\(platform)"
        if sign {
            let time = String(Int64((requestTime ?? clock.now).timeIntervalSince1970))
            uri += "&Sign=\(IMCallbackSignature.sign(token: ServiceHarness.token, requestTime: time))&RequestTime=\(time)"
        }
        return uri
    }

    /// Runs `body` with a live HTTP client against the service.
    func withClient<T: Sendable>(_ body: @Sendable (any TestClientProtocol) async throws -> T) async throws -> T {
        try await runtime.buildApplication().test(.live, body)
    }
}

/// JSON bodies of the callbacks, in the shapes Tencent IM sends.
enum Callbacks {
    static func c2c(
        from: String, to: String, key: String, text: String = "请明天带作业本", msgTime: Int64 = 1_741_075_200, result: Int = 0,
        onlineOnly: Int = 0, custom: String? = nil, command: String = "C2C.CallbackAfterSendMsg"
    ) -> [String: Any] {
        var body: [String: Any] = [
            "CallbackCommand": command, "From_Account": from, "To_Account": to, "MsgSeq": 1, "MsgRandom": 2,
            "MsgTime": msgTime, "MsgKey": key, "OnlineOnlyFlag": onlineOnly, "SendMsgResult": result,
            "MsgBody": [["MsgType": "TIMTextElem", "MsgContent": ["Text": text]]],
        ]
        if let custom { body["CloudCustomData"] = custom }
        return body
    }

    static func state(_ user: String, _ action: String, eventTime: Int64) -> [String: Any] {
        ["CallbackCommand": "State.StateChange", "EventTime": eventTime, "Info": ["Action": action, "To_Account": user, "Reason": "x"]]
    }

    static func report(reader: String, peer: String, lastReadTime: Int64) -> [String: Any] {
        ["CallbackCommand": "C2C.CallbackAfterMsgReport", "Report_Account": reader, "Peer_Account": peer,
         "LastReadTime": lastReadTime, "UnreadMsgNum": 0, "EventTime": lastReadTime * 1000]
    }

    static func withdraw(from: String, to: String, key: String) -> [String: Any] {
        ["CallbackCommand": "C2C.CallbackAfterMsgWithDraw", "From_Account": from, "To_Account": to, "MsgKey": key, "UnreadMsgNum": 0]
    }

    static func group(id: String, seq: Int64, from: String, type: String = "Public", mentions: [String] = [], atAll: Bool = false) -> [String: Any] {
        var at: [[String: Any]] = mentions.map { ["GroupAtAllFlag": 0, "GroupAt_Account": $0] }
        if atAll { at.append(["GroupAtAllFlag": 1]) }
        return ["CallbackCommand": "Group.CallbackAfterSendMsg", "GroupId": id, "Type": type, "From_Account": from,
                "Operator_Account": from, "Random": 7, "MsgSeq": seq, "MsgTime": 1_741_075_200, "OnlineOnlyFlag": 0,
                "MsgBody": [["MsgType": "TIMTextElem", "MsgContent": ["Text": "本周五下午两点运动会"]]],
                "EventTime": "1741075200123", "GroupAtInfo": at]
    }

    static func buffer(_ object: [String: Any]) -> ByteBuffer {
        ByteBuffer(bytes: try! JSONSerialization.data(withJSONObject: object))
    }
}

extension TestClientProtocol {
    /// Posts a callback body; returns status and body text.
    @discardableResult
    func post(_ uri: String, _ body: [String: Any]) async throws -> (status: Int, body: String) {
        try await execute(uri: uri, method: .post, headers: [.contentType: "application/json"], body: Callbacks.buffer(body)) { r in
            (Int(r.status.code), String(buffer: r.body))
        }
    }

    @discardableResult
    func post(_ uri: String, raw: String) async throws -> (status: Int, body: String) {
        try await execute(uri: uri, method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: raw)) { r in
            (Int(r.status.code), String(buffer: r.body))
        }
    }
}
