import Foundation
import HummingbirdTesting
import NIOCore
import Testing

@testable import Roundup

/// Mutated callback and push bodies through the real router (issue 8): each gets 200 or a 4xx
/// with a JSON `{"error": …}` body — never a 5xx, never a crash.
@Suite("Hostile input: HTTP edge")
struct HTTPEdgeHostileTests {
    static let yaml = """
        templates:
          - id: "BDcgTGpwt7fcRVFhGh-NvjcASaWWmkwzN3y_6mXzJR4"
            fields: { thing1: "{{count}}条新消息" }

        """

    /// No group fan-out may reach the real IM API from a test.
    static let offline = ["ROUNDUP_IM_API_BASE_URL": "http://127.0.0.1:9"]

    /// 200 with the endpoint's own reply, or a 4xx whose body is a JSON object with an `error` sentence.
    static func answerProblems(_ status: Int, _ body: ByteBuffer, ok: (String) -> Bool) -> [String] {
        let text = String(buffer: body)
        if status == 200 { return ok(text) ? [] : ["200 with an unexpected body: \(text.prefix(200))"] }
        guard (400..<500).contains(status) else { return ["answered \(status): \(text.prefix(200))"] }
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
            let error = object["error"] as? String, !error.isEmpty
        else { return ["answered \(status) without a JSON error body: \(text.prefix(200))"] }
        return []
    }

    @Test("two hundred mutated IM callbacks, correctly signed, are each answered 200 or 4xx with a JSON error")
    func imCallbacks() async throws {
        let h = try ServiceHarness(yaml: Self.yaml, env: Self.offline)
        defer { h.remove() }
        let commands = IMCallbackCommand.allCases.map(\.rawValue) + ["Unknown.Command"]
        let mutator = IMCallbackHostileTests.mutator
        try await h.runtime.buildApplication().test(.router) { (client: any TestClientProtocol) async throws in
            let ran = try await HostileLoop.run(
                area: "http-im", folder: "im", ext: ".json", count: 200,
                generate: { rng in (command: rng.pick(commands), body: mutator.generate(&rng)) },
                bytes: { $0.body },
                check: { input in
                    try await client.execute(
                        uri: h.callbackURI(input.command), method: .post, headers: [.contentType: "application/json"],
                        body: ByteBuffer(bytes: input.body)
                    ) { response in
                        Self.answerProblems(Int(response.status.code), response.body) { $0 == IMCallbackController.okBody }
                    }
                })
            #expect(ran > 0)
            // The service still answers a good callback afterwards.
            let good = try await client.post(h.callbackURI("C2C.CallbackAfterSendMsg"), Callbacks.c2c(from: "t", to: "p", key: "after-fuzz"))
            #expect(good.status == 200)
        }
    }

    @Test("two hundred mutated WeChat pushes, plaintext and safe mode, are each answered 200 or 4xx with a JSON error")
    func wechatPushes() async throws {
        let h = try ServiceHarness(yaml: Self.yaml, env: [
            "ROUNDUP_WECHAT_PUSH_TOKEN": "AAAAA", "ROUNDUP_WECHAT_APP_ID": "wxba5fad812f8e6fb9",
            "ROUNDUP_WECHAT_ENCODING_AES_KEY": String(repeating: "A", count: 43),
        ].merging(Self.offline) { a, _ in a })
        defer { h.remove() }
        let plainQuery = "signature=\(PushSignature.compute(token: "AAAAA", timestamp: "1714037059", nonce: "486452656"))&timestamp=1714037059&nonce=486452656"
        let safeQuery = HostileSeeds.text(TestSupport.fixture("wechat/safe-mode-official.query")).trimmingCharacters(in: .whitespacesAndNewlines)
        let safeSeeds = ["safe-mode-official.json", "compatible-mode.json"].map { HostileSeeds.bytes(TestSupport.fixture("wechat/\($0)")) }
        let safeMutator = Mutator(format: .json, seeds: safeSeeds)
        try await h.runtime.buildApplication().test(.router) { (client: any TestClientProtocol) async throws in
            try await HostileLoop.run(
                area: "http-wechat", folder: "wechat", ext: ".txt", count: 200,
                generate: { rng -> (query: String, body: [UInt8]) in
                    switch rng.below(10) {
                    case 0, 1, 2, 3: return (plainQuery, WeChatPushHostileTests.jsonMutator.generate(&rng))
                    case 4, 5, 6, 7: return (plainQuery, WeChatPushHostileTests.xmlMutator.generate(&rng))
                    default: return (rng.percent(50) ? safeQuery : plainQuery, safeMutator.generate(&rng))
                    }
                },
                bytes: { $0.body },
                check: { input in
                    try await client.execute(
                        uri: "/wechat/push?\(input.query)", method: .post, headers: [.contentType: "application/json"],
                        body: ByteBuffer(bytes: input.body)
                    ) { response in
                        Self.answerProblems(Int(response.status.code), response.body) { $0 == "success" }
                    }
                })
            let good = try await client.execute(
                uri: "/wechat/push?\(plainQuery)", method: .post, body: ByteBuffer(bytes: HostileSeeds.bytes(TestSupport.fixture("wechat/popup-object.json")))
            ) { String(buffer: $0.body) }
            #expect(good == "success")
        }
    }
}
