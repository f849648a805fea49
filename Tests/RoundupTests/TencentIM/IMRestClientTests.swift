import Foundation
import Synchronization
import Testing

@testable import Roundup

@Suite("IM REST client against the fake IM server")
struct IMRestClientTests {
    static let secret = "fake-im-secret-key"

    /// A client for the fake at `baseURL`, with an optional pinned clock.
    static func client(
        _ baseURL: String, secret: String = secret, identifier: String = "administrator",
        timeout: Duration = .seconds(5), now: @escaping @Sendable () -> Date = { Date() }
    ) -> IMRestClient {
        IMRestClient(configuration: IMRestConfiguration(
            baseURL: baseURL + "/", sdkAppID: 1_400_000_000, adminIdentifier: identifier, secretKey: secret,
            timeout: timeout, now: now))
    }

    /// Members `prefix_000…` with a name card each.
    static func members(_ count: Int, prefix: String = "parent") -> [IMGroupMember] {
        (0..<count).map { i in
            IMGroupMember(
                account: "\(prefix)_\(String(format: "%03d", i))", msgFlag: i % 10 == 0 ? "AcceptNotNotify" : "AcceptAndNotify",
                nameCard: "家长\(i)", role: "Member")
        }
    }

    @Test("1,200 users are asked in 3 calls of at most 500, duplicates once")
    func batching() async throws {
        let fake = FakeIMServer()
        let users = (0..<1_200).map { "parent_\($0)" }
        await fake.state.setStatus(.online, for: Array(users.prefix(100)))
        await fake.state.setStatus(.pushOnline, for: Array(users[100..<200]))
        try await fake.withRunning { base in
            let result = try await Self.client(base).queryOnlineStatus(users + ["parent_1", "parent_2"])
            #expect(result.count == 1_200)
            #expect(result["parent_0"] == .online)
            #expect(result["parent_150"] == .pushOnline)
            #expect(result["parent_1199"] == .offline)
        }
        #expect(await fake.state.onlineStatusCalls == 3)
        #expect(await fake.state.largestOnlineBatch == 500)
        #expect(await fake.state.onlineBatchSizes == [500, 500, 200])
    }

    @Test("no users means no call")
    func emptyQuery() async throws {
        let fake = FakeIMServer()
        try await fake.withRunning { base in
            let result = try await Self.client(base).queryOnlineStatus([])
            #expect(result.isEmpty)
        }
        #expect(await fake.state.requests == 0)
    }

    @Test("the older per-user key State reads like Status", arguments: [false, true])
    func stateOrStatus(legacy: Bool) async throws {
        let fake = FakeIMServer()
        await fake.state.useLegacyStateKey(legacy)
        await fake.state.setStatus(.online, for: ["teacher_zhang"])
        await fake.state.setStatus(.pushOnline, for: ["parent_001"])
        try await fake.withRunning { base in
            let result = try await Self.client(base).queryOnlineStatus(["teacher_zhang", "parent_001", "parent_002"])
            #expect(result == ["teacher_zhang": .online, "parent_001": .pushOnline, "parent_002": .offline])
        }
    }

    @Test("accounts in ErrorList come back with their error code")
    func errorList() async throws {
        let fake = FakeIMServer()
        await fake.state.setStatus(.notImported, for: ["ghost"])
        try await fake.withRunning { base in
            let result = try await Self.client(base).queryOnlineStatus(["ghost", "parent_001"])
            #expect(result == ["ghost": .error(code: 70107), "parent_001": .offline])
        }
    }

    @Test("status names are read case-insensitively; unknown ones count as offline")
    func statusNames() {
        #expect(IMOnlineStatus(name: "Online") == .online)
        #expect(IMOnlineStatus(name: "PUSHONLINE") == .pushOnline)
        #expect(IMOnlineStatus(name: "Offline") == .offline)
        #expect(IMOnlineStatus(name: "Away") == .offline)
    }

    @Test("a 250-member group is read in 3 Offset pages of 100")
    func offsetPaging() async throws {
        let fake = FakeIMServer()
        let members = Self.members(250)
        await fake.state.setGroup("@TGS#2CLASS3B", type: "Public", members: members)
        try await fake.withRunning { base in
            let result = try await Self.client(base).groupMembers(groupID: "@TGS#2CLASS3B")
            #expect(result == members)
        }
        #expect(await fake.state.groupMemberCalls == 3)
    }

    @Test("a group of exactly 200 stops at MemberNum without an empty third page")
    func exactPages() async throws {
        let fake = FakeIMServer()
        await fake.state.setGroup("g", members: Self.members(200))
        try await fake.withRunning { base in
            let result = try await Self.client(base).groupMembers(groupID: "g")
            #expect(result.count == 200)
        }
        #expect(await fake.state.groupMemberCalls == 2)
    }

    @Test("a Community group is read with the Next cursor, which refuses Offset")
    func nextPaging() async throws {
        let fake = FakeIMServer()
        let members = Self.members(250, prefix: "member")
        await fake.state.setGroup("@TGS#_@TGS#cSCHOOLCOMM", type: "Community", members: members)
        try await fake.withRunning { base in
            let result = try await Self.client(base).groupMembers(groupID: "@TGS#_@TGS#cSCHOOLCOMM")
            #expect(result == members)
        }
        #expect(await fake.state.groupMemberCalls == 3)
    }

    @Test("roles are trimmed and empty name cards are nil")
    func memberFields() async throws {
        let fake = FakeIMServer()
        await fake.state.setGroup("g", members: [
            IMGroupMember(account: "teacher_zhang", msgFlag: "AcceptAndNotify", nameCard: "张老师", role: "Owner"),
            IMGroupMember(account: "parent_001", msgFlag: "AcceptNotNotify", nameCard: "", role: "Member "),
        ])
        try await fake.withRunning { base in
            let result = try await Self.client(base).groupMembers(groupID: "g")
            #expect(result == [
                IMGroupMember(account: "teacher_zhang", msgFlag: "AcceptAndNotify", nameCard: "张老师", role: "Owner"),
                IMGroupMember(account: "parent_001", msgFlag: "AcceptNotNotify", nameCard: nil, role: "Member"),
            ])
        }
    }

    @Test("an empty group, a missing group and an AVChatRoom")
    func groupErrors() async throws {
        let fake = FakeIMServer()
        await fake.state.setGroup("empty", members: [])
        await fake.state.setGroup("live", type: "AVChatRoom", members: Self.members(3))
        try await fake.withRunning { base in
            let client = Self.client(base)
            let empty = try await client.groupMembers(groupID: "empty")
            #expect(empty.isEmpty)
            await #expect(throws: IMRestError.api(code: 10010, info: "the group does not exist or was dismissed")) {
                try await client.groupMembers(groupID: "missing")
            }
            await #expect {
                try await client.groupMembers(groupID: "live")
            } throws: { ($0 as? IMRestError).map { if case .api(10007, _) = $0 { true } else { false } } ?? false }
        }
    }

    @Test("a wrong secret key is refused by the fake with 70009")
    func badSecret() async throws {
        let fake = FakeIMServer()
        try await fake.withRunning { base in
            await #expect {
                try await Self.client(base, secret: "not-the-secret").queryOnlineStatus(["parent_001"])
            } throws: { ($0 as? IMRestError).map { if case .api(70009, _) = $0 { true } else { false } } ?? false }
        }
        #expect(await fake.state.authenticationFailures == 1)
        #expect(await fake.state.onlineStatusCalls == 0)
    }

    @Test("a caller that is not the admin is refused with 60010")
    func notAdmin() async throws {
        let fake = FakeIMServer()
        try await fake.withRunning { base in
            await #expect {
                try await Self.client(base, identifier: "teacher_zhang").queryOnlineStatus(["parent_001"])
            } throws: { ($0 as? IMRestError).map { if case .api(60010, _) = $0 { true } else { false } } ?? false }
        }
    }

    @Test("an expired admin UserSig is refused with 70001")
    func expiredUserSig() async throws {
        let fake = FakeIMServer(now: { Date(timeIntervalSince1970: 1_800_000_000) })
        try await fake.withRunning { base in
            await #expect {
                try await Self.client(base, now: { Date(timeIntervalSince1970: 1_700_000_000) }).queryOnlineStatus(["p"])
            } throws: { ($0 as? IMRestError).map { if case .api(70001, _) = $0 { true } else { false } } ?? false }
        }
    }

    @Test("HTTP 500 is an http error; a scripted ErrorCode is an api error")
    func failures() async throws {
        let fake = FakeIMServer()
        await fake.state.failNext(.httpStatus(500))
        await fake.state.failNext(.errorCode(60007, info: "REST call frequency exceeded"))
        try await fake.withRunning { base in
            let client = Self.client(base)
            await #expect(throws: IMRestError.http(status: 500)) { try await client.queryOnlineStatus(["p"]) }
            await #expect(throws: IMRestError.api(code: 60007, info: "REST call frequency exceeded")) {
                try await client.groupMembers(groupID: "g")
            }
            let recovered = try await client.queryOnlineStatus(["p"])
            #expect(recovered == ["p": .offline])
        }
    }

    @Test("a failure on a later batch fails the whole query")
    func laterBatchFails() async throws {
        let fake = FakeIMServer()
        await fake.state.failAlways(.httpStatus(502))
        try await fake.withRunning { base in
            await #expect(throws: IMRestError.http(status: 502)) {
                try await Self.client(base).queryOnlineStatus((0..<600).map { "u\($0)" })
            }
        }
    }

    @Test("a server slower than the timeout is a transport error")
    func timeout() async throws {
        let fake = FakeIMServer()
        await fake.state.failNext(.delay(.milliseconds(800)))
        try await fake.withRunning { base in
            await #expect {
                try await Self.client(base, timeout: .milliseconds(200)).queryOnlineStatus(["p"])
            } throws: { ($0 as? IMRestError).map { if case .transport = $0 { true } else { false } } ?? false }
        }
    }

    @Test("nothing listening is a transport error")
    func connectionRefused() async throws {
        // Port 9 (discard) on loopback: nothing listens there in the test environment.
        await #expect {
            try await Self.client("http://127.0.0.1:9", timeout: .milliseconds(500)).queryOnlineStatus(["p"])
        } throws: { ($0 as? IMRestError).map { if case .transport = $0 { true } else { false } } ?? false }
    }

    @Test("the admin UserSig is signed once, reused, and signed again when less than an hour remains")
    func userSigCache() async throws {
        let clock = Mutex(Date(timeIntervalSince1970: 1_700_000_000))
        let now: @Sendable () -> Date = { clock.withLock { $0 } }
        let fake = FakeIMServer(now: now)
        await fake.state.setGroup("g", members: Self.members(3))
        try await fake.withRunning { base in
            let client = Self.client(base, now: now)
            _ = try await client.queryOnlineStatus(["p"])
            _ = try await client.groupMembers(groupID: "g")
            #expect(client.userSigGenerations == 1)
            #expect(await fake.state.userSigsSeen.count == 1)
            // 23 h later: still more than an hour left of the 24 h validity.
            clock.withLock { $0 = $0.addingTimeInterval(23 * 3_600) }
            _ = try await client.queryOnlineStatus(["p"])
            #expect(client.userSigGenerations == 1)
            // Past 23 h: less than an hour left, so a fresh one is signed, and it verifies.
            clock.withLock { $0 = $0.addingTimeInterval(1) }
            _ = try await client.queryOnlineStatus(["p"])
            #expect(client.userSigGenerations == 2)
            #expect(await fake.state.userSigsSeen.count == 2)
        }
        #expect(await fake.state.authenticationFailures == 0)
    }

    @Test("the admin UserSig is valid for a day and names the admin")
    func adminUserSigContents() throws {
        let client = Self.client("http://127.0.0.1:1", now: { Date(timeIntervalSince1970: 1_700_000_000.9) })
        let contents = try UserSig.decode(client.adminUserSig())
        #expect(contents.identifier == "administrator")
        #expect(contents.sdkAppID == 1_400_000_000)
        #expect(contents.time == 1_700_000_000 && contents.expire == 86_400)
    }

    @Test("the configuration can come from the im.* settings")
    func fromSettings() {
        var settings = IMSettings()
        settings.sdkAppID = 1_400_000_001
        settings.secretKey = "k"
        settings.apiBaseURL = "https://adminapisgp.im.qcloud.com"
        let configuration = IMRestConfiguration(settings)
        #expect(configuration.sdkAppID == 1_400_000_001)
        #expect(configuration.secretKey == "k")
        #expect(configuration.adminIdentifier == "administrator")
        #expect(configuration.baseURL == "https://adminapisgp.im.qcloud.com")
        #expect(configuration.timeout == .seconds(5))
    }

    @Test("query values are percent-encoded except ASCII unreserved characters")
    func percentEncoding() {
        #expect(IMRestClient.percentEncoded("admin_1-x.y~*") == "admin_1-x.y~*")
        #expect(IMRestClient.percentEncoded("管理员 a&b=c+d/") == "%E7%AE%A1%E7%90%86%E5%91%98%20a%26b%3Dc%2Bd%2F")
    }
}
