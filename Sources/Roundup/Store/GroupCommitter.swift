import Dispatch
import Synchronization

/// Why a batched write did not commit for its caller.
public enum CommitError: Error, Sendable, Equatable {
    /// The write did not commit within the caller's deadline; the caller answers anyway and
    /// counts the message as shed. A job that had not started never will.
    case timedOut
    /// The transaction failed; nothing of its batch was written.
    case failed(String)
    /// The queue already held `maxQueued` jobs: this one was refused without waiting (it could
    /// not have committed in time anyway), which keeps memory bounded during a burst.
    case overloaded
}

/// Group commit: concurrent writers share one transaction, so durability (one log flush per
/// batch) does not cost throughput. Batches run on the engine's writer (`StoreEngine.schedule`),
/// one after another while jobs wait, so no caller ever runs a
/// batch itself: every caller only waits for its own job, and gives up at its deadline even when
/// the database is stuck. One failing job does not undo the others: the batch is then run
/// again with a savepoint per job.
public final class GroupCommitter: Sendable {
    private let store: RoundupStore
    private let maxBatch: Int
    /// Batches committing at once: one on SQLite (one writer), several on PostgreSQL.
    private let maxBatches: Int
    private let maxQueued: Int
    private let queue = Mutex(QueueState())
    private let transactions = Atomic<Int>(0)
    private let deadlines = CommitDeadlines()

    /// Transactions committed so far (each holds one batch of jobs).
    public var committedTransactions: Int { transactions.load(ordering: .relaxed) }

    private struct QueueState {
        var jobs: [any CommitJob] = []
        /// A batch is scheduled or running on the writer queue.
        var batches = 0
        /// Queue length after the last pruning of abandoned jobs.
        var prunedAt = 0
    }

    /// - Parameters:
    ///   - maxBatch: most jobs in one transaction, which bounds a batch's latency.
    ///   - maxQueued: most jobs waiting; more are refused at once with `CommitError.overloaded`.
    public init(store: RoundupStore, maxBatch: Int = 512, maxQueued: Int = 20_000) {
        self.store = store
        self.maxBatch = maxBatch
        self.maxBatches = max(1, store.engine.concurrentWriters)
        self.maxQueued = maxQueued
    }

    /// Jobs waiting to be committed (abandoned ones may be counted until the next pruning).
    public var queuedJobs: Int { queue.withLock { $0.jobs.count } }

    /// Deadlines kept for waiting callers (some of finished jobs, not yet dropped), for tests.
    var trackedDeadlines: Int { deadlines.count }

    /// What the store's writer knows of `user` (`StoreEngine.idleWriterFacts`), only while no job
    /// is queued or committing and no write transaction runs: a change made before this call (a
    /// presence change) is then seen by every transaction that starts after it, and nothing the
    /// facts do not show is on its way. Nil otherwise.
    public func idleFacts(user: String) -> WriterFacts? {
        queue.withLock { q in
            guard q.jobs.isEmpty, q.batches == 0 else { return nil }
            return store.engine.idleWriterFacts(user: user)
        }
    }

    /// Runs `work` in a shared write transaction and returns once it is committed; throws
    /// `CommitError.timedOut` when that takes longer than `timeout`, `CommitError.overloaded`
    /// when the queue is full, or the work's own error.
    ///
    /// `hints` says what the work will touch, so an engine can read it for the whole batch at
    /// once (`StoreTransaction.prepareBatch`); without them the work still runs, just unprepared.
    public func perform<T: Sendable>(
        timeout: Duration, hints: WriteHints? = nil, _ work: @escaping @Sendable (any StoreTransaction) throws -> T
    ) async throws -> T {
        let job = TypedCommitJob(work: work, hints: hints)
        let maxQueued = self.maxQueued
        let admitted = queue.withLock { q -> Bool? in
            // While the writer is stuck, callers give up and their jobs stay queued until a
            // batch skips them: drop them whenever the queue has doubled since the last pruning.
            if q.jobs.count >= max(1024, 2 * q.prunedAt) {
                q.jobs.removeAll { $0.isAbandoned }
                q.prunedAt = q.jobs.count
            }
            guard q.jobs.count < maxQueued else { return nil }
            q.jobs.append(job)
            if q.batches >= maxBatches { return false }
            q.batches += 1
            return true
        }
        guard let schedule = admitted else { throw CommitError.overloaded }
        if schedule { scheduleBatch() }
        switch await job.wait(timeout: timeout, deadlines: deadlines) {
        case .done: return try job.result()
        case .timeout: throw CommitError.timedOut
        }
    }

    /// Queues one batch on the writer queue; other writes of the store interleave between batches.
    private func scheduleBatch() {
        store.engine.schedule { inTransaction in self.runBatch(inTransaction) }
    }

    /// Commits the oldest jobs in one transaction, then schedules the next batch if any wait.
    private func runBatch(_ inTransaction: TransactionRunner) {
        let batch = queue.withLock { q -> [any CommitJob] in
            let take = Array(q.jobs.prefix(maxBatch))
            q.jobs.removeFirst(take.count)
            q.prunedAt = min(q.prunedAt, q.jobs.count)
            return take
        }
        let live = batch.filter { $0.begin() }
        if !live.isEmpty {
            do {
                // Jobs almost never fail, so they run without a savepoint each (two statements
                // fewer per job, two round trips on PostgreSQL), after the engine has read what
                // they will touch, and the engine may hold their writes until the end. When a job
                // fails, the whole batch is undone and run again with a savepoint per job and
                // nothing prepared or held, without the job that failed: it keeps its error, and
                // every other job commits as if it had run alone. When the held writes fail, no
                // job is to blame and all run again.
                var failed: ObjectIdentifier?
                do {
                    try inTransaction { tx in
                        do {
                            try tx.prepareBatch(live.compactMap(\.hints))
                        } catch {
                            throw BatchNeedsSavepoints()
                        }
                        for j in live {
                            guard let error = j.runDirectly(tx) else { continue }
                            if !(error is BatchWriteFailed) { failed = ObjectIdentifier(j) }
                            throw BatchNeedsSavepoints()
                        }
                        do {
                            try tx.flushBatch()
                        } catch {
                            throw BatchNeedsSavepoints()
                        }
                    }
                } catch is BatchNeedsSavepoints {
                    try inTransaction { tx in
                        for j in live where ObjectIdentifier(j) != failed { j.run(tx) }
                    }
                }
                transactions.add(1, ordering: .relaxed)
                for j in live { j.finish(nil) }
            } catch {
                let failure = CommitError.failed(RoundupStore.explain(error))
                for j in live { j.finish(failure) }
            }
        }
        let more = queue.withLock { q -> Bool in
            if q.jobs.isEmpty {
                q.batches -= 1
                return false
            }
            return true
        }
        if more { scheduleBatch() }
    }
}

/// Thrown out of a batch's first transaction when a job failed: roll back, retry with savepoints.
private struct BatchNeedsSavepoints: Error {}

/// A queued unit of work, type-erased for the queue.
private protocol CommitJob: AnyObject, Sendable {
    /// Marks the job started; false if its caller gave up first (then it is skipped for good).
    func begin() -> Bool
    /// What the work will touch, for `StoreTransaction.prepareBatch`.
    var hints: WriteHints? { get }
    /// Runs the work in the batch's transaction as it is; returns its error when it threw (the
    /// error is kept as its result, and the transaction must be rolled back: its partial writes
    /// are in it).
    func runDirectly(_ tx: any StoreTransaction) -> (any Error)?
    /// Runs the work in a savepoint of its own, so that a failure undoes only its writes.
    func run(_ tx: any StoreTransaction)
    func finish(_ failure: CommitError?)
    var isAbandoned: Bool { get }
    /// Done or abandoned: its deadline no longer matters.
    var isSettled: Bool { get }
    /// The deadline passed before the job finished (see `TypedCommitJob.expire`).
    func expire()
}

private enum Wake: Sendable, Equatable {
    case done, timeout
}

private final class TypedCommitJob<T: Sendable>: CommitJob {
    enum Phase {
        case queued, running, done, abandoned
    }

    struct State {
        var phase = Phase.queued
        var result: Result<T, any Error>?
        var continuation: CheckedContinuation<Wake, Never>?
        /// The wake-up that came before the caller started waiting.
        var pending: Wake?
    }

    let work: @Sendable (any StoreTransaction) throws -> T
    let hints: WriteHints?
    let state = Mutex(State())

    init(work: @escaping @Sendable (any StoreTransaction) throws -> T, hints: WriteHints?) {
        self.work = work
        self.hints = hints
    }

    func begin() -> Bool {
        state.withLock { s in
            guard s.phase == .queued else { return false }
            s.phase = .running
            return true
        }
    }

    func runDirectly(_ tx: any StoreTransaction) -> (any Error)? {
        do {
            let value = try work(tx)
            state.withLock { $0.result = .success(value) }
            return nil
        } catch {
            state.withLock { $0.result = .failure(error) }
            return error
        }
    }

    func run(_ tx: any StoreTransaction) {
        var outcome: Result<T, any Error>
        // A savepoint per job: a job that fails leaves the batch's other jobs committed.
        do {
            outcome = .success(try tx.inSavepoint { try work(tx) })
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

    var isAbandoned: Bool { state.withLock { $0.phase == .abandoned } }

    var isSettled: Bool {
        state.withLock { s in
            switch s.phase {
            case .done, .abandoned: return true
            case .queued, .running: return false
            }
        }
    }

    func result() throws -> T {
        let r = state.withLock { $0.result }
        guard let r else { throw CommitError.failed("no result") }
        return try r.get()
    }

    /// The deadline passed (or the caller was cancelled) before the job finished: a job still
    /// queued never runs, one already running may still commit, and the caller is told it timed out.
    func expire() {
        let c = state.withLock { s -> CheckedContinuation<Wake, Never>? in
            guard s.phase == .queued || s.phase == .running else { return nil }
            s.phase = .abandoned
            return Self.deliver(&s, .timeout)
        }
        c?.resume(returning: .timeout)
    }

    /// Resumes the waiting caller, or keeps the wake-up until it waits.
    private static func deliver(_ s: inout State, _ w: Wake) -> CheckedContinuation<Wake, Never>? {
        if let c = s.continuation {
            s.continuation = nil
            return c
        }
        s.pending = w
        return nil
    }

    /// Waits until the job is committed (or failed), or `timeout` passes. The deadline is kept by
    /// `deadlines`, a Dispatch timer, not a sleeping task, so it expires the job on time even when
    /// every thread of the cooperative pool is busy: a job not started by its deadline is never
    /// written, however late its caller gets to run.
    func wait(timeout: Duration, deadlines: CommitDeadlines) async -> Wake {
        deadlines.add(self, timeout: timeout)
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Wake, Never>) in
                let now = state.withLock { s -> Wake? in
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
            expire()
        }
    }
}

/// The deadlines of the jobs whose callers wait, all kept by one Dispatch timer on a queue of
/// its own (one timer per job cost a timer-heap update, a block and a cancellation per callback).
///
/// Deadlines are kept in one line per timeout length: callers mostly pass the same timeout, and
/// within a line the deadlines come in the order the jobs were added. The timer is armed for the
/// earliest first deadline of a line; when it fires, every job past its deadline that has not
/// finished is expired. A job that finished is dropped from the front of its line as new jobs
/// arrive, so a line holds about the jobs still in flight.
final class CommitDeadlines: @unchecked Sendable {
    private struct Entry {
        let deadline: UInt64
        let job: any CommitJob
    }

    /// Jobs in deadline order; `entries[head...]` are live.
    private struct Line {
        var entries: [Entry] = []
        var head = 0

        var first: Entry? { head < entries.count ? entries[head] : nil }

        mutating func removeFirst() {
            head += 1
            if head == entries.count {
                entries.removeAll(keepingCapacity: true)
                head = 0
            } else if head >= 1024 && head * 2 >= entries.count {
                entries.removeFirst(head)
                head = 0
            }
        }

        /// Drops settled jobs from the front.
        mutating func dropSettled() {
            while let e = first, e.job.isSettled { removeFirst() }
        }
    }

    private struct State {
        var lines: [UInt64: Line] = [:]
        /// The deadline the timer is armed for, if it is.
        var armed: UInt64?
    }

    private let state = Mutex(State())
    // Safe to share: a Dispatch source is thread-safe, and it is only armed with the lock held.
    private let timer: any DispatchSourceTimer

    init() {
        timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "roundup.commit-deadlines"))
        timer.setEventHandler { [weak self] in self?.sweep() }
        timer.schedule(deadline: .distantFuture)
        timer.resume()
    }

    deinit { timer.cancel() }

    /// Expires `job` after `timeout` unless it has settled by then.
    fileprivate func add(_ job: any CommitJob, timeout: Duration) {
        let (seconds, attoseconds) = timeout.components
        // Clamped to a day first, so a huge timeout cannot overflow into an immediate one.
        let length = UInt64(clamping: max(0, min(seconds, 86_400))) * 1_000_000_000 + UInt64(clamping: max(0, attoseconds / 1_000_000_000))
        state.withLock { s in
            // Read under the lock, so that a line's deadlines are appended in order.
            let deadline = DispatchTime.now().uptimeNanoseconds + length
            s.lines[length, default: Line()].dropSettled()
            s.lines[length, default: Line()].entries.append(Entry(deadline: deadline, job: job))
            if s.armed.map({ deadline < $0 }) ?? true { arm(&s, at: deadline) }
        }
    }

    /// Expires the jobs past their deadline, then arms the timer for the next one.
    private func sweep() {
        let now = DispatchTime.now().uptimeNanoseconds
        let due = state.withLock { s -> [any CommitJob] in
            var due: [any CommitJob] = []
            var next: UInt64?
            for key in Array(s.lines.keys) {
                guard var line = s.lines[key] else { continue }
                while let e = line.first, e.deadline <= now || e.job.isSettled {
                    if !e.job.isSettled { due.append(e.job) }
                    line.removeFirst()
                }
                if let e = line.first {
                    next = min(next ?? e.deadline, e.deadline)
                    s.lines[key] = line
                } else {
                    s.lines[key] = nil
                }
            }
            s.armed = nil
            if let next { arm(&s, at: next) }
            return due
        }
        for job in due { job.expire() }
    }

    private func arm(_ s: inout State, at deadline: UInt64) {
        s.armed = deadline
        timer.schedule(deadline: DispatchTime(uptimeNanoseconds: deadline), leeway: .milliseconds(1))
    }

    /// Jobs whose deadlines are kept (settled ones not yet dropped included), for tests.
    var count: Int { state.withLock { s in s.lines.values.reduce(0) { $0 + $1.entries.count - $1.head } } }
}
