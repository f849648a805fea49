import GRDB
import Synchronization

/// Why a batched write did not commit for its caller.
public enum CommitError: Error, Sendable, Equatable {
    /// The write did not commit within the caller's deadline; the caller answers anyway and
    /// counts the message as shed (SPEC §5.14). A job that had not started never will.
    case timedOut
    /// The transaction failed; nothing of its batch was written.
    case failed(String)
}

/// Group commit: concurrent writers share one SQLite transaction, so durability (one WAL write
/// per batch) does not cost throughput. No background task runs it: the first caller to find
/// the queue idle leads; after each batch the lead passes to the oldest waiting job, and a
/// leader returns as soon as its own job is committed. Each job runs in its own savepoint, so
/// one failing job does not undo the others.
public final class GroupCommitter: Sendable {
    private let store: RoundupStore
    private let maxBatch: Int
    private let queue = Mutex(QueueState())

    private struct QueueState {
        var jobs: [any CommitJob] = []
        var leading = false
    }

    /// - Parameter maxBatch: most jobs in one transaction, which bounds a batch's latency.
    public init(store: RoundupStore, maxBatch: Int = 512) {
        self.store = store
        self.maxBatch = maxBatch
    }

    /// Runs `work` in a shared write transaction and returns once it is committed; throws
    /// `CommitError.timedOut` when that takes longer than `timeout`, or the work's own error.
    public func perform<T: Sendable>(
        timeout: Duration, _ work: @escaping @Sendable (StoreTransaction) throws -> T
    ) async throws -> T {
        let job = TypedCommitJob(work: work)
        let lead = queue.withLock { q -> Bool in
            q.jobs.append(job)
            if q.leading { return false }
            q.leading = true
            return true
        }
        if lead { await runBatches(until: job) }
        let deadline = ContinuousClock.now + timeout
        while true {
            switch await job.nextWake(until: deadline) {
            case .done:
                return try job.result()
            case .lead:
                await runBatches(until: job)
            case .timeout:
                switch job.abandon() {
                case .finished(let result): return try result.get()
                case .mustLead: await runBatches(until: job)
                case .abandoned: throw CommitError.timedOut
                }
            }
        }
    }

    /// Commits batches until `job` is finished, then hands the lead on (or goes idle).
    private func runBatches(until job: any CommitJob) async {
        while true {
            let batch = queue.withLock { q -> [any CommitJob] in
                let take = Array(q.jobs.prefix(maxBatch))
                q.jobs.removeFirst(take.count)
                return take
            }
            let live = batch.filter { $0.begin() }
            if !live.isEmpty {
                do {
                    try await store.writer.write { db in
                        let tx = StoreTransaction(db)
                        for j in live { j.run(tx, db) }
                    }
                    for j in live { j.finish(nil) }
                } catch {
                    let failure = CommitError.failed(RoundupStore.explain(error))
                    for j in live { j.finish(failure) }
                }
            }
            guard job.isFinished else { continue }
            // Hand the lead to the oldest job whose caller still waits.
            while true {
                let next = queue.withLock { q -> (any CommitJob)? in
                    while let first = q.jobs.first, first.isAbandoned { q.jobs.removeFirst() }
                    guard let first = q.jobs.first else {
                        q.leading = false
                        return nil
                    }
                    return first
                }
                guard let next else { return }
                if next.offerLead() { return }
            }
        }
    }
}

/// A queued unit of work, type-erased for the queue.
private protocol CommitJob: AnyObject, Sendable {
    /// Marks the job started; false if its caller gave up first (then it is skipped for good).
    func begin() -> Bool
    func run(_ tx: StoreTransaction, _ db: Database)
    func finish(_ failure: CommitError?)
    /// Wakes the job's caller to lead; false if the caller already gave up.
    func offerLead() -> Bool
    var isFinished: Bool { get }
    var isAbandoned: Bool { get }
}

private enum Wake: Sendable, Equatable {
    case done, lead, timeout
}

private final class TypedCommitJob<T: Sendable>: CommitJob {
    enum Phase {
        case queued, running, done, abandoned
    }

    enum Abandon {
        case finished(Result<T, any Error>)
        case mustLead
        case abandoned
    }

    struct State {
        var phase = Phase.queued
        var result: Result<T, any Error>?
        var continuation: CheckedContinuation<Wake, Never>?
        var pending: Wake?
    }

    let work: @Sendable (StoreTransaction) throws -> T
    let state = Mutex(State())

    init(work: @escaping @Sendable (StoreTransaction) throws -> T) { self.work = work }

    func begin() -> Bool {
        state.withLock { s in
            guard s.phase == .queued else { return false }
            s.phase = .running
            return true
        }
    }

    func run(_ tx: StoreTransaction, _ db: Database) {
        var outcome: Result<T, any Error> = .failure(CommitError.failed("the job did not run"))
        do {
            try db.inSavepoint {
                do {
                    outcome = .success(try work(tx))
                    return .commit
                } catch {
                    outcome = .failure(error)
                    return .rollback
                }
            }
        } catch {
            outcome = .failure(error)
        }
        state.withLock { $0.result = outcome }
    }

    func finish(_ failure: CommitError?) {
        let c = state.withLock { s -> CheckedContinuation<Wake, Never>? in
            if let failure { s.result = .failure(failure) }
            guard s.phase == .running else { return nil }
            s.phase = .done
            return Self.deliver(&s, .done)
        }
        c?.resume(returning: .done)
    }

    func offerLead() -> Bool {
        let (accepted, c) = state.withLock { s -> (Bool, CheckedContinuation<Wake, Never>?) in
            guard s.phase == .queued else { return (false, nil) }
            return (true, Self.deliver(&s, .lead))
        }
        c?.resume(returning: .lead)
        return accepted
    }

    var isFinished: Bool { state.withLock { $0.phase == .done || $0.phase == .abandoned } }
    var isAbandoned: Bool { state.withLock { $0.phase == .abandoned } }

    func result() throws -> T {
        let r = state.withLock { $0.result }
        guard let r else { throw CommitError.failed("no result") }
        return try r.get()
    }

    /// Gives up at the deadline, unless the job finished or was just handed the lead.
    func abandon() -> Abandon {
        state.withLock { s in
            if s.phase == .done, let r = s.result { return .finished(r) }
            if s.pending == .lead {
                s.pending = nil
                return .mustLead
            }
            if s.phase == .queued || s.phase == .running { s.phase = .abandoned }
            return .abandoned
        }
    }

    /// Resumes the waiting caller, or keeps the wake-up until it next waits.
    private static func deliver(_ s: inout State, _ w: Wake) -> CheckedContinuation<Wake, Never>? {
        if let c = s.continuation {
            s.continuation = nil
            return c
        }
        if s.pending != .lead { s.pending = w }
        return nil
    }

    /// The next wake-up: committed, asked to lead, or the deadline passed.
    func nextWake(until deadline: ContinuousClock.Instant) async -> Wake {
        if let w = state.withLock({ s -> Wake? in
            defer { s.pending = nil }
            return s.pending
        }) {
            return w
        }
        return await withTaskGroup(of: Wake.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (c: CheckedContinuation<Wake, Never>) in
                        let now = self.state.withLock { s -> Wake? in
                            if let w = s.pending {
                                s.pending = nil
                                return w
                            }
                            s.continuation = c
                            return nil
                        }
                        if let now { c.resume(returning: now) }
                    }
                } onCancel: {
                    let c = self.state.withLock { s -> CheckedContinuation<Wake, Never>? in
                        defer { s.continuation = nil }
                        return s.continuation
                    }
                    c?.resume(returning: .timeout)
                }
            }
            group.addTask {
                try? await Task.sleep(until: deadline, clock: .continuous)
                return .timeout
            }
            let first = await group.next() ?? .timeout
            group.cancelAll()
            // A real wake-up that raced the deadline is kept for the caller to see.
            for await other in group where other != .timeout && first == .timeout {
                state.withLock { $0.pending = other }
            }
            return first
        }
    }
}
