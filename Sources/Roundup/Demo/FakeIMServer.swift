import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// A fake of the two IM REST endpoints Roundup calls — `v4/openim/query_online_status` and
/// `v4/group_open_http_svc/get_group_member_info` — on loopback, for the demo, the benchmark and the
/// tests. Like real IM it verifies the admin UserSig of every request and answers errors in the body
/// with HTTP 200; `state` says what to answer and records what was asked.
public struct FakeIMServer: Sendable {
    public let sdkAppID: UInt32
    public let secretKey: String
    /// The only identifier allowed to call (IM requires an App admin, error 60010).
    public let adminIdentifier: String
    /// What the server answers, and what it recorded.
    public let state: FakeIMState
    /// Wall time for UserSig expiry (the tests pin it together with the client's).
    private let now: @Sendable () -> Date

    public init(
        sdkAppID: UInt32 = 1_400_000_000, secretKey: String = "fake-im-secret-key", adminIdentifier: String = "administrator",
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.sdkAppID = sdkAppID
        self.secretKey = secretKey
        self.adminIdentifier = adminIdentifier
        self.state = FakeIMState()
        self.now = now
    }

    /// The server as a Hummingbird application (a `Service`, for a `ServiceGroup`). It binds
    /// `host:port` (port 0: any free port) and reports the real port through `onReady`.
    public func application(
        host: String = "127.0.0.1", port: Int = 0, onReady: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        var logger = Logger(label: "roundup.fake-im")
        logger.logLevel = .critical
        return Application(
            router: router(),
            configuration: .init(address: .hostname(host, port: port), serverName: "FakeIM"),
            onServerRunning: { channel in await onReady(channel.localAddress?.port ?? port) },
            logger: logger)
    }

    /// Runs the server around `body`, which gets its base URL (`http://127.0.0.1:PORT`); the server
    /// stops when `body` returns or throws.
    @discardableResult
    public func withRunning<T>(_ body: (_ baseURL: String) async throws -> T) async throws -> T {
        var logger = Logger(label: "roundup.fake-im")
        logger.logLevel = .critical
        return try await withLoopbackApplication(logger: logger, { onRunning in application(onReady: onRunning) }) { port in
            try await body("http://127.0.0.1:\(port)")
        }
    }

    // MARK: Routes

    private func router() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        let server = self
        router.post("/v4/openim/query_online_status") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 1024 * 1024)
            return await server.handle(request, body) { object in await server.queryOnlineStatus(object) }
        }
        router.post("/v4/group_open_http_svc/get_group_member_info") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 1024 * 1024)
            return await server.handle(request, body) { object in await server.groupMemberInfo(object) }
        }
        return router
    }

    /// What every endpoint does first: scripted failures, latency, authentication, a JSON body.
    private func handle(
        _ request: Request, _ body: ByteBuffer, _ answer: (IMJSONObject) async -> Response
    ) async -> Response {
        let failure = await state.arrive()
        let latency = await state.latency
        if latency > .zero { try? await Task.sleep(for: latency) }
        switch failure {
        case .errorCode(let code, let info): return Self.error(code, info)
        case .httpStatus(let status):
            return Response(
                status: .init(code: status), headers: [.contentType: "text/plain"],
                body: .init(byteBuffer: ByteBuffer(string: "scripted HTTP \(status)")))
        case .delay(let duration): try? await Task.sleep(for: duration)
        case nil: break
        }
        if let refusal = await authenticate(request.uri.queryParameters) { return refusal }
        guard let object = try? IMJSON.parse(Data(body.readableBytesView)).object else {
            return Self.error(60003, "request JSON parse error")
        }
        return await answer(object)
    }

    /// The checks IM makes on the query: sdkappid, then the UserSig, then that the caller is the admin,
    /// answering IM's error code for the first that fails (60012, 70020, 70xxx, 60010); nil when they pass.
    private func authenticate(_ query: Parameters) async -> Response? {
        guard let appIDText = query["sdkappid"].map(String.init), !appIDText.isEmpty else {
            await state.noteAuthenticationFailure()
            return Self.error(60012, "SDKAppID missing in URL")
        }
        guard UInt32(appIDText) == sdkAppID else {
            await state.noteAuthenticationFailure()
            return Self.error(70020, "SDKAppID not found")
        }
        let identifier = query["identifier"].map(String.init) ?? ""
        let userSig = query["usersig"].map(String.init) ?? ""
        await state.noteUserSig(userSig)
        do {
            _ = try UserSig.verify(
                userSig, sdkAppID: sdkAppID, key: secretKey, identifier: identifier,
                now: Int64(now().timeIntervalSince1970.rounded(.down)))
        } catch {
            await state.noteAuthenticationFailure()
            return Self.error(error.imErrorCode, "UserSig check failed: \(error)")
        }
        guard identifier == adminIdentifier else {
            await state.noteAuthenticationFailure()
            return Self.error(60010, "the request requires App admin permissions")
        }
        return nil
    }

    /// `query_online_status`: at most 500 accounts; unknown accounts land in `ErrorList`.
    private func queryOnlineStatus(_ body: IMJSONObject) async -> Response {
        guard let accounts = body["To_Account"]?.array, !accounts.isEmpty else {
            return Self.error(90001, "To_Account is missing or empty")
        }
        var users: [String] = []
        for account in accounts {
            guard case .string(let user) = account else { return Self.error(90003, "To_Account element is not a string") }
            users.append(user)
        }
        guard users.count <= 500 else { return Self.error(90011, "more than 500 accounts in one request") }
        if let hold = await state.onlineStatusHold(for: users) { try? await Task.sleep(for: hold) }
        let key = await state.legacyStateKey ? "State" : "Status"
        var results: [JSONValue] = []
        var errors: [JSONValue] = []
        for (user, status) in await state.onlineStatus(of: users) {
            let name: String
            switch status {
            case .online: name = "Online"
            case .pushOnline: name = "PushOnline"
            case .offline: name = "Offline"
            case .notImported:
                errors.append(.object([("To_Account", .string(user)), ("ErrorCode", .int(70107))]))
                continue
            }
            results.append(.object([("To_Account", .string(user)), (key, .string(name))]))
        }
        var fields = Self.ok
        fields.append(("QueryResult", .array(results)))
        if !errors.isEmpty { fields.append(("ErrorList", .array(errors))) }
        return Self.json(.object(fields))
    }

    /// `get_group_member_info`: pages by `Offset`, or by the `Next` cursor for Community groups,
    /// which refuse `Offset`. AVChatRoom members cannot be listed.
    private func groupMemberInfo(_ body: IMJSONObject) async -> Response {
        guard let groupID = body["GroupId"]?.string, !groupID.isEmpty else {
            return Self.error(10004, "GroupId is missing")
        }
        let limit = Int(body["Limit"]?.int64 ?? 0)
        guard (0...200).contains(limit) else { return Self.error(10004, "Limit must be at most 200") }
        guard let group = await state.membersCall(groupID) else {
            return Self.error(10010, "the group does not exist or was dismissed")
        }
        if group.type.caseInsensitiveCompare("AVChatRoom") == .orderedSame {
            return Self.error(10007, "AVChatRoom members cannot be listed")
        }
        let community = group.type.caseInsensitiveCompare("Community") == .orderedSame
        let start: Int
        if community {
            if let offset = body["Offset"]?.int64, offset != 0 {
                return Self.error(10004, "Offset is not supported for Community groups; use Next")
            }
            let next = body["Next"]?.string ?? ""
            if next.isEmpty {
                start = 0
            } else {
                guard next.hasPrefix("cursor-"), let index = Int(next.dropFirst(7)), index >= 0 else {
                    return Self.error(10004, "invalid Next cursor")
                }
                start = index
            }
        } else {
            start = Int(max(0, body["Offset"]?.int64 ?? 0))
        }
        let pageSize = limit == 0 ? group.members.count : limit
        let end = min(group.members.count, start + pageSize)
        let page = start < end ? group.members[start..<end] : []
        let list: [JSONValue] = page.map { member in
            .object([
                ("Member_Account", .string(member.account)),
                ("Role", .string(member.role ?? "Member")),
                ("JoinTime", .int(1_740_000_000)),
                ("MsgFlag", .string(member.msgFlag ?? "AcceptAndNotify")),
                ("NameCard", .string(member.nameCard ?? "")),
            ])
        }
        var fields = Self.ok
        fields.append(("MemberNum", .int(Int64(group.members.count))))
        fields.append(("MemberList", .array(list)))
        fields.append(("Next", .string(community && end < group.members.count ? "cursor-\(end)" : "")))
        return Self.json(.object(fields))
    }

    private static let ok: [(String, JSONValue)] = [
        ("ActionStatus", .string("OK")), ("ErrorInfo", .string("")), ("ErrorCode", .int(0)),
        ("RequestId", .string("Id-fake-im")),
    ]

    /// IM's error shape: HTTP 200, `ActionStatus: FAIL`, the code and reason in the body.
    private static func error(_ code: Int, _ info: String) -> Response {
        json(.object([
            ("ActionStatus", .string("FAIL")), ("ErrorInfo", .string(info)), ("ErrorCode", .int(Int64(code))),
            ("RequestId", .string("Id-fake-im")),
        ]))
    }

    private static func json(_ value: JSONValue) -> Response {
        Response(
            status: .ok, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: value.serialized)))
    }
}
