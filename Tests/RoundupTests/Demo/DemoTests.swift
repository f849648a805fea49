import Foundation
import Logging
import Synchronization
import Testing

@testable import Roundup

/// `roundup demo`: the built-in trace, the replay driven by a manual clock so its counts
/// are exact, and the command run as a subprocess.
@Suite("Demo")
struct DemoTests {
    /// The outcome of `Fixtures/demo/trace.jsonl`, explained in the trace's header comment.
    static let expected = DemoSummary(messagesReceived: 194, users: 33, digestsSent: 37, digestsCancelledOnline: 4, digestsHeld: 4)

    /// Collects what a runner reports.
    final class Notes: Sendable {
        private let lines = Mutex<[DemoNote]>([])
        func add(_ note: DemoNote) { lines.withLock { $0.append(note) } }
        var all: [DemoNote] { lines.withLock { $0 } }
        var bodies: [String] { all.compactMap { if case .sent(let body) = $0 { body } else { nil } } }
    }

    @Test("the library's built-in trace is byte for byte Fixtures/demo/trace.jsonl")
    func builtInIsTheFixture() throws {
        let resource = try Data(contentsOf: DemoTrace.builtInURL())
        let fixture = try Data(contentsOf: TestSupport.fixture("demo/trace.jsonl"))
        #expect(resource == fixture)
        #expect(try DemoTrace.builtIn() == DemoTrace.parse(TestSupport.fixtureText("demo/trace.jsonl")))
    }

    @Test("the fixture trace replayed on a manual clock gives exact counts and valid bodies")
    func exactCounts() async throws {
        let trace = try DemoTrace.parse(TestSupport.fixtureText("demo/trace.jsonl"))
        let notes = Notes()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let runner = DemoRunner(trace: trace, clock: ManualWallClock(ServiceHarness.start), speed: nil, logger: logger) { notes.add($0) }
        let summary = try await runner.run()
        #expect(summary == Self.expected)
        #expect(summary.messagesReceived == 194)
        #expect(summary.users == 33)
        #expect(summary.digestsSent == 37)
        #expect(summary.digestsCancelledOnline == 4)
        #expect(summary.digestsHeld == 4)
        #expect(summary.sendsSaved == 157)

        let bodies = notes.bodies
        #expect(bodies.count == 37)
        var counted = 0
        for body in bodies {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
            #expect((object["touser"] as? String)?.hasPrefix("o") == true)
            #expect(object["template_id"] as? String == DemoRunner.templateID)
            let data = try #require(object["data"] as? [String: [String: String]])
            #expect(Set(data.keys) == ["thing1", "number2", "thing3", "time4"])
            #expect(data.values.allSatisfy { !($0["value"] ?? "").isEmpty })
            counted += Int(data["number2"]?["value"] ?? "") ?? 0
        }
        // One subscribe message carries several messages: 37 sends for 131 of them.
        #expect(counted == 131)
        #expect(Set(bodies.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }.compactMap { $0["touser"] as? String }).count == 21)
        let progress = notes.all.compactMap { if case .progress(let line) = $0 { line } else { nil } }
        #expect(progress.contains { $0.contains("came online first: digest cancelled") })
        #expect(progress.contains { $0.contains("digest held (no_credit") })
        #expect(progress.contains { $0.contains("digest held (unbound") })
    }

    @Test("a trace with an unknown event type is refused with its line number")
    func badTrace() throws {
        let text = """
            # a comment
            {"at": 0, "type": "bind", "user": "u1", "name": "A"}
            {"at": 1, "type": "teleport", "user": "u1"}
            """
        #expect(throws: DemoTraceError(line: 3, reason: "unknown event type teleport")) { try DemoTrace.parse(text) }
        #expect(throws: DemoTraceError.self) { try DemoTrace.parse(#"{"at": -1, "type": "state", "user": "u", "action": "Login"}"#) }
    }

    @Test("roundup demo --json runs as a subprocess: exit 0, only JSON lines on stdout, the summary last")
    func subprocess() async throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let started = Date()
        let r = try await runRoundup(["demo", "--json", "--speed", "20"], in: dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(Date().timeIntervalSince(started) < 30)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 38)
        let objects = try lines.map { try parseJSON($0) }
        let summary = try #require(objects.last)
        #expect(summary["messages_received"] as? Int == 194)
        #expect(summary["users"] as? Int == 33)
        #expect(summary["digests_sent"] as? Int == 37)
        #expect(summary["digests_cancelled_online"] as? Int == 4)
        #expect(summary["digests_held"] as? Int == 4)
        #expect(summary["sends_saved"] as? Int == 157)
        #expect(objects.dropLast().allSatisfy { $0["template_id"] as? String == DemoRunner.templateID && $0["data"] != nil })
        #expect(r.stderr.contains("ONE subscribe message sent"))
        // The temporary database is gone, and nothing was written where it ran.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }
}
