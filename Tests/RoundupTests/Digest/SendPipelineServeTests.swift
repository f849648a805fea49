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

    @Test("a WeChat send that hangs holds one slot only: another user's digest reaches WeChat within 5 s of coming due")
    func hungSendHoldsNobody() async throws {
        let rig = try ServeRig(sendConcurrency: 4, digestYAML: Self.digest)
        defer { rig.remove() }
        try rig.seedUsers(2, credits: 1)
        try await rig.withFakes { rig in
            await rig.wechat.script.hold(sendsTo: "o_u0", for: .seconds(15))
            let serve = try rig.start()
            let port = try await serve.waitUntilListening()
            let client = SignedCallbackClient(port: port, token: ServeRig.callbackToken, connections: 2)
            defer { client.close() }

            await post(client, to: "u0", key: "hang-0")
            let script = rig.wechat.script
            #expect(try await crashPoll(timeout: 20) { await script.sendAttempts >= 1 }, "u0's send never reached the fake")
            let posted = Date()
            await post(client, to: "u1", key: "free-1")
            let reached = try await acceptedAt(rig, openid: "o_u1", within: 12)
            let at = try #require(reached, "u1's digest never reached WeChat while u0's send hung")
            let late = at.timeIntervalSince(posted) - 1  // due one window after the message
            #expect(late < 5, "u1's digest reached WeChat \(late) s after it came due")
            #expect(await !script.accepted.contains { $0.touser == "o_u0" }, "u0's send did not hang as scripted")
            await serve.sigkill()
        }
    }

    @Test("a query_online_status call that hangs holds only its own batch: a digest due later is confirmed and sent within 5 s")
    func hungPresenceHoldsOnlyItsBatch() async throws {
        let rig = try ServeRig(sendConcurrency: 4, digestYAML: Self.digest)
        defer { rig.remove() }
        try rig.seedUsers(2, credits: 1)
        try await rig.withFakes { rig in
            await rig.im.state.hold(onlineStatusOf: "u0", for: .seconds(15))
            // Should u0's batch give up on IM and send, its send hangs too: a pipeline that waits
            // in line would hold u1 back for both.
            await rig.wechat.script.hold(sendsTo: "o_u0", for: .seconds(15))
            let serve = try rig.start()
            let port = try await serve.waitUntilListening()
            let client = SignedCallbackClient(port: port, token: ServeRig.callbackToken, connections: 2)
            defer { client.close() }

            await post(client, to: "u0", key: "hang-0")
            let im = rig.im.state
            #expect(try await crashPoll(timeout: 20) { await im.onlineStatusCalls >= 1 }, "u0's presence query never reached the fake")
            let posted = Date()
            await post(client, to: "u1", key: "free-1")
            let reached = try await acceptedAt(rig, openid: "o_u1", within: 12)
            let at = try #require(reached, "u1's digest never reached WeChat while u0's presence query hung")
            let late = at.timeIntervalSince(posted) - 1
            #expect(late < 5, "u1's digest reached WeChat \(late) s after it came due")
            #expect(await im.onlineStatusCalls >= 2, "u1 was not confirmed in a batch of its own")
            await serve.sigkill()
        }
    }
}
