import Foundation
import Synchronization
import Testing

@testable import Roundup

/// Openids every way of binding must refuse, and the longest it must take.
enum OpenidCases {
    /// A refused openid and why it is refused.
    struct Refused: Sendable, CustomTestStringConvertible {
        let openid: String
        let testDescription: String
    }

    static let refused: [Refused] = [
        Refused(openid: "oP 1", testDescription: "an openid with a space"),
        Refused(openid: String(repeating: "a", count: 65), testDescription: "an openid of 65 characters"),
        Refused(openid: "oPé1", testDescription: "an openid with a non-ASCII letter"),
    ]

    /// 64 characters of every kind allowed.
    static let longest = String(repeating: "Az09-_", count: 10) + "Zz9_"
}

/// The after-change calls a test's binding service made.
final class ChangeLog: Sendable {
    private let calls = Mutex<[[BindingChange]]>([])

    func append(_ changes: [BindingChange]) { calls.withLock { $0.append(changes) } }
    var all: [[BindingChange]] { calls.withLock { $0 } }
    func clear() { calls.withLock { $0 = [] } }
}

@Suite("Binding service")
struct BindingServiceTests {
    static let t0 = Timestamp(milliseconds: 1_741_075_200_000)

    /// A service over `store` whose after-change calls land in `log`.
    static func service(_ store: RoundupStore, _ log: ChangeLog) -> BindingService {
        BindingService(store: store, profiles: { ["clinic", "night"] }, now: { t0 }, afterChange: { changes in log.append(changes) })
    }

    @Test("the openid rule: 1 to 64 characters of A-Z, a-z, 0-9, - and _")
    func openidRule() {
        #expect(BindingRules.isValidOpenid(OpenidCases.longest))
        #expect(OpenidCases.longest.count == 64)
        for ok in ["o", "oP1", "o7esq5OI1Uej6Xixw1lA2H7XDVbc", "-_-"] { #expect(BindingRules.problem(openid: ok) == nil, "\(ok)") }
        for refused in OpenidCases.refused.map(\.openid) + ["", "o\u{0}", "ｏ", "o/1", "o+1", "o=", String(repeating: "é", count: 32)] {
            #expect(BindingRules.problem(openid: refused) != nil, "\(refused.debugDescription)")
        }
    }

    @Test("bind refuses what breaks a rule, writes nothing and runs no after-change action", arguments: [
        ("teacher li", BindingRequest(name: .set("李")), "im_user_id \"teacher li\" contains spaces or control characters"),
        (String(repeating: "u", count: 33), BindingRequest(name: .set("x")), "is longer than IM's 32 bytes"),
        ("p1", BindingRequest(openid: .set("")), "openid \"\" is not an openid"),
        ("p1", BindingRequest(openid: .set("oP 1")), "openid \"oP 1\" is not an openid"),
        ("p1", BindingRequest(name: .set("a\nb")), "name contains control characters"),
        ("p1", BindingRequest(profile: .set("vip")), "profile \"vip\" is not in digest.profiles (configured: clinic, night)"),
    ])
    func refuses(_ id: String, _ request: BindingRequest, _ why: String) throws {
        let store = try RoundupStore.inMemory()
        let log = ChangeLog()
        do {
            try Self.service(store, log).bind(id, request)
            Issue.record("accepted")
        } catch let error as BindingError {
            guard case .invalid(let sentence) = error else { throw error }
            #expect(sentence.contains(why), "\(sentence)")
        }
        #expect(try store.users().isEmpty)
        #expect(log.all.isEmpty)
    }

    @Test("bind merges, clears with an empty name or profile, and reports whether the profile changed")
    func merges() throws {
        let store = try RoundupStore.inMemory()
        let log = ChangeLog()
        let service = Self.service(store, log)
        var user = try service.bind("p1", BindingRequest(openid: .set(OpenidCases.longest), name: .set("王芳")))
        #expect(user.openid == OpenidCases.longest)
        user = try service.bind("p1", BindingRequest(profile: .set("clinic")))
        #expect(user.name == "王芳")
        #expect(user.profile == "clinic")
        user = try service.bind("p1", BindingRequest(profile: .set("clinic")))
        user = try service.bind("p1", BindingRequest(name: .set(""), profile: .set("")))
        #expect(user.name == nil)
        #expect(user.profile == nil)
        #expect(user.openid == OpenidCases.longest)
        #expect(log.all == [
            [BindingChange(userID: "p1", profileChanged: false)], [BindingChange(userID: "p1", profileChanged: true)],
            [BindingChange(userID: "p1", profileChanged: false)], [BindingChange(userID: "p1", profileChanged: true)],
        ])
    }

    @Test("bind refuses an openid bound to another user")
    func conflict() throws {
        let store = try RoundupStore.inMemory()
        let service = Self.service(store, ChangeLog())
        try service.bind("a", BindingRequest(openid: .set("o1")))
        #expect(throws: BindingError.openidBoundElsewhere(openid: "o1", user: "a")) { try service.bind("b", BindingRequest(openid: .set("o1"))) }
    }

    @Test("import applies every row, then reports the users it changed and whose profile changed")
    func importReports() throws {
        let store = try RoundupStore.inMemory()
        let log = ChangeLog()
        let service = Self.service(store, log)
        try service.bind("same", BindingRequest(openid: .set("o0"), name: .set("S")))
        try service.bind("moved", BindingRequest(profile: .set("clinic")))
        log.clear()
        let csv = "im_user_id,openid,name,profile\nsame,o0,S,\nmoved,,,night\nnew,\(OpenidCases.longest),N,\nnamed,,Teacher,\n"
        let (rows, result) = try service.importRoster(csv: csv)
        #expect(rows.count == 4)
        #expect(result.unchanged == 1)
        #expect(log.all == [[
            BindingChange(userID: "moved", profileChanged: true), BindingChange(userID: "new", profileChanged: false),
            BindingChange(userID: "named", profileChanged: false),
        ]])
        log.clear()
        _ = try service.importRoster(csv: csv)
        #expect(log.all.isEmpty)
    }

    @Test("import refuses the same openids as bind, naming each line, and writes nothing")
    func importRefuses() throws {
        let store = try RoundupStore.inMemory()
        let log = ChangeLog()
        let rows = OpenidCases.refused.enumerated().map { "p\($0.offset),\"\($0.element.openid)\",," }
        do {
            _ = try Self.service(store, log).importRoster(csv: (["im_user_id,openid,name,profile"] + rows + ["ok,\(OpenidCases.longest),,"]).joined(separator: "\n"))
            Issue.record("accepted")
        } catch let error as RosterImportError {
            #expect(error.problems.map(\.line) == [2, 3, 4])
            #expect(error.problems.allSatisfy { $0.message.contains("is not an openid") })
        }
        #expect(try store.users().isEmpty)
        #expect(log.all.isEmpty)
    }

    @Test("an import that changes a profile re-times the open digest when the action is the CLI's re-time")
    func importRetimes() async throws {
        let h = try ServiceHarness(yaml: AdminEndpointTests.yaml)
        defer { h.remove() }
        _ = try await h.withClient { c in
            try await c.post(h.callbackURI("C2C.CallbackAfterSendMsg"), Callbacks.c2c(from: "t", to: "p", key: "k1"))
        }
        #expect(try h.store.activeDigest(for: "p")?.dueAt == Timestamp(ServiceHarness.start) + 600_000)
        let store = h.store, config = h.runtime.config.snapshot, now = Timestamp(ServiceHarness.start)
        let op = RosterOperator(store: store, config: config, now: { now }, afterBindingChange: { changes in
            try DigestLifecycle.retime(store: store, config: config, now: now, users: changes.filter(\.profileChanged).map(\.userID),
                                       reason: "profile changed")
        })
        _ = try op.importRoster(csv: "im_user_id,openid,name,profile\np,oP,,clinic\n")
        #expect(try h.store.activeDigest(for: "p")?.dueAt == Timestamp(ServiceHarness.start) + 120_000)
    }
}
