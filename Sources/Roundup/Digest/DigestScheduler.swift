import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Decides what is due and keeps the send pipeline moving. Each pass re-checks held digests,
/// picks the open digests that are due and not already in the pipeline, applies quiet hours,
/// `min_interval`, binding and template (re-time or hold), and hands the rest to a presence
/// batch of its own. Each confirmed digest then takes one of `send_concurrency` slots, so a send
/// or an IM call that hangs holds up only itself (its slot, its batch) and a digest that comes
/// due meanwhile starts within a second while a slot is free.
///
/// Runs as a `Service`: it wakes at the next due time, when rung (a flush, a binding, a credit,
/// a reload), and at least once a second so that a CLI `flush` from another process is seen.
/// On graceful shutdown it stops picking, lets sends in flight finish, and starts no new one.
public final class DigestScheduler: Service, Sendable {
    let store: RoundupStore
    let sender: DigestSender
    let config: LiveConfig
    let clock: any WallClock
    let logger: Logger
    let slots = SendSlots()
    let bell = WakeSignal()
    /// Digests picked and not yet done with: in a presence batch, waiting for a slot, or sending.
    private let inFlight = Mutex<Set<Int64>>([])
    private let stopping = Atomic<Bool>(false)
    /// Rung when the pipeline, full at the last pick, has drained to half.
    private let room = WakeSignal()
    private let waitingForRoom = Atomic<Bool>(false)

    public init(store: RoundupStore, sender: DigestSender, config: LiveConfig, clock: any WallClock, logger: Logger) {
        self.store = store
        self.sender = sender
        self.config = config
        self.clock = clock
        self.logger = logger
    }

    /// Wakes the scheduler now (a credit or binding arrived, a flush, a config reload).
    public func wake() { bell.signal() }

    /// Digests in the pipeline right now.
    public var inFlightCount: Int { inFlight.withLock { $0.count } }

    /// The most digests an instance keeps in its pipeline (claimed and not yet sent). Where
    /// several instances share the sends (PostgreSQL): enough for its send slots to stay busy
    /// while the next batch is claimed and confirmed, and no more, so that when a window closes
    /// on many users at once every instance gets a share, instead of the first to wake claiming
    /// them all while the others have free slots. Alone (SQLite): no limit; everything due is
    /// claimed in presence batches back to back, which keeps the slots busiest (a limit of one
    /// batch sent a flush about a quarter slower with no WeChat latency).
    public static func pipelineLimit(sendConcurrency: Int, shared: Bool) -> Int {
        shared ? max(8 * sendConcurrency, 64) : .max
    }

    private var pipelineLimit: Int {
        Self.pipelineLimit(sendConcurrency: config.snapshot.digest.sendConcurrency, shared: store.engine.kind == .postgresql)
    }

    /// How many more digests may be claimed now (0 while the pipeline is full).
    private func claimRoom() -> Int {
        min(DigestSender.presenceBatch, max(0, pipelineLimit - inFlightCount))
    }

    /// Waits until the pipeline has drained to half its limit (or a second has passed).
    private func waitForRoom() async {
        waitingForRoom.store(true, ordering: .sequentiallyConsistent)
        if claimRoom() > 0 { return }
        await room.wait(timeout: .seconds(1))
    }

    /// Digests left the pipeline: rings `room` when a pick waits and half the limit is free.
    private func leftPipeline() {
        guard waitingForRoom.load(ordering: .sequentiallyConsistent) else { return }
        guard inFlightCount <= pipelineLimit / 2, waitingForRoom.exchange(false, ordering: .sequentiallyConsistent) else { return }
        room.signal()
    }

    public func run() async throws {
        await recoverInterruptedSends()
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                while !self.stopping.load(ordering: .relaxed) && !Task.isCancelled {
                    let limit = self.claimRoom()
                    if limit == 0 {
                        await self.waitForRoom()
                        continue
                    }
                    let now = self.clock.timestamp
                    let picked = await self.pick(now: now, limit: limit)
                    if !picked.ready.isEmpty {
                        group.addTask { await self.process(picked.ready) }
                    }
                    // A full batch means more may be due already: pick again at once.
                    if picked.considered >= limit { continue }
                    let next = (try? await self.store.nextDueAt(after: now)) ?? nil
                    let untilNext = next.map { max(0, $0.date.timeIntervalSince(self.clock.now)) } ?? 1
                    // At most a second, so that a flush from another process is seen within one.
                    await self.bell.wait(timeout: .milliseconds(Int64(min(untilNext, 1) * 1000) + 1))
                }
                // Stopping: what this instance claimed but has not started goes to the others now,
                // not when the sends in flight end (a digest still waiting for a slot then fails
                // its fence and is left to them); then the group waits for the sends in flight.
                await self.releaseUnstartedClaims()
            }
        } onGracefulShutdown: {
            self.stopping.store(true, ordering: .relaxed)
            self.bell.signal()
        }
    }

    func releaseUnstartedClaims() async {
        do {
            try await store.write { tx in try tx.releaseClaims() }
        } catch {
            logger.error("could not release unstarted claims", metadata: ["error": "\(RoundupStore.explain(error))"])
        }
    }

    /// One pass, waiting for every send it started (tests, the demo and the benchmark step the
    /// pipeline with this). Returns how many due digests it handled.
    @discardableResult
    public func runOnce() async -> Int {
        // Everything due now, one presence batch per pick, each on its way while the next is
        // picked, no more in the pipeline at once than `run` keeps; the batches share the slots.
        await withTaskGroup(of: Void.self, returning: Int.self) { group in
            var handled = 0
            for _ in 0..<100_000 {
                let limit = claimRoom()
                if limit == 0 {
                    await waitForRoom()
                    continue
                }
                let picked = await pick(now: clock.timestamp, limit: limit)
                handled += picked.considered
                if !picked.ready.isEmpty { group.addTask { await self.process(picked.ready) } }
                if picked.considered < limit { break }
            }
            await group.waitForAll()
            return handled
        }
    }

    // MARK: - picking

    /// Due digests not in the pipeline: re-timed, held, or ready with their template (then in flight).
    func pick(now: Timestamp, limit: Int = DigestSender.presenceBatch) async -> (ready: [(DueDigest, TemplateConfig)], considered: Int) {
        let cfg = config.snapshot
        let lifecycle = DigestLifecycle(config: cfg, now: now)
        do {
            try await store.clearExpiredSendPauses(now: now)
            await recheckHeld(lifecycle)
            let pauses = try await store.sendPausesAsync()
            if pauses.quota { return ([], 0) }
            let busy = inFlight.withLock { $0 }
            let due = try await store.claimDueDigests(now: now, limit: limit, excluding: busy)
            guard !due.isEmpty else { return ([], 0) }
            // One query for the whole batch's credits instead of one per digest and template.
            let credits = try await store.creditsAsync(openids: due.compactMap(\.openid))
            let decisions = await sender.write(.claim, digests: due.map(\.id)) { tx -> [(DueDigest, TemplateConfig)] in
                var ready: [(DueDigest, TemplateConfig)] = []
                for d in due {
                    if let wait = try lifecycle.holdBack(tx, d) {
                        try lifecycle.retimeDue(tx, digest: d.id, to: wait.until, why: wait.why)
                        continue
                    }
                    switch lifecycle.chooseTemplate(openid: d.openid, user: d.imUserID, credits: credits[d.openid ?? ""] ?? [:], pauses: pauses) {
                    case .use(let template): ready.append((d, template))
                    case .hold(let reason, let note):
                        try lifecycle.hold(tx, digest: d.id, from: d.state, current: d.reason, reason: reason, note: note)
                    }
                }
                return ready
            }
            let ready = decisions ?? []
            inFlight.withLock { set in for (d, _) in ready { set.insert(d.id) } }
            return (ready, due.count)
        } catch {
            logger.error("cannot read due digests", metadata: ["error": "\(error)"])
            return ([], 0)
        }
    }

    /// Held digests whose reason went away (a binding, a credit, a config change) are due now.
    func recheckHeld(_ lifecycle: DigestLifecycle) async {
        do {
            let held = try await store.heldDigestsAsync()
            guard !held.isEmpty else { return }
            let pauses = try await store.sendPausesAsync()
            let credits = try await store.creditsAsync(openids: held.compactMap(\.openid))
            let lift = held.filter { d in
                switch d.reason {
                case .unbound: return d.openid != nil
                case .noCredit, .configError:
                    guard let openid = d.openid else { return false }
                    if case .use = lifecycle.chooseTemplate(openid: openid, user: d.imUserID, credits: credits[openid] ?? [:], pauses: pauses) {
                        return true
                    }
                    return false
                default: return false
                }
            }
            guard !lift.isEmpty else { return }
            await sender.write(.hold, digests: lift.map(\.id)) { tx in
                for d in lift { try lifecycle.liftHold(tx, digest: d.id, reason: d.reason) }
            }
        } catch {
            logger.error("cannot re-check held digests", metadata: ["error": "\(error)"])
        }
    }

    // MARK: - the pipeline

    /// One presence batch, then each confirmed digest through a send slot.
    func process(_ batch: [(DueDigest, TemplateConfig)]) async {
        let cfg = config.snapshot
        let confirmed = await sender.confirmPresence(batch, cfg: cfg)
        let going = Set(confirmed.map(\.0.id))
        inFlight.withLock { set in for (d, _) in batch where !going.contains(d.id) { set.remove(d.id) } }
        leftPipeline()
        // The batch's messages in one read, not one per send (a send reads its own if this fails).
        let read = (try? await store.digestMessagesAsync(ofDigests: Array(going))) ?? [:]
        await withDiscardingTaskGroup { group in
            for (d, template) in confirmed {
                group.addTask {
                    defer {
                        self.inFlight.withLock { _ = $0.remove(d.id) }
                        self.leftPipeline()
                    }
                    guard let slot = await self.slots.take(limit: { self.config.snapshot.digest.sendConcurrency }) else { return }
                    await self.sender.send(d, template: template, cfg: cfg, read: read[d.id],
                                           shouldStart: { !self.stopping.load(ordering: .relaxed) }, answered: slot.release)
                    slot.release()
                }
            }
        }
    }

    /// Digests left in `sending` by a crash become `in_doubt`: WeChat may have delivered them.
    func recoverInterruptedSends() async {
        do {
            let recovered = try await store.recoverInterruptedSendsAsync(now: clock.timestamp)
            if !recovered.isEmpty {
                logger.warning("digests interrupted during sending are now in_doubt and will not be resent", metadata: ["count": "\(recovered.count)"])
            }
        } catch {
            sender.metrics.storeError(.recover)
            logger.error("cannot mark interrupted sends in_doubt", metadata: ["error": "\(error)"])
        }
    }

    /// Re-times open digests (all, or one user's) under the config in force now, and wakes the
    /// pipeline when one moved. Returns how many moved.
    @discardableResult
    public func retimeOpenDigests(user: String? = nil, reason: String) async -> Int {
        let lifecycle = DigestLifecycle(config: config.snapshot, now: clock.timestamp)
        do {
            let changed = try await store.write { tx in try lifecycle.retime(tx, user: user, reason: reason) }
            if changed > 0 { wake() }
            return changed
        } catch {
            sender.metrics.storeError(.retime)
            logger.error("cannot re-time open digests", metadata: ["error": "\(error)"])
            return 0
        }
    }
}
