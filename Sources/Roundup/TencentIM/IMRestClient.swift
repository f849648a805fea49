import AsyncHTTPClient
import Foundation
import NIOCore
import Synchronization

/// How to reach IM's REST API as the App admin.
///
/// ## Configuration keys
/// - `im.api_base_url`: `baseURL` (default `https://console.tim.qq.com`; the demo and tests use the fake).
/// - `im.sdk_app_id`: `sdkAppID`.
/// - `im.admin_identifier`: `adminIdentifier` (default `administrator`).
/// - `im.secret_key`: `secretKey`, for the admin UserSig.
public struct IMRestConfiguration: Sendable {
    public var baseURL: String
    public var sdkAppID: UInt32
    public var adminIdentifier: String
    public var secretKey: String
    /// Each request's deadline; IM's own timeout is 3 s, so this stays above it.
    public var timeout: Duration
    /// Validity of the admin UserSig Roundup signs for itself.
    public var userSigValidity: Int64
    /// A cached UserSig with less than this left is signed afresh.
    public var userSigRenewal: Int64
    /// Wall time for UserSig `TLS.time` (tests pin it).
    public var now: @Sendable () -> Date

    public init(
        baseURL: String = "https://console.tim.qq.com", sdkAppID: UInt32, adminIdentifier: String = "administrator",
        secretKey: String, timeout: Duration = .seconds(5), userSigValidity: Int64 = 86_400, userSigRenewal: Int64 = 3_600,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.baseURL = baseURL
        self.sdkAppID = sdkAppID
        self.adminIdentifier = adminIdentifier
        self.secretKey = secretKey
        self.timeout = timeout
        self.userSigValidity = userSigValidity
        self.userSigRenewal = userSigRenewal
        self.now = now
    }

    /// The REST settings of a loaded config's `im.*` section.
    public init(_ settings: IMSettings, timeout: Duration = .seconds(5), now: @escaping @Sendable () -> Date = { Date() }) {
        self.init(
            baseURL: settings.apiBaseURL, sdkAppID: settings.sdkAppID, adminIdentifier: settings.adminIdentifier,
            secretKey: settings.secretKey, timeout: timeout, now: now)
    }
}

/// The real IM REST client over AsyncHTTPClient: POST JSON to `{base}/v4/{service}/{command}` with the
/// admin's UserSig in the query, every request with a deadline, every body collected.
public final class IMRestClient: IMRestAPI {
    public let configuration: IMRestConfiguration
    private let baseURL: String
    private let httpClient: HTTPClient
    private let userSigCache = Mutex(UserSigCache())

    /// At most this many accounts per `query_online_status` call.
    public static let onlineStatusBatch = 500
    /// Members per `get_group_member_info` page; IM recommends 100.
    public static let memberPageSize = 100
    /// A bound on pages per group, so a server that never ends the cursor cannot loop us forever
    /// (Community groups hold at most 100,000 members).
    static let maximumPages = 2_000
    /// Largest response body read; IM refuses to produce more than 1 MB (error 10018).
    static let maxResponseBytes = 4 * 1024 * 1024

    /// The admin UserSig in use, and how many were signed (tests check the cache).
    private struct UserSigCache {
        var userSig = ""
        var expiresAt: Int64 = 0
        var generations = 0
    }

    public init(configuration: IMRestConfiguration, httpClient: HTTPClient = .shared) {
        var base = configuration.baseURL
        while base.hasSuffix("/") { base.removeLast() }
        self.baseURL = base
        self.configuration = configuration
        self.httpClient = httpClient
    }

    /// How many admin UserSigs this client has signed.
    var userSigGenerations: Int { userSigCache.withLock { $0.generations } }

    /// The cached admin UserSig, signed afresh when less than `userSigRenewal` seconds remain.
    func adminUserSig() -> String {
        let now = Int64(configuration.now().timeIntervalSince1970.rounded(.down))
        return userSigCache.withLock { cache in
            if !cache.userSig.isEmpty, cache.expiresAt - now >= configuration.userSigRenewal { return cache.userSig }
            cache.userSig = UserSig.generate(
                sdkAppID: configuration.sdkAppID, key: configuration.secretKey, identifier: configuration.adminIdentifier,
                expire: configuration.userSigValidity, time: now)
            cache.expiresAt = now + configuration.userSigValidity
            cache.generations += 1
            return cache.userSig
        }
    }

    public func queryOnlineStatus(_ users: [String]) async throws(IMRestError) -> [String: IMOnlineStatus] {
        var seen = Set<String>()
        let unique = users.filter { seen.insert($0).inserted }
        var result: [String: IMOnlineStatus] = [:]
        result.reserveCapacity(unique.count)
        var start = 0
        while start < unique.count {
            let batch = Array(unique[start..<min(start + Self.onlineStatusBatch, unique.count)])
            start += batch.count
            let answer = try await call(
                "openim", "query_online_status", body: .object([("To_Account", .array(batch.map(JSONValue.string)))]))
            for entry in answer["QueryResult"]?.array ?? [] {
                // `Status` in current docs, `State` in older ones.
                guard let account = entry["To_Account"]?.string,
                    let name = entry["Status"]?.string ?? entry["State"]?.string
                else { continue }
                result[account] = IMOnlineStatus(name: name)
            }
            for entry in answer["ErrorList"]?.array ?? [] {
                guard let account = entry["To_Account"]?.string else { continue }
                result[account] = .error(code: Int(entry["ErrorCode"]?.int64 ?? -1))
            }
        }
        return result
    }

    public func groupMembers(groupID: String) async throws(IMRestError) -> [IMGroupMember] {
        let limit = Self.memberPageSize
        var members: [IMGroupMember] = []
        var seen = Set<String>()
        var offset = 0
        var next: String?
        for _ in 0..<Self.maximumPages {
            var request: [(String, JSONValue)] = [
                ("GroupId", .string(groupID)), ("Limit", .int(Int64(limit))),
                ("MemberInfoFilter", .array([.string("Role"), .string("MsgFlag"), .string("NameCard")])),
            ]
            // The first page sends neither, which both modes read as "from the start".
            if let next {
                request.append(("Next", .string(next)))
            } else if offset > 0 {
                request.append(("Offset", .int(Int64(offset))))
            }
            let answer = try await call("group_open_http_svc", "get_group_member_info", body: .object(request))
            let page = answer["MemberList"]?.array ?? []
            for entry in page {
                guard let account = entry["Member_Account"]?.string, !account.isEmpty, seen.insert(account).inserted else {
                    continue
                }
                let nameCard = entry["NameCard"]?.string
                members.append(IMGroupMember(
                    account: account, msgFlag: entry["MsgFlag"]?.string,
                    nameCard: nameCard?.isEmpty == false ? nameCard : nil,
                    role: entry["Role"]?.string?.trimmingCharacters(in: .whitespaces)))
            }
            offset += page.count
            let total = answer["MemberNum"]?.int64
            let cursor = answer["Next"]?.string ?? ""
            if page.isEmpty { break }
            if let total, members.count >= total { break }
            if !cursor.isEmpty {
                // Community groups page with the cursor.
                next = cursor
                continue
            }
            // Cursor mode ends with an empty `Next`; offset mode with a short page.
            if next != nil || page.count < limit { break }
        }
        return members
    }

    /// One REST call: POST the JSON body, check HTTP status and `ErrorCode`, return the answer object.
    func call(_ service: String, _ command: String, body: JSONValue) async throws(IMRestError) -> IMJSON {
        let query = [
            "sdkappid=\(configuration.sdkAppID)",
            "identifier=\(Self.percentEncoded(configuration.adminIdentifier))",
            "usersig=\(Self.percentEncoded(adminUserSig()))",
            "random=\(UInt32.random(in: .min ... .max))",
            "contenttype=json",
        ].joined(separator: "&")
        var request = HTTPClientRequest(url: "\(baseURL)/v4/\(service)/\(command)?\(query)")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: body.serialized))
        let status: UInt
        let bytes: ByteBuffer
        do {
            let response = try await httpClient.execute(request, deadline: .now() + TimeAmount(configuration.timeout))
            status = response.status.code
            bytes = try await response.body.collect(upTo: Self.maxResponseBytes)
        } catch {
            throw .transport(String(describing: error))
        }
        guard status == 200 else { throw .http(status: Int(status)) }
        guard let answer = try? IMJSON.parse(Data(bytes.readableBytesView)), answer.object != nil else {
            throw .decoding("\(service)/\(command) did not answer a JSON object")
        }
        let code = answer["ErrorCode"]?.int64 ?? 0
        let failed = answer["ActionStatus"]?.string?.uppercased() == "FAIL"
        if code != 0 || failed {
            throw .api(code: Int(code), info: answer["ErrorInfo"]?.string ?? "")
        }
        return answer
    }

    /// A query value with everything but unreserved characters escaped (UserSigs need none).
    static func percentEncoded(_ value: String) -> String {
        value.addingPercentEncoding(withAllowedCharacters: unreserved) ?? value
    }

    /// ASCII letters, digits and `-._~*`; everything else in a query value is escaped.
    private static let unreserved = CharacterSet(
        charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~*")
}
