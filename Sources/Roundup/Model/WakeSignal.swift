import Synchronization

/// A doorbell for a background service: `signal()` from anywhere, `wait(timeout:)` in the one
/// loop that owns the work. Signals while nobody waits are remembered (coalesced into one).
public final class WakeSignal: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    public init() {}

    /// Rings the bell.
    public func signal() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if let w = s.waiter {
                s.waiter = nil
                return w
            }
            s.pending = true
            return nil
        }
        waiter?.resume()
    }

    /// Returns when signalled (true), when `timeout` has passed or the task is cancelled (false).
    @discardableResult
    public func wait(timeout: Duration) async -> Bool {
        if state.withLock({ s in
            defer { s.pending = false }
            return s.pending
        }) { return true }
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                        let now = self.state.withLock { s -> Bool in
                            if s.pending {
                                s.pending = false
                                return true
                            }
                            s.waiter = c
                            return false
                        }
                        if now { c.resume() }
                    }
                    return !Task.isCancelled
                } onCancel: {
                    let w = self.state.withLock { s -> CheckedContinuation<Void, Never>? in
                        defer { s.waiter = nil }
                        return s.waiter
                    }
                    w?.resume()
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }
}
