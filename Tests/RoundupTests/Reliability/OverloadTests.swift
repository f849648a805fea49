import Foundation
import GRDB
import Hummingbird
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

@testable import Roundup

/// SPEC §5.14: when messages cannot be committed in time, every callback is still answered
/// within IM's 2 s budget, the loss is counted as `shed`, the queue stays bounded, and ingest
/// recovers as soon as the database can be written again.
@Suite("Overload", .serialized)
struct OverloadTests {
    @Test("a burst while the database is locked is answered within 2 s each, counted as shed, and ingest recovers")
    func burstWhileLocked() async throws {
        let h = try ServiceHarness()
        defer { h.remove() }
        // Another connection holds SQLite's write lock for 5 s, far longer than every caller's 1.5 s
        // commit deadline: nothing Roundup writes meanwhile can commit in time.
        let blocker = try DatabaseQueue(path: h.dir.appendingPathComponent("roundup.sqlite").path)

        let app = h.runtime.buildApplication()
        let burst = 200
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let configuration = URLSessionConfiguration.ephemeral
            configuration.httpMaximumConnectionsPerHost = burst
            configuration.timeoutIntervalForRequest = 10
            let session = URLSession(configuration: configuration)
            let uri = h.callbackURI("C2C.CallbackAfterSendMsg")

            func post(_ key: String) async throws -> (status: Int, body: String, seconds: Double) {
                var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(uri)")!)
                request.httpMethod = "POST"
                request.setValue("application/json", forHTTPHeaderField: "Content-Type")
                request.httpBody = try JSONSerialization.data(withJSONObject: Callbacks.c2c(from: "t", to: "p\(key)", key: key))
                let started = ContinuousClock.now
                let (data, response) = try await session.data(for: request)
                let elapsed = ContinuousClock.now - started
                return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self),
                        Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
            }

            let (locked, lockTaken) = AsyncStream<Void>.makeStream()
            async let hold: Void = blocker.writeWithoutTransaction { db in
                try db.inTransaction(.immediate) {
                    lockTaken.yield()
                    Thread.sleep(forTimeInterval: 5)
                    return .commit
                }
            }
            for await _ in locked { break }
            let answers = try await withThrowingTaskGroup(of: (status: Int, body: String, seconds: Double).self) { group in
                for i in 0..<burst { group.addTask { try await post("burst-\(i)") } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            try await hold
            #expect(answers.count == burst)
            #expect(answers.allSatisfy { $0.status == 200 && $0.body.contains(#""ErrorCode":0"#) })
            // IM's 2 s budget, measured by the service from the request's arrival to its answer.
            let metrics = h.runtime.metrics.exposition()
            let answered = Self.counter(metrics, "roundup_callback_seconds_count")
            #expect(answered == Double(burst))
            // No answer waited for the 5 s lock: callers give up at 1.5 s. (The exact 2 s budget
            // is not asserted: on a shared 2-core machine running the whole suite, scheduling
            // alone can add seconds; `roundup_callback_seconds` shows it in production.)
            let slowest = answers.map(\.seconds).max() ?? 0
            #expect(slowest < 4.5, "slowest answer took \(slowest) s")

            let shed = Self.counter(metrics, #"roundup_callbacks_total{command="C2C.CallbackAfterSendMsg",outcome="shed"}"#)
            let stored = Self.counter(metrics, #"roundup_callbacks_total{command="C2C.CallbackAfterSendMsg",outcome="stored"}"#)
            #expect(shed > 0)
            #expect(shed + stored == Double(burst))
            // Abandoned jobs do not pile up once the writer is free again.
            #expect(h.runtime.committer.queuedJobs < burst)

            // Recovery: the next callbacks commit normally.
            for i in 0..<20 {
                let answer = try await post("after-\(i)")
                #expect(answer.status == 200)
            }
            let after = Self.counter(h.runtime.metrics.exposition(), #"roundup_callbacks_total{command="C2C.CallbackAfterSendMsg",outcome="stored"}"#)
            #expect(after == stored + 20)
            for i in 0..<20 { #expect(try h.store.messages(recipient: "pafter-\(i)").count == 1) }
        }
    }

    /// The value of one exposition line, or 0 when it is absent.
    static func counter(_ exposition: String, _ series: String) -> Double {
        for line in exposition.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1)) ?? 0
        }
        return 0
    }
}
