import Dispatch
import Foundation
import Synchronization
import Testing

@testable import Roundup

@Suite("Group commit")
struct GroupCommitterTests {
    @Test("500 concurrent jobs all commit, in fewer transactions than jobs")
    func batches() async throws {
        let temp = try TempStore()
        defer { temp.remove() }
        let committer = GroupCommitter(store: temp.store)
        let results = try await withThrowingTaskGroup(of: Int64?.self) { group in
            for i in 0..<500 {
                group.addTask {
                    try await committer.perform(timeout: .seconds(30)) { tx in
                        try tx.insertMessage(NewMessage(msgKey: "k\(i)", recipient: "p\(i % 7)", sender: "t", msgTime: 1, receivedAt: t0, summary: "x"))
                    }
                }
            }
            return try await group.reduce(into: [Int64?]()) { $0.append($1) }
        }
        #expect(results.compactMap { $0 }.count == 500)
        var stored = 0
        for u in 0..<7 { stored += try temp.store.messages(recipient: "p\(u)").count }
        #expect(stored == 500)
        #expect(committer.committedTransactions >= 1)
        #expect(committer.committedTransactions < 500, "\(committer.committedTransactions) transactions for 500 jobs: nothing was batched")
        // The deadlines of finished jobs are dropped as new jobs arrive, not kept until they pass.
        _ = try await committer.perform(timeout: .seconds(30)) { _ in }
        #expect(committer.trackedDeadlines <= 1, "\(committer.trackedDeadlines) deadlines kept after every job finished")
    }

    @Test("a failing job rolls back only itself")
    func isolation() async throws {
        let store = try RoundupStore.inMemory()
        let committer = GroupCommitter(store: store)
        struct Boom: Error {}
        async let good = committer.perform(timeout: .seconds(30)) { tx in
            try tx.insertMessage(NewMessage(msgKey: "good", recipient: "p", sender: "t", msgTime: 1, receivedAt: t0, summary: "x"))
        }
        async let bad: Int64? = committer.perform(timeout: .seconds(30)) { tx in
            _ = try tx.insertMessage(NewMessage(msgKey: "bad", recipient: "p", sender: "t", msgTime: 1, receivedAt: t0, summary: "x"))
            throw Boom()
        }
        #expect(try await good != nil)
        var failed = false
        do { _ = try await bad } catch is Boom { failed = true }
        #expect(failed)
        #expect(try store.messages(recipient: "p").map(\.msgKey) == ["good"])
    }

    @Test("in one batch, a job that fails between two others is undone alone: the batch is run again with a savepoint per job, without it", arguments: EngineUnderTest.allCases)
    func failureInsideOneBatch(engine: EngineUnderTest) async throws {
        // Two connections on PostgreSQL: one batch at a time, as on SQLite.
        guard let (store, _, remove) = try await engine.makeStore(poolSize: 2) else { return }
        defer { remove() }
        let committer = GroupCommitter(store: store)
        let badRuns = CallCounter()
        // A job holds the writer while the next three queue up, so they share one batch.
        let hold = await WriterHold.start(committer)
        async let first = Self.insert("first", committer, badRuns)
        async let bad = Self.insert("bad", committer, badRuns, fail: true)
        async let last = Self.insert("last", committer, badRuns)
        #expect(try await hold.waitForQueue(3), "the three jobs did not queue behind the held writer, so they may not share a batch")
        try await hold.release()
        let (firstID, lastID) = try await (first, last)
        #expect(firstID != nil && lastID != nil)
        var failed = false
        do { _ = try await bad } catch is InsertFailed { failed = true }
        #expect(failed, "the failing job did not report its own error")
        #expect(badRuns.value == 1, "the failed job ran again")
        #expect(try await store.read { tx in try tx.message(msgKey: "bad", recipient: "p") } == nil)
        #expect(try await store.read { tx in try tx.message(msgKey: "first", recipient: "p") } != nil)
        #expect(try await store.read { tx in try tx.message(msgKey: "last", recipient: "p") } != nil)
    }

    struct InsertFailed: Error {}

    /// Inserts a message with this MsgKey in a group-commit job; with `fail`, the job then throws.
    static func insert(_ key: String, _ committer: GroupCommitter, _ runs: CallCounter, fail: Bool = false) async throws -> Int64? {
        try await committer.perform(timeout: .seconds(60)) { [fail] tx in
            let id = try tx.insertMessage(NewMessage(msgKey: key, recipient: "p", sender: "t", msgTime: 1, receivedAt: t0, summary: "x"))
            if fail {
                runs.increment()
                throw InsertFailed()
            }
            return id
        }
    }

    @Test("a job that cannot commit within its deadline is shed and never written later")
    func shed() async throws {
        let temp = try TempStore()
        defer { temp.remove() }
        let committer = GroupCommitter(store: temp.store)
        // A job holds the writer until the next one's short deadline has passed while it waited.
        let release = DispatchSemaphore(value: 0)
        let (started, starting) = AsyncStream<Void>.makeStream()
        async let slow: Void = committer.perform(timeout: .seconds(60)) { _ in
            starting.yield()
            _ = release.wait(timeout: .now() + 60)
        }
        for await _ in started { break }
        // Its deadline is the earliest though the slow job's (60 s) came first: it is kept on
        // time, well before the slow job's (a generous bound for a loaded machine).
        let waited = ContinuousClock.now
        await #expect(throws: CommitError.timedOut) {
            try await committer.perform(timeout: .milliseconds(100)) { tx in
                try tx.insertMessage(NewMessage(msgKey: "late", recipient: "p", sender: "t", msgTime: 1, receivedAt: t0, summary: "x"))
            }
        }
        #expect(ContinuousClock.now - waited < .seconds(20), "the 100 ms deadline waited behind the 60 s one")
        release.signal()
        try await slow
        // Later work still flows, and the shed job was skipped, not written.
        let after = try await committer.perform(timeout: .seconds(5)) { tx in
            try tx.insertMessage(NewMessage(msgKey: "after", recipient: "p", sender: "t", msgTime: 1, receivedAt: t0, summary: "x"))
        }
        #expect(after != nil)
        #expect(try temp.store.messages(recipient: "p").map(\.msgKey) == ["after"])
    }

    @Test("a full queue refuses new jobs at once instead of growing, and the admitted ones commit")
    func bounded() async throws {
        let temp = try TempStore()
        defer { temp.remove() }
        let committer = GroupCommitter(store: temp.store, maxQueued: 10)
        // A job holds the writer until all 30 more have arrived (however slowly this machine
        // starts them): 10 fit in the queue, 20 are refused.
        let release = DispatchSemaphore(value: 0)
        let (started, starting) = AsyncStream<Void>.makeStream()
        async let slow: Void = committer.perform(timeout: .seconds(60)) { _ in
            starting.yield()
            _ = release.wait(timeout: .now() + 60)
        }
        for await _ in started { break }
        let refusals = RefusalTally()
        async let refusedCount = withTaskGroup(of: Bool.self) { group in
            for i in 0..<30 {
                group.addTask {
                    do {
                        _ = try await committer.perform(timeout: .seconds(60)) { tx in
                            try tx.insertMessage(NewMessage(msgKey: "q\(i)", recipient: "p", sender: "t", msgTime: 1, receivedAt: t0, summary: "x"))
                        }
                        return false
                    } catch {
                        let refused = (error as? CommitError) == .overloaded
                        if refused { refusals.count.withLock { $0 += 1 } }
                        return refused
                    }
                }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        let deadline = ContinuousClock.now + .seconds(60)
        while committer.queuedJobs + refusals.count.withLock({ $0 }) < 30, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(committer.queuedJobs == 10)
        release.signal()
        let refused = await refusedCount
        try await slow
        #expect(refused == 20)
        #expect(try temp.store.messages(recipient: "p").count == 10)
        #expect(committer.queuedJobs == 0)
    }
}

/// Refusals counted as they happen, while the refused callers' group is still running.
private final class RefusalTally: Sendable {
    let count = Mutex(0)
}

/// A job that holds a group committer's writer, so that the jobs queued meanwhile share the next
/// batch. It runs on the engine's thread, never on the cooperative pool.
struct WriterHold {
    let committer: GroupCommitter
    private let gate: DispatchSemaphore
    private let job: Task<Void, any Error>

    /// Starts the holding job and returns once it holds the writer.
    static func start(_ committer: GroupCommitter) async -> WriterHold {
        let gate = DispatchSemaphore(value: 0)
        let (started, starting) = AsyncStream<Void>.makeStream()
        let job = Task {
            try await committer.perform(timeout: .seconds(60)) { _ in
                starting.yield()
                _ = gate.wait(timeout: .now() + 60)
            }
        }
        for await _ in started { break }
        return WriterHold(committer: committer, gate: gate, job: job)
    }

    /// Waits (up to 10 s) until `count` jobs are queued behind the hold; whether they are.
    func waitForQueue(_ count: Int) async throws -> Bool {
        for _ in 0..<1_000 where committer.queuedJobs < count { try await Task.sleep(for: .milliseconds(10)) }
        return committer.queuedJobs == count
    }

    /// Lets the writer go, and waits for the holding job to commit.
    func release() async throws {
        gate.signal()
        try await job.value
    }
}
