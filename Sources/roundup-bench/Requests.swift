import Foundation
import NIOCore
import Roundup

/// The names the benchmark gives its users, messages and credentials, so that the scenarios and
/// their checks agree.
enum BenchIDs {
    static let sdkAppID: UInt32 = 1_400_000_000
    static let callbackToken = "bench-callback-token"
    static let templateID = "BENCH_TEMPLATE"
    static let teachers = 200

    /// An IM UserID of a parent: 20 characters (too long for Swift's inline small strings, as
    /// most real ids are), like the ids a school's mini program assigns.
    static func parent(_ i: Int) -> String {
        let digits = String(i)
        return "sch42_parent_" + String(repeating: "0", count: max(0, 7 - digits.count)) + digits
    }

    static func teacher(_ i: Int) -> String { "teacher_\(i)" }
    static func openid(_ i: Int) -> String { "oBench_\(i)_k2sgVt7hMZOPfL2M" }
}

/// IM's signature on a callback URL, recomputed once a second as the
/// `RequestTime` moves. Used on the generator's event loop only.
final class CallbackSigner {
    private var second: Int64 = -1
    private var signed = ""

    /// The query string of a signed callback for `command`.
    func query(command: String) -> String {
        let now = Int64(Date().timeIntervalSince1970)
        if now != second {
            second = now
            let time = String(now)
            signed = "&Sign=\(IMCallbackSignature.sign(token: BenchIDs.callbackToken, requestTime: time))&RequestTime=\(time)"
        }
        return "SdkAppid=\(BenchIDs.sdkAppID)&CallbackCommand=\(command)&contenttype=json&ClientIP=127.0.0.1&OptPlatform=Android" + signed
    }
}

/// IM's success reply must carry `"ErrorCode":0`.
private let errorCodeZero = Array(#""ErrorCode":0"#.utf8)

/// Writes one POST of a JSON body to `/im/callback`.
private func writeCallback(_ buffer: inout ByteBuffer, query: String, body: String) {
    buffer.writeString("POST /im/callback?")
    buffer.writeString(query)
    buffer.writeString(" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ")
    buffer.writeString(String(body.utf8.count))
    buffer.writeString("\r\n\r\n")
    buffer.writeString(body)
}

/// `C2C.CallbackAfterSendMsg` callbacks: request `seq` is message `<prefix><seq>` from one of
/// the teachers to parent `seq % users`.
final class C2CMessageWriter: RequestWriter, @unchecked Sendable {
    let prefix: String
    let users: Int
    private let signer = CallbackSigner()
    private static let texts = [
        "请明天带作业本和红领巾", "下午三点家长会，请准时参加", "孩子今天表现很好，数学小测满分", "周五春游，请准备午餐和水",
    ]

    init(prefix: String, users: Int) {
        self.prefix = prefix
        self.users = users
    }

    /// The MsgKey of request `seq`.
    func msgKey(_ seq: Int) -> String { prefix + String(seq) }

    /// The recipient of request `seq`.
    func recipient(_ seq: Int) -> Int { seq % users }

    func write(seq: Int, into buffer: inout ByteBuffer) {
        let now = Int64(Date().timeIntervalSince1970)
        let body = """
            {"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"\(BenchIDs.teacher(seq % BenchIDs.teachers))",\
            "To_Account":"\(BenchIDs.parent(recipient(seq)))","MsgSeq":\(seq & 0xFFFF_FFFF),"MsgRandom":\((seq &* 2_654_435_761) & 0xFFFF_FFFF),\
            "MsgTime":\(now),"MsgKey":"\(msgKey(seq))","MsgId":"bench-\(msgKey(seq))","OnlineOnlyFlag":0,"SendMsgResult":0,\
            "ErrorInfo":"send msg succeed","UnreadMsgNum":\(seq % 7 + 1),\
            "MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"\(Self.texts[seq % Self.texts.count])"}}]}
            """
        writeCallback(&buffer, query: signer.query(command: "C2C.CallbackAfterSendMsg"), body: body)
    }

    func isExpected(status: Int, body: ByteBufferView) -> Bool { status == 200 && body.contains(errorCodeZero) }
}

/// `State.StateChange` callbacks: request `seq` is for user `seq % users`, Login and Logout in
/// turn, each with a newer `EventTime` than the last for that user (so every event applies).
final class StateChangeWriter: RequestWriter, @unchecked Sendable {
    let users: Int
    let baseMillis: Int64
    private let signer = CallbackSigner()

    init(users: Int) {
        self.users = users
        self.baseMillis = Int64(Date().timeIntervalSince1970 * 1000)
    }

    func write(seq: Int, into buffer: inout ByteBuffer) {
        let login = (seq / users) % 2 == 0
        let body = """
            {"CallbackCommand":"State.StateChange","EventTime":\(baseMillis + Int64(seq)),\
            "Info":{"Action":"\(login ? "Login" : "Logout")","To_Account":"\(BenchIDs.parent(seq % users))",\
            "Reason":"\(login ? "Register" : "Unregister")"}}
            """
        writeCallback(&buffer, query: signer.query(command: "State.StateChange"), body: body)
    }

    func isExpected(status: Int, body: ByteBufferView) -> Bool { status == 200 && body.contains(errorCodeZero) }
}

/// `GET /healthz`, answered 200 when the database answers.
final class HealthWriter: RequestWriter, @unchecked Sendable {
    func write(seq: Int, into buffer: inout ByteBuffer) {
        buffer.writeString("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    }

    func isExpected(status: Int, body: ByteBufferView) -> Bool { status == 200 }
}
