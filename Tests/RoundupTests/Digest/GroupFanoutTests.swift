import Foundation
import Logging
import Testing

@testable import Roundup

/// Group fan-out after the answer against the fake IM REST server on loopback.
@Suite("Group fan-out")
struct GroupFanoutTests {
    static let members: [IMGroupMember] = [
        IMGroupMember(account: "teacher_li", msgFlag: "AcceptAndNotify", nameCard: "李老师(班主任)"),
        IMGroupMember(account: "parent_001", msgFlag: "AcceptAndNotify"),
        IMGroupMember(account: "parent_002", msgFlag: "AcceptAndNotify"),
        IMGroupMember(account: "parent_003", msgFlag: "AcceptNotNotify"),
        IMGroupMember(account: "parent_004", msgFlag: "AcceptAndNotify"),
    ]

    /// A runtime whose IM REST API is the fake server at `base`.
    func runtime(_ h: ServiceHarness, base: String, fake: FakeIMServer) throws -> RoundupRuntime {
        let config = h.runtime.config.snapshot
        let api = IMRestClient(configuration: IMRestConfiguration(
            baseURL: base, sdkAppID: fake.sdkAppID, adminIdentifier: fake.adminIdentifier, secretKey: fake.secretKey))
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return RoundupRuntime(config: config, store: h.store, clock: h.clock, logger: logger, imAPI: api, wechatAPI: nil)
    }

    func groupMessage(mentions: [String] = [], atAll: Bool = false, seq: Int64 = 1) -> IMGroupMessage {
        IMGroupMessage(groupID: "@TGS#class3", groupType: "Public", from: "teacher_li", operatorAccount: nil, random: 1, msgSeq: seq,
                       msgTime: 1_741_075_200, onlineOnly: false, elements: [.text("周五运动会")], cloudCustomData: nil, eventTime: nil,
                       atAll: atAll, mentioned: mentions, topicID: nil)
    }

    @Test("mentions: only the mentioned member gets a digest opened; others join only a pending one; the sender and muted members get nothing")
    func mentions() async throws {
        let h = try ServiceHarness()
        defer { h.remove() }
        let fake = FakeIMServer()
        await fake.state.setGroup("@TGS#class3", members: Self.members)
        try await fake.withRunning { base in
            let rt = try runtime(h, base: base, fake: fake)
            // parent_002 already has a digest pending from a direct message.
            _ = await rt.ingestor.handle(.c2cAfterSend(IMC2CMessage(
                from: "teacher_wang", to: "parent_002", msgSeq: 1, msgRandom: 1, msgTime: 1_741_075_100, msgKey: "k1", msgID: nil,
                onlineOnly: false, sendMsgResult: 0, elements: [.text("作业")], cloudCustomData: nil, eventTime: nil)), optPlatform: "RESTAPI")
            #expect(await rt.ingestor.handle(.groupAfterSend(groupMessage(mentions: ["parent_001"])), optPlatform: "Web") == .stored)
            #expect(await rt.fanout.processPending() == false)
        }
        #expect(try h.store.activeDigest(for: "parent_001")?.pendingCount == 1)
        #expect(try h.store.activeDigest(for: "parent_002")?.pendingCount == 2)
        #expect(try h.store.activeDigest(for: "parent_004") == nil)
        #expect(try h.store.messages(recipient: "parent_003").isEmpty)
        #expect(try h.store.messages(recipient: "teacher_li").isEmpty)
        #expect(try h.store.groupMessage(groupID: "@TGS#class3", msgSeq: 1)?.fanoutState == "done")
        let summary = try #require(try h.store.activeDigestSummary(for: "parent_001"))
        #expect(summary.senders == ["李老师(班主任)"])
    }

    @Test("@all notifies every member, and a retry after an IM failure delivers once")
    func atAllAndRetry() async throws {
        let h = try ServiceHarness()
        defer { h.remove() }
        let fake = FakeIMServer()
        await fake.state.setGroup("@TGS#class3", members: Self.members)
        await fake.state.failNext(.httpStatus(500))
        try await fake.withRunning { base in
            let rt = try runtime(h, base: base, fake: fake)
            _ = await rt.ingestor.handle(.groupAfterSend(groupMessage(atAll: true)), optPlatform: "Web")
            #expect(await rt.fanout.processPending() == true)
            #expect(try h.store.groupMessage(groupID: "@TGS#class3", msgSeq: 1)?.fanoutState == "pending")
            #expect(await rt.fanout.processPending() == false)
            #expect(await rt.fanout.processPending() == false)
        }
        for p in ["parent_001", "parent_002", "parent_004"] {
            #expect(try h.store.messages(recipient: p).count == 1, "\(p)")
            #expect(try h.store.activeDigest(for: p) != nil, "\(p)")
        }
        #expect(try h.store.messages(recipient: "parent_003").isEmpty)
    }

    @Test("online members keep mentioned group messages unjoined, like direct messages")
    func onlineMember() async throws {
        let h = try ServiceHarness()
        defer { h.remove() }
        let fake = FakeIMServer()
        await fake.state.setGroup("@TGS#class3", members: Self.members)
        try await fake.withRunning { base in
            let rt = try runtime(h, base: base, fake: fake)
            _ = await rt.ingestor.handle(.stateChange(IMStateChange(userID: "parent_001", action: .login, reason: nil, eventTime: 1)), optPlatform: nil)
            _ = await rt.ingestor.handle(.groupAfterSend(groupMessage(mentions: ["parent_001"])), optPlatform: "Web")
            await rt.fanout.processPending()
        }
        let m = try #require(try h.store.messages(recipient: "parent_001").first)
        #expect(m.digestID == nil)
        #expect(m.status == "pending")
    }
}
