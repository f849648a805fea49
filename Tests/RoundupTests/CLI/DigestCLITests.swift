import Foundation
import Testing

@testable import Roundup

/// The digest commands run as the built binary against a database prepared with the
/// store API in a temporary folder, where `./roundup.yaml` and the default database path land.
@Suite("roundup CLI: digests")
struct DigestCLITests {
    let dir: URL
    let store: RoundupStore
    let f: DigestFixtures

    init() throws {
        dir = try TestSupport.temporaryDirectory()
        try OperatorTestConfig.yaml.write(to: dir.appendingPathComponent("roundup.yaml"), atomically: true, encoding: .utf8)
        store = try RoundupStore.open(path: dir.appendingPathComponent("roundup-data/roundup.sqlite").path)
        f = DigestFixtures(store: store)
    }

    func run(_ args: String...) async throws -> ProcessResult { try await runRoundup(args, in: dir) }

    /// The data under `key` of a `--json` output, after checking the envelope.
    func json(_ r: ProcessResult, _ key: String) throws -> Any {
        #expect(r.status == 0, "stderr: \(r.stderr)")
        let object = try parseJSON(r.stdout)
        #expect(object["schema"] as? Int == 1)
        return try #require(object[key])
    }

    /// Exit 1: nothing on stdout, one sentence on stderr.
    func expectFailure(_ r: ProcessResult, mentioning text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(r.status == 1, sourceLocation: sourceLocation)
        #expect(r.stdout.isEmpty, sourceLocation: sourceLocation)
        #expect(r.stderr.contains(text), "stderr: \(r.stderr)", sourceLocation: sourceLocation)
        #expect(r.stderr.split(separator: "\n").count == 1, sourceLocation: sourceLocation)
    }

    /// 王芳 (parent_1, bound, one credit) with two messages from two named teachers.
    @discardableResult
    func parentWithDigest(due: Timestamp? = nil, credit: Bool = true) throws -> Int64 {
        try f.user("teacher_zhang", name: "张老师")
        try f.user("teacher_li", name: "李老师")
        try f.user("parent_1", openid: "oP1", name: "王芳")
        if credit { try f.credit("oP1") }
        return try f.open("parent_1", [("teacher_zhang", "请明天带作业本"), ("teacher_li", "周五运动会")], due: due)
    }

    @Test("pending lists open and held digests in a table that fits 80 columns, and as digest objects")
    func pending() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let empty = try await run("pending")
        #expect(empty.status == 0)
        #expect(empty.stdout.contains("no open or held digests"))
        #expect((try json(try await run("pending", "--json"), "digests") as? [Any])?.isEmpty == true)

        try parentWithDigest(due: f.now + 300_000)
        try f.user("parent_with_a_very_long_im_user_id_2")
        try f.hold(try f.open("parent_with_a_very_long_im_user_id_2", [("teacher_zhang", "x")]), .unbound)

        let table = try await run("pending")
        #expect(table.status == 0)
        #expect(table.stdout.hasPrefix("USER"))
        #expect(table.stdout.contains("王芳"))
        #expect(table.stdout.contains("张老师、李老师"))
        #expect(table.stdout.contains("in 4m") || table.stdout.contains("in 5m"))
        #expect(table.stdout.contains("held:unbound"))
        #expect(table.stdout.contains("2 digests"))
        for line in table.stdout.split(separator: "\n") { #expect(displayWidth(String(line)) <= 80, "\(line)") }

        let digests = try #require(try json(try await run("pending", "--json"), "digests") as? [[String: Any]])
        #expect(digests.count == 2)
        let d = try #require(digests.first { $0["im_user_id"] as? String == "parent_1" })
        for key in ["id", "im_user_id", "name", "openid_bound", "state", "reason", "messages", "senders", "first_at", "due_at",
                    "template_id", "errcode", "errmsg", "msgid"] {
            #expect(d.keys.contains(key), "missing \(key)")
        }
        #expect(d["state"] as? String == "open")
        #expect(d["reason"] is NSNull)
        #expect(d["messages"] as? Int == 2)
        #expect(d["senders"] as? [String] == ["张老师", "李老师"])
        #expect(d["openid_bound"] as? Bool == true)
        #expect((d["due_at"] as? String)?.hasSuffix("Z") == true)
        let held = try #require(digests.first { $0["state"] as? String == "held" })
        #expect(held["reason"] as? String == "unbound")
    }

    @Test("show prints the messages, the decision log and the exact body it would send now")
    func showOpen() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let id = try parentWithDigest()
        let r = try await run("show", "parent_1")
        #expect(r.status == 0)
        #expect(r.stdout.contains("digest #\(id) for parent_1 (王芳): open"))
        #expect(r.stdout.contains("请明天带作业本"))
        #expect(r.stdout.contains("decision log:"))
        #expect(r.stdout.contains("opened"))
        #expect(r.stdout.contains("body it would send now (template T1)"))
        #expect(r.stdout.contains(#""touser":"oP1""#))
        for line in r.stdout.split(separator: "\n") where !line.hasPrefix("{") { #expect(displayWidth(String(line)) <= 80, "\(line)") }

        let object = try parseJSON(try await run("show", "parent_1", "--json").stdout)
        #expect((object["digest"] as? [String: Any])?["id"] as? Int == Int(id))
        let messages = try #require(object["messages"] as? [[String: Any]])
        #expect(messages.map { $0["sender_name"] as? String } == ["张老师", "李老师"])
        #expect((object["log"] as? [Any])?.isEmpty == false)
        #expect(object["template_id"] as? String == "T1")
        let body = try parseJSON(try #require(object["body"] as? String))
        #expect(body["touser"] as? String == "oP1")
        #expect(body["template_id"] as? String == "T1")
        #expect(body["page"] as? String == "pages/chat/index?peer=teacher_zhang")
        let data = try #require(body["data"] as? [String: [String: String]])
        #expect(data["thing1"]?["value"] == "张老师等2人")
        #expect(data["number2"]?["value"] == "2")
    }

    @Test("show of a held digest renders it as it would go once the hold is lifted; nothing open says so")
    func showHeldAndNothing() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        try f.hold(try parentWithDigest(credit: false), .noCredit)
        let r = try await run("show", "parent_1")
        #expect(r.status == 0)
        #expect(r.stdout.contains("held (no_credit)"))
        #expect(r.stdout.contains("once the hold is lifted (first configured template T1)"))

        let none = try await run("show", "parent_9")
        #expect(none.status == 0)
        #expect(none.stdout.contains("never seen parent_9"))
        let object = try parseJSON(try await run("show", "teacher_li", "--json").stdout)
        #expect(object["digest"] is NSNull)
        #expect(object["body"] is NSNull)
        #expect((object["messages"] as? [Any])?.isEmpty == true)
    }

    @Test("explain gives one paragraph for every hold reason")
    func explainHeld() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        try f.hold(try parentWithDigest(credit: false), .noCredit)
        let noCredit = try await run("explain", "parent_1")
        #expect(noCredit.status == 0)
        #expect(noCredit.stdout.contains("held: no subscription credit since "))
        #expect(noCredit.stdout.contains("it will be sent as soon as 王芳 accepts a subscription; 2 messages from 张老师 and 李老师 waiting."))
        #expect(noCredit.stdout.split(separator: "\n").count == 1)

        try f.user("parent_2")
        try f.hold(try f.open("parent_2", [("teacher_zhang", "x")]), .unbound)
        let unbound = try await run("explain", "parent_2")
        #expect(unbound.stdout.contains("held: no openid is bound to parent_2 since"))
        #expect(unbound.stdout.contains("1 message from 张老师 waiting"))

        try f.user("parent_3", openid: "oP3")
        try f.configError(try f.open("parent_3", [("teacher_li", "y")]))
        let config = try await run("explain", "parent_3")
        #expect(config.stdout.contains("held: WeChat rejected template T1 with errcode 40037 (invalid template_id)"))
        #expect(config.stdout.contains("roundup retry"))
        let object = try #require(try json(try await run("explain", "parent_3", "--json"), "explanation") as? [String: Any])
        #expect(object["state"] as? String == "held")
        #expect((object["text"] as? String)?.contains("40037") == true)
    }

    @Test("explain covers open, in-doubt, dead, nothing pending and a user never seen")
    func explainOthers() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        try parentWithDigest(due: f.now + 540_000)
        let open = try await run("explain", "parent_1")
        #expect(open.status == 0)
        #expect(open.stdout.contains("open: due "))
        #expect(open.stdout.contains("(in 8m)") || open.stdout.contains("(in 9m)"))
        #expect(open.stdout.contains("the 10m fixed window that began at"))
        #expect(open.stdout.contains("2 messages from 张老师 and 李老师 waiting"))

        try f.user("parent_2", openid: "oP2", name: "李娜")
        try f.finish(try f.open("parent_2", [("teacher_zhang", "x")]), as: .inDoubt, errmsg: "read timeout after the request was sent")
        let doubt = try await run("explain", "parent_2")
        #expect(doubt.stdout.contains("is in_doubt"))
        #expect(doubt.stdout.contains("--force"))

        try f.user("parent_3", openid: "oP3")
        let dead = try f.open("parent_3", [("teacher_zhang", "x")])
        try f.finish(dead, as: .dead, errcode: "47003", errmsg: "argument invalid")
        let deadText = try await run("explain", "parent_3")
        #expect(deadText.stdout.contains("Digest #\(dead) (1 message) is dead: WeChat refused it with errcode 47003 (argument invalid)"))
        #expect(deadText.stdout.contains("roundup retry \(dead) re-queues it"))

        try f.user("parent_4", openid: "oP4", name: "赵敏")
        let sent = try f.open("parent_4", [("teacher_zhang", "x"), ("teacher_li", "y")])
        try f.finish(sent, as: .sent, errcode: "0", msgid: "1234567890123")
        let nothing = try await run("explain", "parent_4")
        #expect(nothing.stdout.contains("Nothing is pending for 赵敏; the last digest, #\(sent), was sent at"))
        #expect(nothing.stdout.contains("with 2 messages (msgid 1234567890123)"))
        try f.user("teacher_wu")
        #expect(try await run("explain", "teacher_wu").stdout.contains("Roundup has never finished a digest"))

        expectFailure(try await run("explain", "nobody_at_all"), mentioning: "never seen nobody_at_all")
    }

    @Test("flush makes the open digest due now with flush_requested, --force marks 2, and refuses held or missing digests")
    func flush() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let id = try parentWithDigest(due: f.now + 3_600_000)
        let r = try await run("flush", "parent_1")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("flushed parent_1 (digest #\(id), 2 messages): due now"))
        let after = try #require(try store.digestSummary(id))
        #expect(try #require(after.dueAt) <= Timestamp(Date()))
        #expect(try store.digestTimingFacts(id)?.flushRequested == 1)
        #expect(try store.digestLog(id).last?.kind == "flush")
        #expect(try store.dueDigests(now: Timestamp(Date())).map(\.id) == [id])

        let forced = try json(try await run("flush", "parent_1", "--force", "--json"), "digests") as? [[String: Any]]
        #expect(forced?.first?["id"] as? Int == Int(id))
        #expect(try store.digestTimingFacts(id)?.flushRequested == 2)
        #expect(try store.dueDigest(id)?.flushForce == true)

        expectFailure(try await run("flush", "teacher_li"), mentioning: "teacher_li has no open digest")
        try f.user("parent_2", openid: "oP2")
        try f.hold(try f.open("parent_2", [("teacher_li", "x")]), .noCredit)
        expectFailure(try await run("flush", "parent_2"), mentioning: "held (no_credit)")
        // All or nothing: one bad user leaves the good one untouched.
        expectFailure(try await run("flush", "parent_1", "parent_2"), mentioning: "parent_2")
        #expect(try await run("flush").status == 2)

        let all = try await run("flush", "--all")
        #expect(all.status == 0)
        #expect(all.stdout.contains("flushed parent_1"))
        #expect(!all.stdout.contains("parent_2"))
    }

    @Test("cancel ends the open digest with reason operator and drops its messages; no digest is exit 1")
    func cancel() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let id = try parentWithDigest()
        let digest = try #require(try json(try await run("cancel", "parent_1", "--json"), "digest") as? [String: Any])
        #expect(digest["state"] as? String == "cancelled")
        #expect(digest["reason"] as? String == "operator")
        #expect(try store.messages(recipient: "parent_1").allSatisfy { $0.status == "dropped" && $0.digestID == id })
        #expect(try store.activeDigest(for: "parent_1") == nil)
        expectFailure(try await run("cancel", "parent_1"), mentioning: "no open or held digest")
    }

    @Test("history lists finished, dead and in-doubt digests newest first with errcodes, honouring USER and --limit")
    func history() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        try f.user("parent_1", openid: "oP1", name: "王芳")
        let sent = try f.open("parent_1", [("teacher_zhang", "a")], ago: 3_000)
        try f.finish(sent, as: .sent, errcode: "0", msgid: "99887766")
        let dead = try f.open("parent_1", [("teacher_zhang", "b")], ago: 2_000)
        let failedAt = f.now - 5_000
        try await store.write { tx in
            _ = try tx.markSending(dead, template: "T1", body: "{}", now: failedAt)
            try tx.setResult(dead, errcode: "47003", errmsg: "argument invalid", msgid: nil)
            try tx.moveDigest(dead, from: .sending, to: .dead, now: failedAt)
        }
        try f.user("parent_2")
        try f.open("parent_2", [("teacher_li", "c")])

        let table = try await run("history")
        #expect(table.status == 0)
        #expect(table.stdout.hasPrefix("ID"))
        #expect(table.stdout.contains("47003"))
        #expect(table.stdout.contains("msgid 99887766"))
        #expect(!table.stdout.contains("parent_2"))
        for line in table.stdout.split(separator: "\n") { #expect(displayWidth(String(line)) <= 80, "\(line)") }

        let history = try #require(try json(try await run("history", "parent_1", "--json"), "history") as? [[String: Any]])
        #expect(history.map { $0["id"] as? Int } == [Int(dead), Int(sent)])
        #expect(history.first?["errcode"] as? String == "47003")
        #expect(history.last?["msgid"] as? String == "99887766")
        let limited = try #require(try json(try await run("history", "--limit", "1", "--json"), "history") as? [Any])
        #expect(limited.count == 1)
        #expect((try json(try await run("history", "parent_2", "--json"), "history") as? [Any])?.isEmpty == true)
        expectFailure(try await run("history", "ghost"), mentioning: "never seen ghost")
        #expect(try await run("history", "--limit", "0").status == 2)
    }

    @Test("dead lists dead, in-doubt and config-error digests but not other holds")
    func deadList() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        for id in ["p1", "p2", "p3", "p4"] { try f.user(id, openid: "o\(id)") }
        try f.finish(try f.open("p1", [("t", "a")]), as: .dead, errcode: "47003", errmsg: "argument invalid")
        try f.finish(try f.open("p2", [("t", "a")]), as: .inDoubt, errmsg: "timeout")
        try f.configError(try f.open("p3", [("t", "a")]))
        try f.hold(try f.open("p4", [("t", "a")]), .noCredit)
        let digests = try #require(try json(try await run("dead", "--json"), "digests") as? [[String: Any]])
        #expect(Set(digests.compactMap { $0["im_user_id"] as? String }) == ["p1", "p2", "p3"])
        let table = try await run("dead")
        #expect(table.stdout.contains("held:config_error"))
        #expect(table.stdout.contains("in_doubt"))
        #expect(table.stdout.contains("roundup retry ID"))
    }

    @Test("retry re-queues a dead digest due now; in-doubt needs --force and otherwise changes nothing")
    func retry() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        try f.user("p1", openid: "op1")
        try f.user("p2", openid: "op2")
        let dead = try f.open("p1", [("t", "a")])
        try f.finish(dead, as: .dead, errcode: "-1", errmsg: "system busy")
        let doubt = try f.open("p2", [("t", "a")])
        try f.finish(doubt, as: .inDoubt, errmsg: "timeout")

        // A batch with an in-doubt id and no --force changes nothing at all.
        expectFailure(try await run("retry", String(dead), String(doubt)), mentioning: "--force")
        #expect(try store.digestSummary(dead)?.state == .dead)
        #expect(try store.digestSummary(doubt)?.state == .inDoubt)

        let r = try await run("retry", String(dead))
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("re-queued digest #\(dead) for p1: due now"))
        #expect(try store.digestSummary(dead)?.state == .open)
        #expect(try store.dueDigests(now: Timestamp(Date())).map(\.id).contains(dead))
        #expect(try store.dueDigest(dead)?.attempts == 0)

        let forced = try #require(try json(try await run("retry", String(doubt), "--force", "--json"), "digests") as? [[String: Any]])
        #expect(forced.first?["state"] as? String == "open")
        #expect(try store.digestLog(doubt).contains { $0.detail.contains("roundup retry --force") })

        expectFailure(try await run("retry", "99999"), mentioning: "No digest 99999 exists")
        expectFailure(try await run("retry", String(dead)), mentioning: "only dead, in-doubt and config-error digests")
    }

    @Test("retry merges into the user's open digest, and lifts a config-error hold and its template pause")
    func retryMergeAndConfigError() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        try f.user("p1", openid: "op1")
        let dead = try f.open("p1", [("t", "a"), ("t", "b")], ago: 600)
        try f.finish(dead, as: .dead, errcode: "47003", errmsg: "argument invalid")
        let open = try f.open("p1", [("t", "c")], due: f.now + 3_600_000)
        let r = try await run("retry", String(dead))
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("merged digest #\(dead) into p1's digest #\(open) (2 messages moved)"))
        let old = try #require(try store.digestSummary(dead))
        #expect(old.state == .cancelled)
        #expect(old.reason == .operator)
        #expect(try store.digestMessages(open).count == 3)
        #expect(try #require(try store.digestSummary(open)?.dueAt) <= Timestamp(Date()))

        try f.user("p3", openid: "op3")
        let held = try f.open("p3", [("t", "x")])
        try f.configError(held)
        #expect(try store.hasSendPause(.template("T1")))
        let lifted = try await run("retry", String(held))
        #expect(lifted.status == 0, "\(lifted.stderr)")
        #expect(try store.digestSummary(held)?.state == .open)
        #expect(try !store.hasSendPause(.template("T1")))
    }

    @Test("stats counts digests by state, sends saved and credits outstanding")
    func stats() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        try f.user("p1", openid: "op1")
        try f.credit("op1", 3)
        try f.finish(try f.open("p1", [("t", "a"), ("t", "b"), ("t", "c")]), as: .sent, errcode: "0", msgid: "1")
        try f.user("p2")
        try f.hold(try f.open("p2", [("t", "d")]), .unbound)
        let stats = try #require(try json(try await run("stats", "--json"), "stats") as? [String: Any])
        let states = try #require(stats["digests"] as? [String: Int])
        #expect(states["sent"] == 1)
        #expect(states["held"] == 1)
        #expect(states["in_doubt"] == 0)
        #expect((stats["held"] as? [String: Int])?["unbound"] == 1)
        #expect(stats["messages_stored"] as? Int == 4)
        #expect(stats["digests_sent"] as? Int == 1)
        #expect(stats["sends_saved"] as? Int == 3)
        #expect(stats["credits_outstanding"] as? Int == 3)
        let text = try await run("stats")
        #expect(text.stdout.contains("sends saved: 3"))
        #expect(text.stdout.contains("credits outstanding: 3 one-time (T1 3)"))
    }
}
