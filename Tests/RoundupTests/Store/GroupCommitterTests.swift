import Foundation
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

    @Test("a job that cannot commit within its deadline is shed and never written later")
    func shed() async throws {
        let temp = try TempStore()
        defer { temp.remove() }
        let committer = GroupCommitter(store: temp.store)
        // A slow job holds the writer; the next one's short deadline passes while it waits.
        let (started, starting) = AsyncStream<Void>.makeStream()
        async let slow: Void = committer.perform(timeout: .seconds(30)) { _ in
            starting.yield()
            // Long beside the next job's 100 ms deadline, so a busy machine cannot blur the two.
            Thread.sleep(forTimeInterval: 2)
        }
        for await _ in started { break }
        await #expect(throws: CommitError.timedOut) {
            try await committer.perform(timeout: .milliseconds(100)) { tx in
                try tx.insertMessage(NewMessage(msgKey: "late", recipient: "p", sender: "t", msgTime: 1, receivedAt: t0, summary: "x"))
            }
        }
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
        // A slow job holds the writer while 30 more arrive.
        let (started, starting) = AsyncStream<Void>.makeStream()
        async let slow: Void = committer.perform(timeout: .seconds(30)) { _ in
            starting.yield()
            Thread.sleep(forTimeInterval: 1.5)
        }
        for await _ in started { break }
        let refused = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<30 {
                group.addTask {
                    do {
                        _ = try await committer.perform(timeout: .seconds(30)) { tx in
                            try tx.insertMessage(NewMessage(msgKey: "q\(i)", recipient: "p", sender: "t", msgTime: 1, receivedAt: t0, summary: "x"))
                        }
                        return false
                    } catch {
                        return (error as? CommitError) == .overloaded
                    }
                }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        try await slow
        #expect(refused == 20)
        #expect(try temp.store.messages(recipient: "p").count == 10)
        #expect(committer.queuedJobs == 0)
    }
}
