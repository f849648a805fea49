import Dispatch
import Foundation
import Synchronization
import Testing

@testable import Roundup

/// A Login or Logout that would change nothing durable is answered without a transaction, but
/// never when a transaction that could make it change something is queued or running.
@Suite("Presence without a transaction")
struct PresenceWithoutTransactionTests {
    static let t = Int64(ServiceHarness.start.timeIntervalSince1970) * 1000

    @Test("Logins and Logouts that change nothing commit no transaction; one with a message to join does")
    func nothingToWrite() async throws {
        let h = try ServiceHarness()
        defer { h.remove() }
        let ingestor = h.runtime.ingestor
        let committer = h.runtime.committer
        // The first Login and Logout read the facts (nothing open, nothing unjoined).
        #expect(await ingestor.presenceEvent(user: "p", online: true, eventTime: Self.t) == .applied)
        #expect(await ingestor.presenceEvent(user: "p", online: false, eventTime: Self.t + 1) == .applied)
        let before = committer.committedTransactions
        for i in 0..<10 {
            #expect(await ingestor.presenceEvent(user: "p", online: i % 2 == 0, eventTime: Self.t + 2 + Int64(i)) == .applied)
        }
        // A Logout of a user already offline needs no facts.
        #expect(await ingestor.presenceEvent(user: "p", online: false, eventTime: Self.t + 20) == .applied)
        #expect(await ingestor.presenceEvent(user: "q", online: false, eventTime: Self.t + 20) == .applied)
        #expect(await ingestor.presenceEvent(user: "q", online: false, eventTime: Self.t + 21) == .applied)
        #expect(committer.committedTransactions == before + 1, "only q's first Logout (facts unknown) needed a transaction")
        #expect(h.runtime.presence.state(of: "p") == .offline)

        // Online, a message stays unjoined: the next Logout must join it.
        #expect(await ingestor.presenceEvent(user: "p", online: true, eventTime: Self.t + 30) == .applied)
        try await h.withClient { c in
            try await c.post(h.callbackURI("C2C.CallbackAfterSendMsg"), Callbacks.c2c(from: "t", to: "p", key: "m1"))
        }
        #expect(try h.store.activeDigest(for: "p") == nil)
        #expect(await ingestor.presenceEvent(user: "p", online: false, eventTime: Self.t + 40) == .applied)
        let digest = try #require(try h.store.activeDigest(for: "p"), "the Logout did not join the message")
        #expect(try h.store.messages(recipient: "p").first?.digestID == digest.id)
        // And the Login after it must cancel that digest.
        #expect(await ingestor.presenceEvent(user: "p", online: true, eventTime: Self.t + 50) == .applied)
        #expect(try h.store.activeDigest(for: "p") == nil, "the Login did not cancel the digest")
        #expect(try h.store.messages(recipient: "p").first?.status == "seen")
    }

    @Test("a Login behind a queued Logout waits for it: the digest the Logout opens is cancelled")
    func loginBehindQueuedLogout() async throws {
        let h = try ServiceHarness()
        defer { h.remove() }
        let ingestor = h.runtime.ingestor
        let committer = h.runtime.committer
        // p is online with a message outside any digest; the writer knows p has no digest.
        #expect(await ingestor.presenceEvent(user: "p", online: true, eventTime: Self.t) == .applied)
        try await h.withClient { c in
            try await c.post(h.callbackURI("C2C.CallbackAfterSendMsg"), Callbacks.c2c(from: "t", to: "p", key: "m1"))
        }
        #expect(h.store.sqlite?.idleWriterFacts(user: "p")?.activeDigest == false)

        // Hold the writer connection (without a transaction of the engine's, so the engine's own
        // "a transaction runs" fact stays false): the Logout's job waits in the committer's queue.
        let sqlite = try #require(h.store.sqlite)
        let gate = DispatchSemaphore(value: 0)
        sqlite.writer.asyncWriteWithoutTransaction { _ in gate.wait() }
        let logout = Task { await ingestor.presenceEvent(user: "p", online: false, eventTime: Self.t + 10) }
        #expect(await Self.waitUntil { committer.queuedJobs == 1 }, "the Logout never reached the committer")
        let loginDone = Atomic<Bool>(false)
        let login = Task {
            let outcome = await ingestor.presenceEvent(user: "p", online: true, eventTime: Self.t + 20)
            loginDone.store(true, ordering: .sequentiallyConsistent)
            return outcome
        }
        // Queued behind the Logout, or (the fault this test catches) answered at once.
        _ = await Self.waitUntil { committer.queuedJobs == 2 || loginDone.load(ordering: .sequentiallyConsistent) }
        gate.signal()
        #expect(await logout.value == .applied)
        #expect(await login.value == .applied)
        #expect(try h.store.activeDigest(for: "p") == nil, "the digest the Logout opened is open while p is online")
        let digest = try #require(try h.store.digests(for: "p").first)
        #expect(digest.reason == .userOnline)
        #expect(try h.store.messages(recipient: "p").first?.status == "seen")
    }

    /// Yields until `condition` holds, for at most 10 s; whether it held.
    static func waitUntil(_ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(10)
        while !condition() {
            if ContinuousClock.now > deadline { return false }
            try? await Task.sleep(for: .milliseconds(1))
        }
        return true
    }
}
