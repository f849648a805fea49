import Foundation
import Testing

@testable import Roundup

@Suite("WeChat API client against the fake server")
struct WeChatAPIClientTests {
    static let message = SubscribeMessage(
        touser: "o_parent_1", templateID: "TEMPLATE_ID", page: "pages/chat/index", miniprogramState: "formal", lang: "zh_CN",
        data: [.init(key: "thing1", value: "张老师等2人"), .init(key: "number2", value: "5")])

    /// Runs `body` with a fresh fake and a client pointed at it.
    func withFake<T>(
        timeout: Duration = .seconds(5), _ body: (FakeWeChatServer, WeChatAPIClient) async throws -> T
    ) async throws -> T {
        let fake = FakeWeChatServer()
        return try await fake.withRunning { baseURL in
            try await body(fake, WeChatAPIClient(baseURL: baseURL, timeout: timeout))
        }
    }

    @Test("stable_token returns the fake's token with its lifetime; a wrong secret is errcode 40125")
    func stableToken() async throws {
        try await withFake { fake, client in
            let grant = try await client.stableToken(appID: fake.appID, secret: fake.secret)
            #expect(grant.accessToken == (await fake.script.currentToken))
            #expect(grant.expiresIn == 7200)
            await #expect(throws: WeChatAPIError.errcode(40125, "invalid appsecret")) {
                try await client.stableToken(appID: fake.appID, secret: "wrong")
            }
            await #expect(throws: WeChatAPIError.errcode(40013, "invalid appid")) {
                try await client.stableToken(appID: "wx_other", secret: fake.secret)
            }
            #expect(await fake.script.tokenFetches == 3)
            // Normal mode never rotates the token.
            #expect(try await client.stableToken(appID: fake.appID, secret: fake.secret) == grant)
        }
    }

    @Test("a send is accepted with an int64 msgid kept exactly, and the fake records the exact body")
    func sendOK() async throws {
        try await withFake { fake, client in
            let token = try await client.stableToken(appID: fake.appID, secret: fake.secret).accessToken
            let outcome = await client.sendSubscribeMessage(Self.message, accessToken: token)
            #expect(outcome == .sent(msgid: "3248682510344192008"))
            let accepted = await fake.script.accepted
            #expect(accepted.map(\.body) == [Self.message.json.serialized])
            #expect(accepted.map(\.touser) == ["o_parent_1"])
        }
    }

    @Test("a wrong access token is tokenInvalid(40001)")
    func wrongToken() async throws {
        try await withFake { _, client in
            #expect(await client.sendSubscribeMessage(Self.message, accessToken: "nope") == .tokenInvalid(errcode: 40001))
        }
    }

    @Test("a data value that is empty is a content error naming the field")
    func emptyValue() async throws {
        try await withFake { fake, client in
            let token = try await client.stableToken(appID: fake.appID, secret: fake.secret).accessToken
            var message = Self.message
            message.data[1].value = ""
            #expect(
                await client.sendSubscribeMessage(message, accessToken: token)
                    == .contentError(errcode: 47003, errmsg: "argument invalid! data.number2.value is empty"))
        }
    }

    /// A scripted answer and the outcome the client must report.
    struct Scripted: Sendable, CustomTestStringConvertible {
        let name: String
        let step: FakeWeChatScript.Step
        let expected: SendOutcome
        var testDescription: String { name }
    }

    static let scripted: [Scripted] = [
        Scripted(name: "-1 is retryable", step: .errcode(-1, "system error"), expected: .retryable(errcode: "-1", errmsg: "system error")),
        Scripted(name: "43108 is retryable", step: .errcode(43108, "concurrency"), expected: .retryable(errcode: "43108", errmsg: "concurrency")),
        Scripted(name: "43101 is noCredit", step: .errcode(43101, "user refuse to accept the msg"), expected: .noCredit),
        Scripted(name: "45009 is quotaExhausted", step: .errcode(45009, "reach max api daily quota limit"), expected: .quotaExhausted),
        Scripted(
            name: "47003 is a content error with its errmsg", step: .errcode(47003, "argument invalid! data.thing1.value invalid rid: 1"),
            expected: .contentError(errcode: 47003, errmsg: "argument invalid! data.thing1.value invalid rid: 1")),
        Scripted(
            name: "40037 is a config error", step: .errcode(40037, "invalid template id"),
            expected: .configError(errcode: 40037, errmsg: "invalid template id")),
        Scripted(name: "HTTP 500 is in doubt", step: .httpStatus(500), expected: .inDoubt(reason: "HTTP 500")),
        Scripted(name: "HTTP 502 is in doubt", step: .httpStatus(502), expected: .inDoubt(reason: "HTTP 502")),
    ]

    @Test("scripted answers map to their outcomes", arguments: scripted)
    func scriptedAnswers(_ s: Scripted) async throws {
        try await withFake { fake, client in
            let token = try await client.stableToken(appID: fake.appID, secret: fake.secret).accessToken
            await fake.script.enqueue(s.step)
            #expect(await client.sendSubscribeMessage(Self.message, accessToken: token) == s.expected)
            #expect(await fake.script.accepted.isEmpty)
        }
    }

    @Test("an answer slower than the deadline is in doubt, and the fake did send it")
    func deadlineInDoubt() async throws {
        try await withFake { fake, client in
            let token = try await client.stableToken(appID: fake.appID, secret: fake.secret).accessToken
            await fake.script.enqueue(.delay(.milliseconds(900)))
            let impatient = WeChatAPIClient(baseURL: client.baseURL, timeout: .milliseconds(300))
            let outcome = await impatient.sendSubscribeMessage(Self.message, accessToken: token)
            guard case .inDoubt = outcome else {
                Issue.record("expected inDoubt, got \(outcome)")
                return
            }
            // The fake finishes the delayed send after the client gave up; wait for it (bounded).
            for _ in 0..<100 where await fake.script.accepted.isEmpty {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(await fake.script.accepted.count == 1)
        }
    }

    @Test("a connection closed after the request was read is in doubt")
    func closedInDoubt() async throws {
        try await withFake { fake, client in
            let token = try await client.stableToken(appID: fake.appID, secret: fake.secret).accessToken
            await fake.script.enqueue(.closeConnection)
            let outcome = await client.sendSubscribeMessage(Self.message, accessToken: token)
            guard case .inDoubt = outcome else {
                Issue.record("expected inDoubt, got \(outcome)")
                return
            }
            // The next send on a new connection works.
            #expect(await client.sendSubscribeMessage(Self.message, accessToken: token) == .sent(msgid: "3248682510344192008"))
        }
    }

    @Test("a refused connection is retryable: WeChat never saw the request")
    func connectionRefused() async throws {
        // Port 1 on loopback: nothing listens there. (A port freed by a stopped fake could be
        // taken at once by another test's server running in parallel.)
        let client = WeChatAPIClient(baseURL: "http://127.0.0.1:1", timeout: .seconds(1))
        let outcome = await client.sendSubscribeMessage(Self.message, accessToken: "t")
        guard case .retryable = outcome else {
            Issue.record("expected retryable, got \(outcome)")
            return
        }
        await #expect(throws: WeChatAPIError.self) { try await client.stableToken(appID: "a", secret: "s") }
    }

    @Test("40001 once: the sender invalidates, refetches once and succeeds")
    func staleTokenOnce() async throws {
        try await withFake { fake, client in
            let refreshes = CallCounter()
            let tokens = AccessTokenManager(api: client, appID: fake.appID, secret: fake.secret, onRefresh: { refreshes.increment() })
            let sender = SubscribeSender(api: client, tokens: tokens)
            await fake.script.enqueue(.errcode(40001, "invalid credential, access_token is invalid or not latest"))
            #expect(await sender.send(Self.message) == .sent(msgid: "3248682510344192008"))
            #expect(await fake.script.tokenFetches == 2)
            #expect(await fake.script.sendAttempts == 2)
            #expect(refreshes.value == 2)
        }
    }

    @Test("a token rotated with the old one revoked is picked up after one 40001")
    func rotatedToken() async throws {
        try await withFake { fake, client in
            let tokens = AccessTokenManager(api: client, appID: fake.appID, secret: fake.secret)
            let sender = SubscribeSender(api: client, tokens: tokens)
            #expect(await sender.send(Self.message) == .sent(msgid: "3248682510344192008"))
            let rotated = await fake.script.rotateToken(invalidatingPrevious: true)
            #expect(await sender.send(Self.message) == .sent(msgid: "3248682510344192009"))
            #expect(await tokens.cachedToken?.value == rotated)
            #expect(await fake.script.tokenFetches == 2)
        }
    }

    @Test("50 concurrent senders during a token refresh cause exactly one token fetch")
    func fiftySendersOneFetch() async throws {
        // What is tested is one fetch, not speed: on a machine busy with the rest of the suite, 50
        // concurrent sends may take longer than the default 5 s request timeout.
        try await withFake(timeout: .seconds(60)) { fake, client in
            await fake.script.setTokenLatency(.milliseconds(200))
            let tokens = AccessTokenManager(api: client, appID: fake.appID, secret: fake.secret)
            let sender = SubscribeSender(api: client, tokens: tokens)
            let outcomes = await withTaskGroup(of: SendOutcome.self) { group in
                for index in 0..<50 {
                    group.addTask {
                        var message = Self.message
                        message.touser = "o_parent_\(index)"
                        return await sender.send(message)
                    }
                }
                return await group.reduce(into: [SendOutcome]()) { $0.append($1) }
            }
            #expect(await fake.script.tokenFetches == 1)
            let msgids = outcomes.compactMap { outcome -> String? in
                if case .sent(let msgid) = outcome { msgid } else { nil }
            }
            #expect(Set(msgids).count == 50)
        }
    }

    @Test("two sends to one openid never overlap; the fake would have answered 43108")
    func perOpenIDSerialized() async throws {
        try await withFake { fake, client in
            await fake.script.setSendLatency(.milliseconds(60))
            let sender = SubscribeSender(api: client, tokens: AccessTokenManager(api: client, appID: fake.appID, secret: fake.secret))
            let outcomes = await withTaskGroup(of: SendOutcome.self) { group in
                for index in 0..<6 {
                    group.addTask {
                        var message = Self.message
                        message.touser = index < 4 ? "o_same" : "o_other_\(index)"
                        return await sender.send(message)
                    }
                }
                return await group.reduce(into: [SendOutcome]()) { $0.append($1) }
            }
            #expect(await fake.script.overlaps == 0)
            #expect(await fake.script.accepted.filter { $0.touser == "o_same" }.count == 4)
            #expect(outcomes.allSatisfy { if case .sent = $0 { true } else { false } })
        }
    }

    @Test("the fake detects overlapping sends to one openid when nothing serializes them")
    func fakeDetectsOverlap() async throws {
        try await withFake { fake, client in
            // Long enough that the second send arrives while the first is held even when this
            // machine is busy with the rest of the suite (at 500 ms it once arrived after it).
            await fake.script.setSendLatency(.seconds(5))
            let token = try await client.stableToken(appID: fake.appID, secret: fake.secret).accessToken
            let outcomes = await withTaskGroup(of: SendOutcome.self) { group in
                for _ in 0..<2 { group.addTask { await client.sendSubscribeMessage(Self.message, accessToken: token) } }
                return await group.reduce(into: [SendOutcome]()) { $0.append($1) }
            }
            #expect(await fake.script.overlaps == 1)
            #expect(outcomes.contains(.retryable(errcode: "43108", errmsg: "concurrent send to the same user")))
        }
    }
}
