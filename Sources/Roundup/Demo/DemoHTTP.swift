import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// The demo's side of the wire: it plays IM, WeChat and the mini program's backend calling the
/// service over loopback HTTP, exactly as they would in production.
struct DemoHTTPClient: Sendable {
    /// `http://127.0.0.1:PORT` of the service.
    let baseURL: String
    let httpClient: HTTPClient

    init(baseURL: String, httpClient: HTTPClient = .shared) {
        self.baseURL = baseURL
        self.httpClient = httpClient
    }

    /// POSTs (or PUTs) a JSON body and returns the status and body text; a transport failure throws.
    func send(put: Bool = false, _ pathAndQuery: String, json: JSONValue, bearer: String? = nil) async throws -> (status: Int, body: String) {
        var request = HTTPClientRequest(url: baseURL + pathAndQuery)
        request.method = put ? .PUT : .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let bearer { request.headers.add(name: "Authorization", value: "Bearer \(bearer)") }
        request.body = .bytes(ByteBuffer(string: json.serialized))
        let response = try await httpClient.execute(request, deadline: .now() + .seconds(10))
        let body = try await response.body.collect(upTo: 1024 * 1024)
        return (Int(response.status.code), String(buffer: body))
    }

    /// Like `send`, but anything other than 200 is an error naming the request.
    @discardableResult
    func expectOK(put: Bool = false, _ pathAndQuery: String, json: JSONValue, bearer: String? = nil) async throws -> String {
        let (status, body) = try await send(put: put, pathAndQuery, json: json, bearer: bearer)
        guard status == 200 else {
            let path = pathAndQuery.split(separator: "?").first.map(String.init) ?? pathAndQuery
            throw DemoError.refused(path: path, status: status, body: String(body.prefix(300)))
        }
        return body
    }
}

extension DemoHTTPClient {
    /// Posts a callback as Tencent IM does: signed with the callback `token` at `now`; anything
    /// other than 200 is an error.
    func imCallback(_ command: String, _ body: JSONValue, sdkAppID: UInt32, token: String, now: Date) async throws {
        let time = String(Int64(now.timeIntervalSince1970.rounded(.down)))
        let sign = IMCallbackSignature.sign(token: token, requestTime: time)
        let query = "SdkAppid=\(sdkAppID)&CallbackCommand=\(command)&contenttype=json&ClientIP=127.0.0.1&OptPlatform=Android"
            + "&Sign=\(sign)&RequestTime=\(time)"
        try await expectOK("/im/callback?" + query, json: body)
    }

    /// A text C2C message from `from` to `to`, as IM's `C2C.CallbackAfterSendMsg` reports it.
    static func c2cBody(from: String, to: String, key: String, seq: Int64, text: String, now: Date) -> JSONValue {
        .object([
            ("CallbackCommand", .string("C2C.CallbackAfterSendMsg")), ("From_Account", .string(from)), ("To_Account", .string(to)),
            ("MsgSeq", .int(seq)), ("MsgRandom", .int(seq * 7919 % 1_000_003)), ("MsgTime", .int(Int64(now.timeIntervalSince1970.rounded(.down)))),
            ("MsgKey", .string(key)), ("OnlineOnlyFlag", .int(0)), ("SendMsgResult", .int(0)),
            ("ErrorInfo", .string("send msg succeed")),
            ("MsgBody", .array([.object([("MsgType", .string("TIMTextElem")), ("MsgContent", .object([("Text", .string(text))]))])])),
        ])
    }
}

/// Why the demo stopped.
public enum DemoError: Error, Equatable, CustomStringConvertible {
    /// The service answered a request with something other than 200.
    case refused(path: String, status: Int, body: String)

    public var description: String {
        switch self {
        case .refused(let path, let status, let body): return "the service answered \(path) with HTTP \(status): \(body)"
        }
    }
}
