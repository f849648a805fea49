import Foundation
import Synchronization

/// Wall time for everything that needs real dates: due times, quiet hours, the quota day,
/// IM's ±60 s signature window. Swift's `Clock` has no wall time, so this small protocol stands
/// in, with a manual implementation that tests (and the demo) move by hand.
public protocol WallClock: Sendable {
    var now: Date { get }
    /// Suspends until the clock reads `deadline` (or later); throws on cancellation.
    func sleep(until deadline: Date) async throws
}

extension WallClock {
    /// `now` as Roundup stores instants.
    public var timestamp: Timestamp { Timestamp(now) }
}

/// The system clock.
public struct SystemWallClock: WallClock {
    public init() {}
    public var now: Date { Date() }

    public func sleep(until deadline: Date) async throws {
        let interval = deadline.timeIntervalSinceNow
        if interval > 0 { try await Task.sleep(for: .milliseconds(Int64((interval * 1000).rounded(.up)))) }
    }
}

/// A clock that only moves when told to; sleepers wake when `advance`/`set` passes their
/// deadline. For tests: time-dependent logic runs instantly and deterministically.
public final class ManualWallClock: WallClock {
    private struct Sleeper {
        let id: UInt64
        let deadline: Date
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now: Date
        var sleepers: [Sleeper] = []
        var nextID: UInt64 = 0
    }

    private let state: Mutex<State>

    public init(_ start: Date) { state = Mutex(State(now: start)) }

    public var now: Date { state.withLock { $0.now } }

    /// Number of tasks currently sleeping on this clock (tests wait for a service to park).
    public var sleeperCount: Int { state.withLock { $0.sleepers.count } }

    /// Moves time forward and wakes every sleeper whose deadline has come.
    public func advance(by seconds: TimeInterval) { set(now.addingTimeInterval(seconds)) }

    /// Sets the time (never backwards) and wakes due sleepers.
    public func set(_ date: Date) {
        let woken = state.withLock { s -> [Sleeper] in
            if date > s.now { s.now = date }
            let due = s.sleepers.filter { $0.deadline <= s.now }
            s.sleepers.removeAll { $0.deadline <= s.now }
            return due
        }
        for sleeper in woken { sleeper.continuation.resume() }
    }

    public func sleep(until deadline: Date) async throws {
        let id = state.withLock { s -> UInt64 in
            s.nextID += 1
            return s.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                let resumeNow = state.withLock { s -> Bool in
                    if deadline <= s.now || Task.isCancelled { return true }
                    s.sleepers.append(Sleeper(id: id, deadline: deadline, continuation: c))
                    return false
                }
                if resumeNow { c.resume() }
            }
        } onCancel: {
            let sleeper = state.withLock { s -> Sleeper? in
                guard let i = s.sleepers.firstIndex(where: { $0.id == id }) else { return nil }
                return s.sleepers.remove(at: i)
            }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
        try Task.checkCancellation()
    }
}
