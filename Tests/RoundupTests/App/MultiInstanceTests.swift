import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import Roundup

/// Several instances end to end: three real `roundup serve` processes share one fresh
/// PostgreSQL database and the fake WeChat and IM servers of this process, which outlive any
/// instance and record every send. One instance is SIGKILLed, SIGSTOPped or SIGTERMed while it
/// holds claims or has sends in flight; no digest may be lost or sent twice. With
/// `storage.instance_timeout: 3s` a silent instance is taken for dead within seconds.
@Suite("Several serve instances on PostgreSQL", .serialized)
struct MultiInstanceTests {
    /// `storage.instance_timeout` of every test, in seconds.
    static let instanceTimeout = 3.0
    /// A one-second window: each digest comes due a second after its message.
    static let dueSoon = "  window: 1s\n"
    /// A long window: nothing comes due until `roundup flush`.
    static let dueOnFlush = "  window: 10m\n"

    // MARK: 1. exactly once

    @Test("60 users' callbacks spread over three instances: each digest is sent exactly once, and roundup instances lists all three")
    func exactlyOnceAcrossInstances() async throws {
        let users = 60
        try await MultiServe.run(users: users, sendConcurrency: 4, digestYAML: Self.dueSoon) { cluster in
            try await cluster.start(3)
            await cluster.postOneEach(0..<users)
            let listed = try await cluster.liveInstances()
            #expect(Set(listed.map(\.pid)) == Set(cluster.serves.map(\.pid)),
                    "roundup instances listed pids \(listed.map(\.pid).sorted()) while serves \(cluster.serves.map(\.pid).sorted()) ran")
            #expect(listed.allSatisfy { $0.heartbeatAge < Self.instanceTimeout / 2 }, "a heartbeat is stale: \(listed.map(\.heartbeatAge))")
            let bySender = try await cluster.sendsPerInstance(users: users, label: "exactly-once", settle: .seconds(2))
            #expect(bySender.count >= 2, "one instance sent every digest: the test did not spread the work (\(bySender))")
            #expect(try await cluster.liveInstances().count == 3, "an instance left the list while running")
        }
    }

    @Test("a flush of many digests is shared: each instance keeps only its pipeline's worth claimed, so both send")
    func flushIsShared() async throws {
        let users = 120
        try await MultiServe.run(users: users, sendConcurrency: 2, digestYAML: Self.dueOnFlush) { cluster in
            // Slow sends: the first instance to wake could claim every digest before the other.
            await cluster.rig.wechat.script.setSendLatency(.milliseconds(100))
            try await cluster.start(2)
            await cluster.postOneEach(0..<users)
            try await cluster.flush(["--all"])
            let bySender = try await cluster.sendsPerInstance(users: users, label: "flush")
            // Each keeps at most 64 (8 × send_concurrency, at least 64) in its pipeline.
            #expect(bySender.count == 2 && bySender.values.allSatisfy { $0 >= 24 }, "one instance hoarded the flush: \(bySender)")
        }
    }

    // MARK: 2. SIGKILL

    @Test("SIGKILL of an instance with sends in flight: its sending digests become in_doubt within a few instance_timeouts and are never resent; the rest are sent once by the survivors")
    func killedInstance() async throws {
        let users = 30
        try await MultiServe.run(users: users, sendConcurrency: 2, digestYAML: Self.dueSoon) { cluster in
            // Every WeChat call takes 2 s, so each instance has sends in flight and more waiting.
            await cluster.rig.wechat.script.setSendLatency(.seconds(2))
            try await cluster.start(3)
            await cluster.postOneEach(0..<users)
            let victim = try #require(try await cluster.instanceMidSend(), "no instance had a send in flight and more claimed\n\(cluster.logTails())")
            kill(victim.serve.pid, SIGKILL)
            let killedAt = Date()
            let died = await awaitExit(victim.serve, timeout: 10)
            #expect(died && victim.serve.wasKilled, "the SIGKILLed serve did not die as killed")
            // Its connections are gone; what it committed is all there will be.
            try await Task.sleep(for: .milliseconds(300))
            let atKill = try await cluster.digests()
            let inFlight = Set(atKill.filter { $0.claimedBy == victim.id && $0.state == "sending" }.map(\.id))
            let unstarted = Set(atKill.filter { $0.claimedBy == victim.id && $0.state == "open" }.map(\.id))
            print("multi-instance SIGKILL: pid \(victim.serve.pid) killed with \(inFlight.count) send(s) in flight and \(unstarted.count) claimed, not started")
            #expect(!inFlight.isEmpty, "the killed instance had no digest in `sending`")

            let doubted = try await poll(timeout: 5 * Self.instanceTimeout) {
                try await cluster.digests().filter { inFlight.contains($0.id) }.allSatisfy { $0.state == "in_doubt" }
            }
            let took = Date().timeIntervalSince(killedAt)
            print("multi-instance SIGKILL: its sends were \(doubted ? "" : "still not ")in_doubt \(String(format: "%.1f", took)) s after the kill")
            #expect(doubted && took < 3 * Self.instanceTimeout,
                    "the killed instance's sends were not in_doubt within 3 × instance_timeout (\(took) s)\n\(cluster.logTails())")
            // The operator sees them where in_doubt digests are listed.
            let dead = try await cluster.cliDigests(["dead"])
            #expect(Set(dead.filter { $0.state == "in_doubt" }.map(\.id)) == inFlight, "roundup dead --json: \(dead)")

            try await cluster.waitUntilSettled(timeout: 60)
            // Enough for any survivor to resend an in_doubt digest, were it to.
            try await Task.sleep(for: .seconds(Self.instanceTimeout))
            let rows = try await cluster.expectOutcome(users: users, inDoubt: inFlight)
            let takenOver = rows.filter { unstarted.contains($0.id) }
            #expect(takenOver.allSatisfy { $0.state == "sent" && $0.claimedBy != victim.id },
                    "what the killed instance had claimed was not sent by a survivor: \(takenOver.filter { $0.claimedBy == victim.id })")
            #expect(try await cluster.liveInstances().map(\.pid).sorted() == cluster.serves.filter { $0 !== victim.serve }.map(\.pid).sorted())
        }
    }

    // MARK: 3. SIGSTOP

    @Test("SIGSTOP of an instance mid-send past instance_timeout, then SIGCONT: the others take over, its sends in flight are in_doubt, it sends nothing it lost, and no user gets two sends")
    func stoppedInstanceIsFenced() async throws {
        let users = 30
        try await MultiServe.run(users: users, sendConcurrency: 2, digestYAML: Self.dueSoon) { cluster in
            await cluster.rig.wechat.script.setSendLatency(.seconds(2))
            try await cluster.start(3)
            await cluster.postOneEach(0..<users)
            // Stopped between transactions, so that it holds no row lock (that case is the next test).
            let stop = try #require(try await cluster.stopMidSend(waiting: 2, insideTransaction: false, attempts: 20).stop,
                                    "no instance could be stopped with a send in flight, more claimed and no transaction open\n\(cluster.logTails())")
            let victim = stop.victim
            let inFlight = stop.inFlight
            // Claimed, not started (waiting for a send slot or for IM's presence answer): the
            // stalled instance still means to send these when it wakes.
            let unstarted = stop.unstarted
            let unstartedIDs = Set(unstarted.map(\.id))
            print("multi-instance SIGSTOP: pid \(victim.serve.pid) stopped (try \(stop.tries)) with \(inFlight.count) send(s) in flight and \(unstarted.count) claimed, not started")
            // Whoever takes these over waits 4.8 s for IM's presence answer (its client gives up at
            // 5 s) before it may mark them sending, so for a while after the wake-up only the woken
            // instance could: that is when fencing must stop it.
            for d in unstarted { await cluster.rig.im.state.hold(onlineStatusOf: d.user, for: .milliseconds(4_800)) }

            // Taken over: its sends in flight in_doubt, what it claimed claimed by another.
            let takenOver = try await poll(timeout: 6 * Self.instanceTimeout) {
                let rows = try await cluster.digests()
                return rows.filter { inFlight.contains($0.id) }.allSatisfy { $0.state == "in_doubt" }
                    && rows.filter { unstartedIDs.contains($0.id) }.allSatisfy { $0.claimedBy != victim.id && !$0.claimedBy.isEmpty }
            }
            let atWake = try await cluster.digests()
            print("multi-instance SIGSTOP: taken over \(String(format: "%.1f", Date().timeIntervalSince(stop.at))) s after the stop")
            let kept = atWake.filter { $0.claimedBy == victim.id && $0.state != "in_doubt" }
            let locks = takenOver ? nil : try await cluster.rowLocks(kept.map(\.id))
            #expect(takenOver, """
                the others did not take over the stopped instance's digests: \(kept); row-locked: \(locks?.locked ?? []); \
                sessions idle in a transaction: \(locks?.idleSessions.map { "\($0)" } ?? [])\n\(cluster.logTails())
                """)
            let listedWhileStopped = try await cluster.liveInstances()
            #expect(!listedWhileStopped.contains { $0.pid == victim.serve.pid }, "the stopped instance is still listed as live")
            // Taken over by another instance that has not started them: the woken instance must not.
            let takenButOpen = Set(atWake.filter { unstartedIDs.contains($0.id) && $0.state == "open" && $0.claimedBy != victim.id }.map(\.id))
            print("multi-instance SIGSTOP: \(takenButOpen.count) digest(s) taken over and still open at the wake-up")
            #expect(!takenButOpen.isEmpty, "no digest was taken over and still open at the wake-up: fencing was not exercised")

            kill(victim.serve.pid, SIGCONT)
            let wokeAt = Date()
            // For 1.5 s the new claimers are still waiting for IM: any of these digests leaving
            // `open` now was marked sending by the woken instance.
            var markedByWoken: [MultiDigestRow] = []
            while Date().timeIntervalSince(wokeAt) < 1.5 {
                for d in try await cluster.digests() where takenButOpen.contains(d.id) && d.state != "open" && !markedByWoken.contains(where: { $0.id == d.id }) {
                    markedByWoken.append(d)
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(markedByWoken.isEmpty, "the woken instance started sends another instance had taken over: \(markedByWoken)\n\(victim.serve.output.suffix(2_000))")
            let back = try await poll(timeout: 2 * Self.instanceTimeout) { try await cluster.liveInstances().contains { $0.pid == victim.serve.pid } }
            #expect(back, "the woken instance did not register again")
            try await cluster.waitUntilSettled(timeout: 60)
            // The woken instance has had every chance to send what it had claimed.
            try await Task.sleep(for: .seconds(Self.instanceTimeout))
            #expect(victim.serve.process.isRunning, "the woken instance exited\n\(victim.serve.output.suffix(2_000))")
            let rows = try await cluster.expectOutcome(users: users, inDoubt: inFlight)
            #expect(rows.filter { unstartedIDs.contains($0.id) }.allSatisfy { $0.claimedBy != victim.id })
        }
    }

    // MARK: 2b. A Login at one instance, a send at another

    @Test("a Login at one instance cancels the digest another instance has claimed and is confirming with IM: nothing reaches WeChat, and the Login's presence reaches the other instance")
    func loginAtOneInstanceCancelsAnothersSend() async throws {
        try await MultiServe.run(users: 2, sendConcurrency: 4, digestYAML: Self.dueSoon) { cluster in
            // Whoever claims u0's digest asks IM whether u0 is online; IM holds that answer 4 s
            // (the client gives up at 5 s), long enough for the Login to land elsewhere first.
            await cluster.rig.im.state.hold(onlineStatusOf: "u0", for: .milliseconds(4_000))
            try await cluster.start(2)
            await cluster.postOneEach([0])
            // Claimed: the claimer asks IM next (the fake counts a call when it answers).
            let claimed = try await poll(timeout: 20) { try await !(cluster.digests().first { $0.user == "u0" }?.claimedBy ?? "").isEmpty }
            try #require(claimed, "no instance claimed u0's digest\n\(cluster.logTails())")
            let claimer = try #require(try await cluster.digests().first { $0.user == "u0" }?.claimedBy)
            let claimingPort = try #require(cluster.serves.firstIndex { cluster.instanceIDs[$0.pid] == claimer }, "the claimer \(claimer) is not one of the serves")
            let other = 1 - claimingPort
            let client = SignedCallbackClient(port: cluster.ports[other], token: ServeRig.callbackToken, connections: 1)
            defer { client.close() }
            await cluster.rig.im.state.setStatus(.online, for: ["u0"])
            #expect(await client.stateChange(user: "u0", action: "Login"), "the Login was not acknowledged")
            // Cancelled in the database at once, by the instance that received the Login.
            let cancelled = try await poll(timeout: 3) { try await cluster.digests().first { $0.user == "u0" }?.state == "cancelled" }
            let afterLogin = "\(try await cluster.digests()), log: \(try await cluster.sql("SELECT kind, detail FROM digest_events ORDER BY id"))"
            #expect(cancelled, "u0's digest was not cancelled by the Login at the other instance: \(afterLogin)\n\(cluster.logTails())")
            // IM answers the claimer (u0 offline, as far as IM says); it must still not send.
            try await Task.sleep(for: .seconds(5))
            #expect(await cluster.rig.wechat.script.sendAttempts == 0, "u0's cancelled digest reached WeChat")
            #expect(try await cluster.digests().first { $0.user == "u0" }?.state == "cancelled")

            // Presence travels between instances: u1 logs in at one, and a message to u1 at the
            // other is kept unjoined (u1 is online there too), with no digest opened for it.
            #expect(await client.stateChange(user: "u1", action: "Login"), "u1's Login was not acknowledged")
            try await Task.sleep(for: .seconds(1))
            let atClaimer = SignedCallbackClient(port: cluster.ports[claimingPort], token: ServeRig.callbackToken, connections: 1)
            defer { atClaimer.close() }
            #expect(await atClaimer.c2c(from: "teacher", to: "u1", key: "u1-online", text: "x"))
            let rows = try await cluster.sql("SELECT digest_id IS NULL FROM messages WHERE msg_key = 'u1-online'")
            #expect(rows.first?.first == "t", "the instance that did not receive u1's Login joined u1's message into a digest: presence did not reach it")
            #expect(try await cluster.digests().filter { $0.user == "u1" }.isEmpty)
        }
    }

    // MARK: 3b. SIGSTOP inside a transaction

    @Test("SIGSTOP of an instance inside a transaction that locks digests it claimed: the others still take them over within a few instance_timeouts, and nobody gets two sends")
    func stoppedInsideTransaction() async throws {
        let users = 50
        // One slow send at a time per instance: each holds a backlog of claimed digests (which
        // its claim passes leave alone, as they are in its pipeline).
        try await MultiServe.run(users: users, sendConcurrency: 1, digestYAML: Self.dueSoon) { cluster in
            await cluster.rig.wechat.script.setSendLatency(.milliseconds(1_500))
            try await cluster.start(3)
            var posted = 30
            await cluster.postOneEach(0..<posted)
            // Each try opens one more digest and stops an instance a few ms after it comes due,
            // when every instance wakes to claim: a claim pass locks the newly due digest.
            let offsets = [0.008, 0.015, 0.022, 0.03, 0.04, 0.055]
            let (found, tries) = try await cluster.stopMidSend(waiting: 1, insideTransaction: true, attempts: 40) {
                guard posted < users else { return nil }
                await cluster.postOneEach(posted..<posted + 1)
                posted += 1
                let due = try? await cluster.sql("SELECT due_at FROM digests WHERE im_user_id = 'u\(posted - 1)'").first.flatMap { Double($0[0]) }
                return due.map { Date(timeIntervalSince1970: $0 / 1000 + offsets[posted % offsets.count]) }
            }
            guard let stop = found else {
                // Nothing to judge: no stop landed inside such a transaction (a product that never
                // keeps a row locked between statements would be one reason).
                print("multi-instance SIGSTOP in a transaction: none of \(tries) stops landed inside a transaction locking an open digest")
                return
            }
            let victim = stop.victim
            let locked = Set(stop.locked)
            print("multi-instance SIGSTOP in a transaction: pid \(victim.serve.pid) stopped (try \(stop.tries)) inside \(stop.transactions), which locks open digests \(stop.locked.sorted()); it had claimed \(stop.unstarted.map(\.id))")

            // Due, and its claimer silent for instance_timeout: another instance claims it and sends it.
            let takenOver = try await poll(timeout: 4 * Self.instanceTimeout) {
                try await cluster.digests().filter { locked.contains($0.id) }
                    .allSatisfy { $0.state != "open" || ($0.claimedBy != victim.id && !$0.claimedBy.isEmpty) }
            }
            let held = try await cluster.digests().filter { locked.contains($0.id) }
            print("multi-instance SIGSTOP in a transaction: \(4 * Self.instanceTimeout) s later those digests are \(held)")
            // The server ends a session idle in a transaction after half instance_timeout
            // (idle_in_transaction_session_timeout), so the stopped instance's row locks go with it,
            // its transaction rolls back, and the others claim and send those digests. Before that
            // setting, nobody took them over for as long as the instance stayed stopped.
            #expect(takenOver, "\(4 * Self.instanceTimeout) s after the stop, the digests it locked are still unclaimed or its own: \(held)")
            // Its other claims (those in its pipeline, which its claim passes leave alone) are
            // taken over once its heartbeat is older than instance_timeout: that can be later
            // than the locked ones, which are free as soon as the server ends its session.
            let unlocked = Set(stop.unstarted.map(\.id)).subtracting(locked)
            func stillItsOwn() async throws -> [MultiDigestRow] {
                try await cluster.digests().filter { unlocked.contains($0.id) && $0.claimedBy == victim.id && $0.state == "open" }
            }
            _ = try await poll(timeout: 4 * Self.instanceTimeout) { try await stillItsOwn().isEmpty }
            let others = try await stillItsOwn()
            #expect(others.isEmpty, "claimed digests the stopped instance held no lock on were not taken over either: \(others)")

            kill(victim.serve.pid, SIGCONT)
            try await cluster.waitUntilSettled(timeout: 60)
            try await Task.sleep(for: .seconds(Self.instanceTimeout))
            #expect(victim.serve.process.isRunning, "the woken instance exited\n\(victim.serve.output.suffix(2_000))")
            let doubted = Set(try await cluster.digests().filter { $0.state == "in_doubt" }.map(\.id))
            #expect(doubted.isSubset(of: stop.inFlight), "in_doubt beyond the sends in flight at the stop: \(doubted.subtracting(stop.inFlight))")
            try await cluster.expectOutcome(users: posted, inDoubt: doubted)
        }
    }

    // MARK: 4. SIGTERM

    @Test("SIGTERM: the instance exits 0, leaves roundup instances at once, and what it claimed but had not started is sent by another instance within 2 s")
    func gracefulStopHandsOver() async throws {
        let waiting = 1...5
        try await MultiServe.run(users: 6, sendConcurrency: 1, digestYAML: Self.dueOnFlush) { cluster in
            let script = cluster.rig.wechat.script
            // u0's WeChat call hangs 9 s (under the client's 10 s deadline) and fills the one send slot.
            await script.hold(sendsTo: "o_u0", for: .seconds(9))
            // The instance to stop starts alone, so it is the one that claims everything.
            try await cluster.start(1)
            let leaving = cluster.serves[0]
            let leavingID = try #require(cluster.instanceIDs[leaving.pid])
            await cluster.postOneEach(0...5)
            try await cluster.flush(["u0"])
            #expect(try await poll(timeout: 15) { await script.sendAttempts >= 1 }, "u0's send never reached the fake\n\(cluster.logTails())")
            let heldSince = Date()
            try await cluster.flush(["--all"])
            let claimed = try await poll(timeout: 10) {
                let rows = try await cluster.digests()
                return waiting.allSatisfy { i in rows.contains { $0.user == "u\(i)" && $0.state == "open" && $0.claimedBy == leavingID } }
            }
            let afterFlush = try await cluster.digests()
            #expect(claimed, "the instance did not claim u1…u5 while its slot was busy: \(afterFlush)")
            try await cluster.start(2)
            #expect(try await cluster.liveInstances().count == 3)
            let before = try await cluster.digests()
            #expect(before.filter { $0.user != "u0" }.allSatisfy { $0.state == "open" && $0.claimedBy == leavingID },
                    "another instance took digests a live instance had claimed: \(before)")
            #expect(await script.accepted.isEmpty, "u0's send was answered before the stop: the hold was too short for this machine")

            kill(leaving.pid, SIGTERM)
            let termAt = Date()
            let holdLeft = 9 - termAt.timeIntervalSince(heldSince)
            try #require(holdLeft > 3, "only \(holdLeft) s of u0's 9 s send were left at SIGTERM: this machine is too slow for the test")
            // Until it has exited and u1…u5 have reached WeChat; the moment it exits, list the instances.
            var exitedAt: Date?
            var listedAfterExit: [ListedInstance] = []
            let done = try await poll(timeout: 20) {
                if exitedAt == nil && !leaving.process.isRunning {
                    exitedAt = Date()
                    listedAfterExit = try await cluster.liveInstances()
                }
                let sentTo = Set(await script.accepted.map(\.touser))
                return exitedAt != nil && sentTo.isSuperset(of: waiting.map { "o_u\($0)" })
            }
            let accepted = await script.accepted
            let handOver = accepted.filter { $0.touser != "o_u0" }.map(\.at).max().map { $0.timeIntervalSince(termAt) }
            let exitTook = exitedAt.map { $0.timeIntervalSince(termAt) }
            let seconds = { (t: Double?) in t.map { String(format: "%.1f s", $0) } ?? "never" }
            print("multi-instance SIGTERM: u1…u5 sent \(seconds(handOver)) and the instance exited \(seconds(exitTook)) after SIGTERM; then listed \(listedAfterExit.map(\.pid))")
            #expect(done, "within 20 s of SIGTERM: exited \(seconds(exitTook)), u1…u5 sent \(seconds(handOver))\n\(cluster.logTails())")
            // Released at the start of the stop (and the others woken), not after the sends in flight.
            #expect((handOver ?? .infinity) < 2, """
                u1…u5, claimed but not started by the stopped instance, reached WeChat \(seconds(handOver)) after SIGTERM \
                (\(String(format: "%.1f", holdLeft)) s were left of u0's send in flight), not within 2 s\n\(cluster.logTails())
                """)
            #expect((exitTook ?? .infinity) < holdLeft + 4, "the instance exited \(seconds(exitTook)) after SIGTERM, \(String(format: "%.1f", holdLeft)) s of its send were left")
            // Foundation traps on the status of a process still running.
            let exit = leaving.process.isRunning ? "still running" : "\(leaving.process.terminationReason) \(leaving.exitStatus)"
            #expect(exit == "\(Process.TerminationReason.exit) 0", "after SIGTERM: \(exit), exited \(seconds(exitTook))")
            // At once: its heartbeat would still be young, so a row left behind would be listed.
            #expect(exitedAt != nil && !listedAfterExit.contains { $0.pid == leaving.pid }, "the stopped instance is still listed right after it exited")
            #expect(listedAfterExit.count == 2, "listed right after the exit: \(listedAfterExit.map(\.pid))")

            try await cluster.waitUntilSettled(timeout: 30)
            let rows = try await cluster.expectOutcome(users: 6, inDoubt: [])
            #expect(rows.first { $0.user == "u0" }?.claimedBy == leavingID, "u0's send in flight was not finished by the instance that started it")
            #expect(rows.filter { $0.user != "u0" }.allSatisfy { $0.claimedBy != leavingID && !$0.claimedBy.isEmpty })
        }
    }
}

// MARK: - the cluster: one rig, one database, several serves

/// Polls `condition` every 100 ms until it holds or `timeout` seconds pass; true when it held.
/// (Each poll may run `psql` or the CLI, so it polls less often than `crashPoll`.)
func poll(timeout: Double, _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(100))
    }
    return try await condition()
}

/// Waits (bounded, without blocking a thread) for `serve` to exit, SIGKILLing it at the bound;
/// true when it exited before the bound.
func awaitExit(_ serve: ServeProcess, timeout: Double) async -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while serve.process.isRunning, Date() < deadline { try? await Task.sleep(for: .milliseconds(20)) }
    guard serve.process.isRunning else { return true }
    kill(serve.pid, SIGCONT)
    kill(serve.pid, SIGKILL)
    let hard = Date().addingTimeInterval(10)
    while serve.process.isRunning, Date() < hard { try? await Task.sleep(for: .milliseconds(20)) }
    return false
}

/// The local ports of the TCP connections process `pid` has open to 127.0.0.1:`port`, read from
/// `/proc` (its socket descriptors' inodes, looked up in `/proc/net/tcp`); empty elsewhere.
func connectionPorts(of pid: Int32, toLoopbackPort port: Int) -> Set<Int> {
    let fds = "/proc/\(pid)/fd"
    let inodes = Set(((try? FileManager.default.contentsOfDirectory(atPath: fds)) ?? []).compactMap { fd -> Substring? in
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(fds)/\(fd)"), target.hasPrefix("socket:[") else { return nil }
        return target.dropFirst("socket:[".count).dropLast()
    })
    guard let handle = FileHandle(forReadingAtPath: "/proc/net/tcp") else { return [] }
    defer { try? handle.close() }
    let remote = "0100007F:" + String(format: "%04X", port)
    // Columns: sl, local_address, rem_address, st, tx_queue:rx_queue, tr:tm->when, retrnsmt, uid, timeout, inode, …
    return Set(String(decoding: handle.readDataToEndOfFile(), as: UTF8.self).split(separator: "\n").dropFirst().compactMap { line -> Int? in
        let fields = line.split(separator: " ")
        guard fields.count > 9, fields[2] == remote, inodes.contains(fields[9]) else { return nil }
        return fields[1].split(separator: ":").last.flatMap { Int($0, radix: 16) }
    })
}

/// One digest row as the test reads it from the database.
struct MultiDigestRow: CustomStringConvertible {
    let id: Int64
    let user: String
    let state: String
    /// The instance that claimed it ("" when none).
    let claimedBy: String
    let msgid: String

    var description: String { "#\(id) \(user) \(state) by \(claimedBy.prefix(8))" }
}

/// One line of `roundup instances --json`.
struct ListedInstance {
    let id: String
    let pid: Int32
    let heartbeatAge: Double
}

/// The `serve` processes of one test, on one rig whose config names a fresh PostgreSQL database.
final class MultiServe {
    let rig: ServeRig
    let url: String
    private(set) var serves: [ServeProcess] = []
    private(set) var ports: [Int] = []
    /// Each serve's instance id, by pid.
    private(set) var instanceIDs: [Int32: String] = [:]

    init(rig: ServeRig, url: String) {
        self.rig = rig
        self.url = url
    }

    /// Runs `body` with a fresh database (users u0…u(n-1) bound to o_u0… with one credit each),
    /// the fakes, and the rig's config; stops every serve and drops the database afterwards.
    /// Without a PostgreSQL server (outside CI) it returns at once: skipped.
    static func run(users: Int, sendConcurrency: Int, digestYAML: String, _ body: (MultiServe) async throws -> Void) async throws {
        guard let url = try await PostgresTestServer.freshDatabaseURL() else {
            print("skipped: \(PostgresTestServer.skipReason ?? "no PostgreSQL server")")
            return
        }
        let rig = try ServeRig(sendConcurrency: sendConcurrency, digestYAML: digestYAML,
                               postgres: (url, "\(Int(MultiInstanceTests.instanceTimeout))s"))
        defer { rig.remove() }
        var failure: (any Error)?
        do {
            try await seed(url: url, users: users)
            try await rig.withFakes { rig in
                let cluster = MultiServe(rig: rig, url: url)
                do {
                    try await body(cluster)
                } catch {
                    await cluster.stopAll()
                    throw error
                }
                await cluster.stopAll()
            }
        } catch {
            failure = error
        }
        await PostgresTestServer.dropDatabase(url)
        if let failure { throw failure }
    }

    /// Binds u0…u(n-1) to o_u0… and grants each one credit, migrating the new database first.
    private static func seed(url: String, users: Int) async throws {
        var settings = StorageSettings()
        settings.url = try PostgresURL(parsing: url)
        settings.poolSize = 2
        let store = try RoundupStore.open(settings)
        defer { store.postgres?.shutdown() }
        try await store.write { tx in
            let now = Timestamp(Date())
            for i in 0..<users {
                _ = try tx.updateUser("u\(i)", UserUpdate(openid: .set("o_u\(i)"), name: .set("家长\(i)")), now: now)
                _ = try tx.applyCredit(openid: "o_u\(i)", templateID: ServeRig.template, change: .add(1), eventKey: nil, now: now)
            }
        }
    }

    /// Starts `count` more serves at once and waits (bounded) until each listens and is registered.
    func start(_ count: Int) async throws {
        var started: [ServeProcess] = []
        for _ in 0..<count { started.append(try await rig.start()) }
        for serve in started {
            ports.append(try await serve.waitUntilListening(timeout: 60))
            serves.append(serve)
        }
        // Each registers its heartbeat before it listens.
        let rows = try await sql("SELECT pid, id FROM instances")
        for row in rows where row.count == 2 {
            if let pid = Int32(row[0]) { instanceIDs[pid] = row[1] }
        }
        for serve in started {
            #expect(instanceIDs[serve.pid] != nil, "serve pid \(serve.pid) listens but has no heartbeat row")
        }
    }

    /// SIGCONT, then SIGTERM to every serve still running, each waited for (bounded; SIGKILL at the bound).
    func stopAll() async {
        for serve in serves where serve.process.isRunning {
            kill(serve.pid, SIGCONT)
            kill(serve.pid, SIGTERM)
        }
        for serve in serves { _ = await awaitExit(serve, timeout: 20) }
    }

    /// Posts one signed callback to each user, user i through serve i % count, as a load balancer
    /// spreads them; every one must be acknowledged.
    func postOneEach(_ users: some Sequence<Int>) async {
        let clients = ports.map { SignedCallbackClient(port: $0, token: ServeRig.callbackToken, connections: 2) }
        defer { clients.forEach { $0.close() } }
        for i in users {
            let through = i % clients.count
            let ok = await clients[through].c2c(from: "teacher", to: "u\(i)", key: "multi-\(i)", text: "明天春游，请带水壶（\(i)）")
            #expect(ok, "the callback for u\(i) through serve \(through) was not acknowledged")
        }
    }

    /// `roundup flush ARGS` with the rig's config.
    func flush(_ arguments: [String]) async throws {
        let result = try await runRoundup(["flush"] + arguments + ["--config", rig.configFile.path], in: rig.dir, timeout: 30)
        #expect(result.status == 0, "roundup flush \(arguments) failed: \(result.stderr)")
    }

    /// Rows of one query through `psql`, columns split at `|` (NULL reads as "").
    func sql(_ query: String) async throws -> [[String]] {
        let result = try await PostgresTestServer.psql(url, [query], timeout: 30)
        guard result.status == 0 else { throw PostgresTestServerError(description: "psql failed: \(result.stderr)") }
        return result.stdout.split(separator: "\n").map { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) }
    }

    /// Every digest, oldest first.
    func digests() async throws -> [MultiDigestRow] {
        try await sql("SELECT id, im_user_id, state, coalesce(claimed_by, ''), coalesce(msgid, '') FROM digests ORDER BY id").map { r in
            MultiDigestRow(id: Int64(r[0]) ?? -1, user: r[1], state: r[2], claimedBy: r[3], msgid: r[4])
        }
    }

    /// Which of these digests another session holds a row lock on, and the sessions idle in a
    /// transaction: how long their transaction has run and their last statement.
    func rowLocks(_ ids: [Int64]) async throws -> (locked: [Int64], idleSessions: [(pid: String, seconds: Double, query: String)]) {
        let list = ids.map(String.init).joined(separator: ",")
        let free = ids.isEmpty ? [] : try await sql("SELECT id FROM digests WHERE id IN (\(list)) FOR UPDATE SKIP LOCKED").compactMap { Int64($0[0]) }
        let idle = try await sql("""
            SELECT pid, round(extract(epoch FROM now() - xact_start)::numeric, 1), replace(left(query, 100), E'\\n', ' ')
            FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'
            """)
        return (ids.filter { !free.contains($0) }, idle.map { (pid: $0[0], seconds: Double($0[1]) ?? 0, query: $0[2...].joined(separator: "|")) })
    }

    /// The live instances, as `roundup instances --json` lists them.
    func liveInstances() async throws -> [ListedInstance] {
        let result = try await runRoundup(["instances", "--json", "--config", rig.configFile.path], in: rig.dir, timeout: 30)
        try #require(result.status == 0, "roundup instances failed: \(result.stderr)")
        let rows = try #require(try parseJSON(result.stdout)["instances"] as? [[String: Any]], "roundup instances --json: \(result.stdout)")
        return rows.map { r in
            ListedInstance(id: r["id"] as? String ?? "", pid: Int32((r["pid"] as? Int) ?? -1),
                           heartbeatAge: (r["heartbeat_age_seconds"] as? Double) ?? .infinity)
        }
    }

    /// The digests a CLI command (`dead`, `history`) lists with `--json`.
    func cliDigests(_ arguments: [String]) async throws -> [(id: Int64, state: String)] {
        let result = try await runRoundup(arguments + ["--json", "--config", rig.configFile.path], in: rig.dir, timeout: 30)
        try #require(result.status == 0, "roundup \(arguments) failed: \(result.stderr)")
        let object = try parseJSON(result.stdout)
        let rows = try #require((object["digests"] ?? object["history"]) as? [[String: Any]], "roundup \(arguments) --json: \(result.stdout)")
        return rows.map { r in (Int64((r["id"] as? Int) ?? -1), r["state"] as? String ?? "") }
    }

    /// What `stopMidSend` stopped: the serve and its instance id, when, on which try, and the
    /// digests at that moment: its sends in flight, what it claimed but had not started, and the
    /// open digests its open transaction has locked.
    struct Stop {
        let victim: (serve: ServeProcess, id: String)
        let at: Date
        let tries: Int
        let inFlight: Set<Int64>
        let unstarted: [MultiDigestRow]
        let locked: [Int64]
        /// The stopped instance's open transactions: seconds, state and last statement.
        let transactions: [String]
    }

    /// SIGSTOPs a serve that has a send in flight and at least `waiting` digests claimed but not
    /// started, at a moment it has a transaction open that locks an open digest
    /// (`insideTransaction`) or no transaction open at all; after a miss it resumes it at once
    /// (well under half the instance timeout) and tries again, at most `attempts` times. Before
    /// each try it calls `beforeEachTry`, which may name the moment to stop at. Returns what it
    /// stopped (nil when no try hit) and how many tries it made.
    func stopMidSend(waiting: Int, insideTransaction: Bool, attempts: Int,
                     beforeEachTry: () async -> Date? = { nil }) async throws -> (stop: Stop?, tries: Int) {
        for attempt in 1...attempts {
            let stopAt = await beforeEachTry()
            guard let victim = try await instanceMidSend(waiting: waiting) else { return (nil, attempt) }
            if let stopAt, stopAt > Date() { try await Task.sleep(for: .seconds(stopAt.timeIntervalSinceNow)) }
            kill(victim.serve.pid, SIGSTOP)
            let at = Date()
            // A statement in progress finishes; its session is then idle in its transaction.
            try await Task.sleep(for: .milliseconds(150))
            let ports = connectionPorts(of: victim.serve.pid, toLoopbackPort: URLComponents(string: url)?.port ?? 5432)
            let transactions = try await openTransactions(clientPorts: ports)
            let rows = try await digests()
            let inFlight = Set(rows.filter { $0.claimedBy == victim.id && $0.state == "sending" }.map(\.id))
            let unstarted = rows.filter { $0.claimedBy == victim.id && $0.state == "open" }
            let locked = transactions.isEmpty ? [] : try await openDigestsLocked(clientPorts: ports)
            let hit = insideTransaction ? !locked.isEmpty : transactions.isEmpty
            if hit && !inFlight.isEmpty && unstarted.count >= waiting {
                return (Stop(victim: victim, at: at, tries: attempt, inFlight: inFlight, unstarted: unstarted, locked: locked,
                             transactions: transactions), attempt)
            }
            kill(victim.serve.pid, SIGCONT)
            try await Task.sleep(for: .milliseconds(Int.random(in: 50...400)))
        }
        return (nil, attempts)
    }

    /// The transactions open on the connections with these client ports (a serve's own, see
    /// `connectionPorts`): seconds, state and last statement.
    func openTransactions(clientPorts ports: Set<Int>) async throws -> [String] {
        guard !ports.isEmpty else { return [] }
        return try await sql("""
            SELECT round(extract(epoch FROM now() - xact_start)::numeric, 1), state, replace(left(query, 80), E'\\n', ' ')
            FROM pg_stat_activity WHERE xact_start IS NOT NULL AND client_port IN (\(ports.map(String.init).joined(separator: ",")))
            """).map { "\($0[0]) s \($0[1]): \($0[2...].joined(separator: "|"))" }
    }

    /// The open digests whose row a transaction on these client ports has updated or locked and
    /// not ended: the row's `xmax` is that transaction's id.
    func openDigestsLocked(clientPorts ports: Set<Int>) async throws -> [Int64] {
        guard !ports.isEmpty else { return [] }
        return try await sql("""
            SELECT d.id FROM digests d JOIN pg_stat_activity a ON a.backend_xid = d.xmax
            WHERE d.state = 'open' AND a.client_port IN (\(ports.map(String.init).joined(separator: ",")))
            """).compactMap { Int64($0[0]) }
    }

    /// The serve that has a send in flight and at least `waiting` more digests claimed but not
    /// started, and its instance id; nil when none does within 30 s.
    func instanceMidSend(waiting: Int = 1) async throws -> (serve: ServeProcess, id: String)? {
        var found: (ServeProcess, String)?
        _ = try await poll(timeout: 30) {
            let rows = try await digests()
            for serve in serves where serve.process.isRunning {
                guard let id = instanceIDs[serve.pid] else { continue }
                let mine = rows.filter { $0.claimedBy == id }
                if mine.contains(where: { $0.state == "sending" }) && mine.filter({ $0.state == "open" }).count >= waiting {
                    found = (serve, id)
                    return true
                }
            }
            return false
        }
        return found.map { (serve: $0.0, id: $0.1) }
    }

    /// Waits (bounded) until no digest is open, held or sending and the fake WeChat has answered
    /// every send it received; an expectation fails at the bound.
    func waitUntilSettled(timeout: Double) async throws {
        let script = rig.wechat.script
        let unsettled = { try await self.digests().filter { ["open", "held", "sending"].contains($0.state) } }
        let settled = try await poll(timeout: timeout) {
            let answeredAll = await script.sendAttempts == script.accepted.count
            return try await unsettled().isEmpty && answeredAll
        }
        let left = try await unsettled()
        let attempts = await script.sendAttempts, acceptedCount = await script.accepted.count
        #expect(settled, """
            not settled within \(timeout) s: \(left); WeChat saw \(attempts) attempts, accepted \(acceptedCount)\n\(logTails())
            """)
    }

    /// Waits (up to a minute) until every user's digest is sent, waits `settle` more (a second
    /// send would come after the first), checks the outcome, and returns how many each instance
    /// sent (by instance id), printed under `label`.
    func sendsPerInstance(users: Int, label: String, settle: Duration = .zero) async throws -> [String: Int] {
        let sent = try await poll(timeout: 60) { try await self.digests().filter { $0.state == "sent" }.count == users }
        #expect(sent, "not every digest was sent within a minute\n\(logTails())")
        if settle > .zero { try await Task.sleep(for: settle) }
        let rows = try await expectOutcome(users: users, inDoubt: [])
        let bySender = Dictionary(grouping: rows, by: \.claimedBy).mapValues(\.count)
        print("multi-instance \(label): sends per instance \(bySender.values.sorted())")
        return bySender
    }

    /// The end state: each user has one digest; those in `inDoubt` are in_doubt, reached WeChat at
    /// most once and kept their credit; every other one is sent, reached WeChat exactly once with
    /// the msgid recorded, spent its credit and delivered its messages. Returns the digests.
    @discardableResult
    func expectOutcome(users: Int, inDoubt: Set<Int64>) async throws -> [MultiDigestRow] {
        let script = rig.wechat.script
        #expect(await script.overlaps == 0, "two sends to one openid overlapped at WeChat")
        let byOpenID = Dictionary(grouping: await script.accepted, by: \.touser)
        let twice = byOpenID.filter { $0.value.count > 1 }.keys.sorted()
        #expect(twice.isEmpty, "these openids got more than one subscribe message: \(twice)")
        let rows = try await digests()
        let byUser = Dictionary(grouping: rows, by: \.user)
        let credits = Dictionary(uniqueKeysWithValues: try await sql("SELECT openid, count FROM credits").map { ($0[0], Int($0[1]) ?? -1) })
        let undelivered = Set(try await sql("""
            SELECT DISTINCT d.im_user_id FROM messages m JOIN digests d ON d.id = m.digest_id
            WHERE d.state = 'sent' AND m.status <> 'delivered'
            """).map { $0[0] })
        for i in 0..<users {
            let user = "u\(i)", openid = "o_u\(i)"
            let mine = byUser[user] ?? []
            #expect(mine.count == 1, "\(user) has \(mine.count) digests: \(mine)")
            guard let digest = mine.first else { continue }
            let sends = byOpenID[openid] ?? []
            if inDoubt.contains(digest.id) {
                #expect(digest.state == "in_doubt", "\(user): in flight at the fault, but now \(digest.state)")
                #expect(sends.count <= 1)
                #expect(credits[openid] == 1, "\(user): an in_doubt digest spent its credit (\(credits[openid] ?? -1) left)")
            } else {
                #expect(digest.state == "sent", "\(user): \(digest.state), expected sent")
                #expect(sends.count == 1, "\(user): WeChat got \(sends.count) sends")
                #expect(!digest.msgid.isEmpty && digest.msgid == sends.first?.msgid, "\(user): msgid \(digest.msgid) is not the fake's")
                #expect(credits[openid] == 0, "\(user): the sent digest did not spend its credit (\(credits[openid] ?? -1) left)")
                #expect(!undelivered.contains(user), "\(user): a sent digest's messages are not delivered")
            }
        }
        let strangers = Set(byOpenID.keys).subtracting((0..<users).map { "o_u\($0)" })
        #expect(strangers.isEmpty, "WeChat got sends to \(strangers)")
        return rows
    }

    /// The end of each serve's log, for a failure message.
    func logTails() -> String {
        serves.map { "--- serve pid \($0.pid) (\(instanceIDs[$0.pid]?.prefix(8) ?? "?")):\n\($0.output.suffix(1_500))" }.joined(separator: "\n")
    }
}
