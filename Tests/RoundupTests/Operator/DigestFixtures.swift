import Foundation

@testable import Roundup

/// Digests in every state, built through the store's typed operations, for the operator's
/// command and endpoint tests. Times are relative to the real clock, which the CLI reads.
struct DigestFixtures {
    let store: RoundupStore
    let now: Timestamp
    private let counter = Counter()

    init(store: RoundupStore, now: Timestamp = Timestamp(Date())) {
        self.store = store
        self.now = now
    }

    /// A message key unique within the fixture.
    final class Counter {
        var value = 0
        func next() -> Int {
            value += 1
            return value
        }
    }

    /// Binds a user (openid optional) with a display name.
    func user(_ id: String, openid: String? = nil, name: String? = nil) throws {
        try store.updateUser(id, UserUpdate(openid: openid.map { .set($0) } ?? .keep, name: name.map { .set($0) } ?? .keep), now: now)
    }

    /// Grants one-time credits for template `T1`.
    func credit(_ openid: String, _ count: Int = 1, template: String = "T1") throws {
        try store.applyCredit(openid: openid, templateID: template, change: .add(count), eventKey: nil, now: now)
    }

    /// An open digest for `user` holding one message per (sender, text), received `ago` seconds
    /// before now, due at `due`.
    @discardableResult
    func open(_ user: String, _ messages: [(String, String)], ago: Int64 = 60, due: Timestamp? = nil) throws -> Int64 {
        let received = now - ago * 1000
        let dueAt = due ?? received + 600_000
        let keys = messages.map { _ in "key-\(counter.next())" }
        return try store.write { tx in
            let id = try tx.openDigest(for: user, windowStart: received, dueAt: dueAt, now: received, note: "fixed window of 10m; due \(dueAt.rfc3339)")
            var ids: [Int64] = []
            for ((sender, text), key) in zip(messages, keys) {
                let m = NewMessage(msgKey: key, recipient: user, sender: sender, msgTime: received.milliseconds / 1000, receivedAt: received, summary: text)
                if let mid = try tx.insertMessage(m) { ids.append(mid) }
            }
            try tx.join(messages: ids, to: id)
            try tx.updateDigestTiming(id, lastMessageAt: received, dueAt: nil, urgent: false, now: received)
            return id
        }
    }

    /// Holds an open digest.
    func hold(_ id: Int64, _ reason: DigestReason) throws {
        try store.moveDigest(id, from: .open, to: .held, reason: reason, now: now - 30_000, note: "test hold")
    }

    /// Takes an open digest through `sending` to `state` with a WeChat result.
    func finish(_ id: Int64, as state: DigestState, reason: DigestReason? = nil, errcode: String? = nil, errmsg: String? = nil, msgid: String? = nil) throws {
        try store.write { tx in
            _ = try tx.markSending(id, template: "T1", body: "{}", now: now - 20_000)
            try tx.setResult(id, errcode: errcode, errmsg: errmsg, msgid: msgid)
            try tx.moveDigest(id, from: .sending, to: state, reason: reason, now: now - 10_000, note: "test")
            if state == .sent { try tx.finishMessages(ofDigest: id, status: .delivered, now: now - 10_000) }
        }
    }

    /// A config-error hold as the engine leaves it: held with errcode 40037 and template T1 paused.
    func configError(_ id: Int64) throws {
        try finish(id, as: .held, reason: .configError, errcode: "40037", errmsg: "invalid template_id")
        try store.setSendPause(.template("T1"), until: nil, reason: "errcode 40037", now: now)
    }
}

/// The config the operator tests use: one template and the default Shanghai time zone.
enum OperatorTestConfig {
    static let yaml = FakeConfigYAML.template(id: "T1")
}
