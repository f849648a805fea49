import Foundation
import Synchronization
import Testing

@testable import Roundup

/// A wall clock the test moves by hand.
final class ManualNow: Sendable {
    private let date: Mutex<Date>

    init(_ start: Date = Date(timeIntervalSince1970: 1_750_000_000)) { date = Mutex(start) }

    var now: Date { date.withLock { $0 } }

    func advance(_ seconds: TimeInterval) { date.withLock { $0 = $0.addingTimeInterval(seconds) } }
}

/// A `WeChatAPI` whose token endpoint answers from a list and counts calls; sends answer from a list too.
actor StubWeChatAPI: WeChatAPI {
    private var grants: [Result<AccessTokenGrant, WeChatAPIError>]
    private var sendOutcomes: [SendOutcome]
    private(set) var fetches = 0
    private(set) var sentWithTokens: [String] = []
    private let latency: Duration

    init(grants: [Result<AccessTokenGrant, WeChatAPIError>], sendOutcomes: [SendOutcome] = [], latency: Duration = .zero) {
        self.grants = grants
        self.sendOutcomes = sendOutcomes
        self.latency = latency
    }

    private func nextGrant() throws(WeChatAPIError) -> AccessTokenGrant {
        fetches += 1
        let next = grants.count > 1 ? grants.removeFirst() : grants[0]
        return try next.get()
    }

    nonisolated func stableToken(appID: String, secret: String) async throws(WeChatAPIError) -> AccessTokenGrant {
        if latency > .zero { try? await Task.sleep(for: latency) }
        return try await nextGrant()
    }

    private func nextOutcome(_ token: String) -> SendOutcome {
        sentWithTokens.append(token)
        return sendOutcomes.isEmpty ? .sent(msgid: "1") : sendOutcomes.removeFirst()
    }

    nonisolated func sendSubscribeMessage(_ message: SubscribeMessage, accessToken: String) async -> SendOutcome {
        await nextOutcome(accessToken)
    }
}

/// Counts calls of a `@Sendable` callback.
final class CallCounter: Sendable {
    private let count = Mutex(0)
    var value: Int { count.withLock { $0 } }
    func increment() { count.withLock { $0 += 1 } }
}

/// Integers appended from several tasks.
final class OrderLog: Sendable {
    private let log = Mutex<[Int]>([])
    var values: [Int] { log.withLock { $0 } }
    func append(_ value: Int) { log.withLock { $0.append(value) } }
}

@Suite("Access token manager")
struct AccessTokenManagerTests {
    static func grant(_ value: String, _ expiresIn: Int64 = 7200) -> Result<AccessTokenGrant, WeChatAPIError> {
        .success(AccessTokenGrant(accessToken: value, expiresIn: expiresIn))
    }

    @Test("a token is fetched once and reused while more than 5 minutes remain, then refreshed ahead of expiry")
    func refreshAhead() async throws {
        let clock = ManualNow()
        let api = StubWeChatAPI(grants: [Self.grant("T1"), Self.grant("T2")])
        let refreshes = CallCounter()
        let manager = AccessTokenManager(
            api: api, appID: "a", secret: "s", now: { clock.now }, onRefresh: { refreshes.increment() })
        #expect(try await manager.token().value == "T1")
        clock.advance(7200 - 301)
        #expect(try await manager.token().value == "T1")
        #expect(await api.fetches == 1)
        clock.advance(2)  // 299 s left: inside the 5-minute margin.
        let refreshed = try await manager.token()
        #expect(refreshed.value == "T2")
        #expect(refreshed.expiresAt == clock.now.addingTimeInterval(7200))
        #expect(await api.fetches == 2)
        #expect(refreshes.value == 2)
    }

    @Test("a fresh token in the persistent cache is used at start without a fetch; fetched tokens are saved")
    func persistentCache() async throws {
        let clock = ManualNow()
        let cache = InMemoryAccessTokenCache(AccessToken(value: "STORED", expiresAt: clock.now.addingTimeInterval(3600)))
        let api = StubWeChatAPI(grants: [Self.grant("NEW")])
        let manager = AccessTokenManager(api: api, appID: "a", secret: "s", cache: cache, now: { clock.now })
        #expect(try await manager.token().value == "STORED")
        #expect(await api.fetches == 0)
        clock.advance(3600 - 100)
        #expect(try await manager.token().value == "NEW")
        #expect(await cache.token?.value == "NEW")
        #expect(await cache.saves == 1)
    }

    @Test("a stale token in the persistent cache is ignored")
    func staleCache() async throws {
        let clock = ManualNow()
        let cache = InMemoryAccessTokenCache(AccessToken(value: "OLD", expiresAt: clock.now.addingTimeInterval(120)))
        let api = StubWeChatAPI(grants: [Self.grant("NEW")])
        let manager = AccessTokenManager(api: api, appID: "a", secret: "s", cache: cache, now: { clock.now })
        #expect(try await manager.token().value == "NEW")
        #expect(await api.fetches == 1)
    }

    @Test("invalidate drops the token only if it is still the failing one")
    func invalidateIfStill() async throws {
        let api = StubWeChatAPI(grants: [Self.grant("T1"), Self.grant("T2"), Self.grant("T3")])
        let manager = AccessTokenManager(api: api, appID: "a", secret: "s")
        _ = try await manager.token()
        await manager.invalidate(ifStill: "SOMETHING_ELSE")
        #expect(await manager.cachedToken?.value == "T1")
        await manager.invalidate(ifStill: "T1")
        #expect(await manager.cachedToken == nil)
        #expect(try await manager.token().value == "T2")
        await manager.invalidate(ifStill: "T1")  // A late report about the old token changes nothing.
        #expect(try await manager.token().value == "T2")
        #expect(await api.fetches == 2)
    }

    @Test("a failed refresh keeps using a token that has not expired; with none it throws; each failed fetch is counted")
    func failedRefresh() async throws {
        let clock = ManualNow()
        let api = StubWeChatAPI(grants: [Self.grant("T1"), .failure(.errcode(-1, "system busy"))])
        let refreshes = CallCounter(), failures = CallCounter()
        let manager = AccessTokenManager(api: api, appID: "a", secret: "s", now: { clock.now },
                                         onRefresh: { refreshes.increment() }, onFailure: { failures.increment() })
        _ = try await manager.token()
        clock.advance(7200 - 100)
        #expect(try await manager.token().value == "T1")
        #expect(failures.value == 1)
        clock.advance(200)
        await #expect(throws: WeChatAPIError.errcode(-1, "system busy")) { try await manager.token() }
        #expect(refreshes.value == 1)
        #expect(failures.value >= 1)
    }

    @Test("a short-lived grant is not fetched again within 30 seconds")
    func noHammering() async throws {
        let clock = ManualNow()
        let api = StubWeChatAPI(grants: [Self.grant("T1", 300)])
        let manager = AccessTokenManager(api: api, appID: "a", secret: "s", now: { clock.now })
        for _ in 0..<5 { _ = try await manager.token() }
        #expect(await api.fetches == 1)
        clock.advance(31)
        _ = try await manager.token()
        #expect(await api.fetches == 2)
    }

    @Test("50 concurrent callers share exactly one fetch, and all get its token")
    func singleFlight() async throws {
        let api = StubWeChatAPI(grants: [Self.grant("ONLY")], latency: .milliseconds(100))
        let manager = AccessTokenManager(api: api, appID: "a", secret: "s")
        let values = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<50 { group.addTask { try await manager.token().value } }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(values == Array(repeating: "ONLY", count: 50))
        #expect(await api.fetches == 1)
    }

    @Test("concurrent callers all receive the error of the one failed fetch")
    func singleFlightFailure() async throws {
        let api = StubWeChatAPI(grants: [.failure(.errcode(40164, "invalid ip"))], latency: .milliseconds(50))
        let manager = AccessTokenManager(api: api, appID: "a", secret: "s")
        let errors = await withTaskGroup(of: WeChatAPIError?.self) { group in
            for _ in 0..<10 {
                group.addTask {
                    do throws(WeChatAPIError) {
                        _ = try await manager.token()
                        return nil
                    } catch { return error }
                }
            }
            return await group.reduce(into: [WeChatAPIError?]()) { $0.append($1) }
        }
        #expect(errors == Array(repeating: WeChatAPIError.errcode(40164, "invalid ip"), count: 10))
        #expect(await api.fetches == 1)
    }

    @Test("the sender retries once after a stale-token answer, with a freshly fetched token")
    func senderRetriesOnce() async throws {
        let api = StubWeChatAPI(
            grants: [Self.grant("T1"), Self.grant("T2")], sendOutcomes: [.tokenInvalid(errcode: 40001), .sent(msgid: "9")])
        let sender = SubscribeSender(api: api, tokens: AccessTokenManager(api: api, appID: "a", secret: "s"))
        let outcome = await sender.send(SubscribeMessage(touser: "o", templateID: "t", data: [.init(key: "thing1", value: "x")]))
        #expect(outcome == .sent(msgid: "9"))
        #expect(await api.sentWithTokens == ["T1", "T2"])
    }

    @Test("the sender never loops: a second stale-token answer is returned")
    func senderNeverLoops() async throws {
        let api = StubWeChatAPI(
            grants: [Self.grant("T1"), Self.grant("T2")],
            sendOutcomes: [.tokenInvalid(errcode: 40001), .tokenInvalid(errcode: 42001), .sent(msgid: "9")])
        let sender = SubscribeSender(api: api, tokens: AccessTokenManager(api: api, appID: "a", secret: "s"))
        let outcome = await sender.send(SubscribeMessage(touser: "o", templateID: "t", data: [.init(key: "thing1", value: "x")]))
        #expect(outcome == .tokenInvalid(errcode: 42001))
        #expect(await api.sentWithTokens.count == 2)
    }

    @Test("the per-openid serializer hands the openid to waiters in order and frees it at the end")
    func serializerOrder() async throws {
        let serializer = OpenIDSerializer()
        let order = OrderLog()
        await serializer.acquire("o")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 1...3 {
                group.addTask {
                    await serializer.acquire("o")
                    order.append(index)
                    await serializer.release("o")
                }
                // Let each waiter queue before the next one starts.
                try await Task.sleep(for: .milliseconds(20))
            }
            order.append(0)
            await serializer.release("o")
            try await group.waitForAll()
        }
        #expect(order.values == [0, 1, 2, 3])
        #expect(await serializer.heldCount == 0)
    }
}
