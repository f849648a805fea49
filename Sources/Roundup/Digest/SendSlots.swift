import Synchronization

/// The `send_concurrency` slots of the send pipeline: a send takes one before it starts and gives
/// it back when WeChat has answered (recording the result needs no slot), and the next waiter (first come, first served) takes it at once. A send
/// that hangs holds one slot and nothing else. The limit is read at each `acquire`, so a reload
/// of `digest.send_concurrency` applies to the next send.
public final class SendSlots: Sendable {
    private struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Void, Never>
    }

    private struct State {
        var inUse = 0
        var waiters: [Waiter] = []
        var nextID: UInt64 = 0
        /// Waiters a released slot was handed to, not yet back from `acquire`.
        var granted: Set<UInt64> = []
    }

    private let state = Mutex(State())

    public init() {}

    /// Slots taken now.
    public var inUse: Int { state.withLock { $0.inUse } }

    /// Sends waiting for a slot.
    public var waiting: Int { state.withLock { $0.waiters.count } }

    /// Takes a slot (see `acquire`) as a `SendSlot` to give back once; nil when cancelled while waiting.
    public func take(limit: @escaping @Sendable () -> Int) async -> SendSlot? {
        guard await acquire(limit: limit()) else { return nil }
        return SendSlot(self, limit: limit)
    }

    /// Returns true when the caller holds a slot (at most `limit` are held at once), false when
    /// it was cancelled while waiting (then it holds none and must not release).
    @discardableResult
    public func acquire(limit: Int) async -> Bool {
        let id = state.withLock { s -> UInt64? in
            if s.inUse < max(1, limit) && s.waiters.isEmpty {
                s.inUse += 1
                return nil
            }
            s.nextID += 1
            return s.nextID
        }
        guard let id else { return true }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { s -> Bool in
                    if Task.isCancelled { return true }
                    s.waiters.append(Waiter(id: id, continuation: c))
                    return false
                }
                if resumeNow { c.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { s -> Waiter? in
                guard let index = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return s.waiters.remove(at: index)
            }
            waiter?.continuation.resume()
        }
        return state.withLock { $0.granted.remove(id) != nil }
    }

    /// Gives a slot back: the first waiter takes it over when the limit allows, else it is freed.
    public func release(limit: Int) {
        let next = state.withLock { s -> Waiter? in
            if !s.waiters.isEmpty && s.inUse <= max(1, limit) {
                let next = s.waiters.removeFirst()
                s.granted.insert(next.id)
                return next
            }
            s.inUse -= 1
            return nil
        }
        next?.continuation.resume()
    }
}

/// One slot taken from `SendSlots`, given back once however many times `release` is called:
/// the sender gives it back as soon as WeChat has answered, the pipeline again when the send ends.
public final class SendSlot: Sendable {
    private let slots: SendSlots
    private let limit: @Sendable () -> Int
    private let released = Atomic<Bool>(false)

    init(_ slots: SendSlots, limit: @escaping @Sendable () -> Int) {
        self.slots = slots
        self.limit = limit
    }

    public func release() {
        guard released.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else { return }
        slots.release(limit: limit())
    }
}
