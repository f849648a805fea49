import Foundation
import Testing

@testable import Roundup

/// Sending never waits in line, measured on the real `roundup serve` in a child process (its own
/// thread pool, so the tests running beside it cannot slow it): one user's WeChat call or IM
/// presence query hangs at the fake for 15 s, and another user's digest that comes due just
/// after must still reach WeChat within 5 s of its due time.
@Suite("Send pipeline of roundup serve", .serialized)
struct SendPipelineServeTests {
    /// A one-second window, so digests come due right after their message.
    static let digest = "  window: 1s\n"

    /// Posts one message to `user`, acknowledged.
    func post(_ client: SignedCallbackClient, to user: String, key: String) async {
        #expect(await client.c2c(from: "teacher", to: user, key: key, text: "明天春游，请带水壶"), "callback to \(user) not acknowledged")
    }

    /// When the fake accepted a send to `openid`, waiting (bounded) for it.
    func acceptedAt(_ rig: ServeRig, openid: String, within seconds: Double) async throws -> Date? {
        let script = rig.wechat.script
        _ = try await crashPoll(timeout: seconds) { await script.accepted.contains { $0.touser == openid } }
        return await script.accepted.first { $0.touser == openid }?.at
    }

    /// Starts `serve` with two bound users, scripts u0 to hang (`hang`), posts u0's message and
    /// waits until `hanging` says u0's call is at the fake, then posts u1's and returns how long
    /// after coming due u1's digest reached WeChat (nil if it never did within 12 s).
    func lateness(hang: @Sendable (ServeRig) async -> Void, hanging: @escaping @Sendable (ServeRig) async -> Bool,
                  checks: @Sendable (ServeRig) async throws -> Void) async throws -> Double? {
        let rig = try ServeRig(sendConcurrency: 4, digestYAML: Self.digest)
        defer { rig.remove() }
        try rig.seedUsers(2, credits: 1)
        var late: Double?
        try await rig.withFakes { rig in
            await hang(rig)
            let serve = try await rig.start()
            let port = try await serve.waitUntilListening()
            let client = SignedCallbackClient(port: port, token: ServeRig.callbackToken, connections: 2)
            defer { client.close() }
            await post(client, to: "u0", key: "hang-0")
            #expect(try await crashPoll(timeout: 20) { await hanging(rig) }, "u0's call never reached the fake")
            let posted = Date()
            await post(client, to: "u1", key: "free-1")
            // Due one window (1 s) after the message.
            late = try await acceptedAt(rig, openid: "o_u1", within: 12).map { $0.timeIntervalSince(posted) - 1 }
            try await checks(rig)
            await serve.sigkill()
        }
        return late
    }

    @Test("a WeChat send that hangs holds one slot only: another user's digest reaches WeChat within 5 s of coming due")
    func hungSendHoldsNobody() async throws {
        let late = try await lateness(
            hang: { await $0.wechat.script.hold(sendsTo: "o_u0", for: .seconds(15)) },
            hanging: { await $0.wechat.script.sendAttempts >= 1 },
            checks: { rig in
                #expect(await !rig.wechat.script.accepted.contains { $0.touser == "o_u0" }, "u0's send did not hang as scripted")
            })
        let seconds = try #require(late, "u1's digest never reached WeChat while u0's send hung")
        #expect(seconds < 5, "u1's digest reached WeChat \(seconds) s after it came due")
    }

    @Test("a query_online_status call that hangs holds only its own batch: a digest due later is confirmed and sent within 5 s")
    func hungPresenceHoldsOnlyItsBatch() async throws {
        let late = try await lateness(
            hang: { rig in
                await rig.im.state.hold(onlineStatusOf: "u0", for: .seconds(15))
                // Should u0's batch give up on IM and send, its send hangs too: a pipeline that
                // waits in line would hold u1 back for both.
                await rig.wechat.script.hold(sendsTo: "o_u0", for: .seconds(15))
            },
            hanging: { await $0.im.state.onlineStatusCalls >= 1 },
            checks: { rig in
                #expect(await rig.im.state.onlineStatusCalls >= 2, "u1 was not confirmed in a batch of its own")
            })
        let seconds = try #require(late, "u1's digest never reached WeChat while u0's presence query hung")
        #expect(seconds < 5, "u1's digest reached WeChat \(seconds) s after it came due")
    }
}
