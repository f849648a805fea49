import Foundation
import Logging
import Roundup
import Synchronization

/// `wake` (PostgreSQL only): two instances on one database, as two `serve` processes would be. How
/// long a credit granted at one takes to wake the other (a flush or a binding travels the same
/// way), and how long a presence event applied at one takes to reach the other. Both should be
/// well under a second.
struct WakeScenario {
    var samples: Int
    var logger: Logger

    static let name = "wake"

    func run(into report: inout BenchReport) async throws {
        let samples = self.samples, logger = self.logger
        let (wakes, presence) = try await BenchWorld.with(logger: logger) { world -> ([Double], [Double]) in
            guard let url = world.postgres else { return ([], []) }
            var settings = StorageSettings()
            settings.url = url
            settings.poolSize = 4
            let a = try RoundupStore.open(settings, lease: InstanceLease(timeoutSeconds: 15))
            let b = try RoundupStore.open(settings, lease: InstanceLease(timeoutSeconds: 15))
            defer {
                a.postgres?.shutdown()
                b.postgres?.shutdown()
            }
            let (woken, wake) = AsyncStream<ContinuousClock.Instant>.makeStream()
            let (seen, see) = AsyncStream<ContinuousClock.Instant>.makeStream()
            let notifierA = PostgresNotifier(engine: a.postgres!, logger: logger, onWake: {}, onPresence: { _ in })
            let notifierB = PostgresNotifier(engine: b.postgres!, logger: logger, onWake: { wake.yield(.now) },
                                             onPresence: { _ in see.yield(.now) })
            return try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await notifierA.run() }
                group.addTask { try await notifierB.run() }
                defer { group.cancelAll() }
                for _ in 0..<200 where !(notifierA.isListening && notifierB.isListening) { try await Task.sleep(for: .milliseconds(50)) }
                var wokenAt = woken.makeAsyncIterator(), seenAt = seen.makeAsyncIterator()
                progress("wake: \(samples) credits granted at one instance, then \(samples) presence events, timed at the other")
                var wakes: [Double] = [], presence: [Double] = []
                for i in 0..<samples {
                    let start = ContinuousClock.now
                    _ = try await a.applyCreditAsync(openid: "o\(i)", templateID: "T", change: .add(1), eventKey: nil, now: SystemWallClock().timestamp)
                    guard let at = await wokenAt.next() else { break }
                    wakes.append(Self.milliseconds(at - start))
                }
                for i in 0..<samples {
                    let start = ContinuousClock.now
                    notifierA.publish(PresenceNote(user: "p\(i)", online: i % 2 == 0, eventTime: Int64(i)))
                    guard let at = await seenAt.next() else { break }
                    presence.append(Self.milliseconds(at - start))
                }
                return (wakes, presence)
            }
        }
        guard !wakes.isEmpty else {
            report.fail(Self.name, "needs --postgres")
            return
        }
        for (what, values) in [("a credit granted, until the other instance wakes", wakes), ("a presence event, until the other instance has it", presence)] {
            let sorted = values.sorted()
            report.add(Self.name, "\(what): p50", Self.percentile(sorted, 50), .milliseconds)
            report.add(Self.name, "\(what): p99", Self.percentile(sorted, 99), .milliseconds, target: .atMost(1_000))
        }
    }

    static func milliseconds(_ d: Duration) -> Double {
        let (s, atto) = d.components
        return Double(s) * 1_000 + Double(atto) / 1e15
    }

    static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        sorted[min(sorted.count - 1, Int((Double(sorted.count) * p / 100).rounded(.up)) - 1)]
    }
}
