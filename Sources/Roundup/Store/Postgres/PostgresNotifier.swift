import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// One presence event passed between instances.
public struct PresenceNote: Sendable, Equatable {
    public var user: String
    public var online: Bool
    /// The event's `EventTime`, milliseconds: each instance applies its own EventTime guard.
    public var eventTime: Int64

    public init(user: String, online: Bool, eventTime: Int64) {
        self.user = user
        self.online = online
        self.eventTime = eventTime
    }
}

/// Messages between the instances sharing a PostgreSQL database, over LISTEN/NOTIFY on one
/// channel: wake-ups (a flush, a binding or a credit committed anywhere) and batches of presence
/// events. A notification is delivered after its transaction commits, to every listening
/// session, and is never stored: a listener that reconnects has missed what came meanwhile, which
/// the scheduler's once-a-second poll covers for wake-ups. Presence is never stored either; an
/// instance that missed a batch learns the user's state from the next event or
/// `query_online_status`.
public final class PostgresNotifier: Service, Sendable {
    static let channel = "roundup"
    /// A NOTIFY payload must stay under 8000 bytes.
    static let payloadLimit = 7000
    /// Presence events wait this long to travel together.
    static let batchInterval: Duration = .milliseconds(100)

    let engine: PostgresEngine
    let logger: Logger
    let onWake: @Sendable () -> Void
    let onPresence: @Sendable ([PresenceNote]) -> Void
    private let pending = Mutex<[PresenceNote]>([])
    private let listening = Atomic<Bool>(false)

    /// Whether the listening connection is up (notifications sent before that are missed).
    public var isListening: Bool { listening.load(ordering: .relaxed) }

    public init(engine: PostgresEngine, logger: Logger, onWake: @escaping @Sendable () -> Void,
                onPresence: @escaping @Sendable ([PresenceNote]) -> Void) {
        self.engine = engine
        self.logger = logger
        self.onWake = onWake
        self.onPresence = onPresence
    }

    /// Queues a presence event for the next batch to the other instances.
    public func publish(_ note: PresenceNote) {
        guard !note.user.contains("\n") else { return }
        pending.withLock { $0.append(note) }
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.listen() }
                group.addTask { await self.sendBatches() }
            }
        }
    }

    /// Listens on a dedicated connection, reconnecting after a second when it drops.
    private func listen() async {
        while !Task.isCancelled {
            do {
                let connection = try await PostgresConnection.connect(
                    on: MultiThreadedEventLoopGroup.singleton.any(), configuration: engine.configuration, id: 0, logger: logger).get()
                // The wait for notifications ends when the connection closes, whoever closes it:
                // a stop closes it here rather than rely on the sequence noticing cancellation.
                let closer = Self.closer(connection)
                connection.closeFuture.whenComplete { _ in closer() }
                await withTaskCancellationHandler {
                    do {
                        let notifications = try await connection.listen(Self.channel)
                        listening.store(true, ordering: .relaxed)
                        logger.debug("listening for other instances")
                        for try await note in notifications { receive(note.payload) }
                    } catch {
                        if !Task.isCancelled { logger.warning("the notification connection dropped", metadata: ["error": "\(RoundupStore.explain(error))"]) }
                    }
                } onCancel: {
                    closer()
                }
                listening.store(false, ordering: .relaxed)
                closer()
            } catch {
                logger.warning("cannot listen for other instances", metadata: ["error": "\(ConnectionPool.explainConnect(error))"])
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    /// Closes the connection once, without waiting.
    private static func closer(_ connection: PostgresConnection) -> @Sendable () -> Void {
        let closed = Atomic<Bool>(false)
        return {
            guard !closed.exchange(true, ordering: .relaxed) else { return }
            let done: EventLoopFuture<Void> = connection.close()
            done.whenComplete { _ in withExtendedLifetime(connection) {} }
        }
    }

    private func sendBatches() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: Self.batchInterval)
            let notes = pending.withLock { p -> [PresenceNote] in defer { p = [] }; return p }
            guard !notes.isEmpty else { continue }
            let payloads = Self.presencePayloads(notes, from: engine.lease.id)
            do {
                try await engine.write { tx in
                    for payload in payloads { try (tx as? PostgresTransaction)?.run("SELECT pg_notify($1, $2)", Self.channel, payload) }
                }
            } catch {
                logger.warning("cannot send presence to other instances", metadata: ["error": "\(RoundupStore.explain(error))", "events": "\(notes.count)"])
            }
        }
    }

    /// `p:<instance>` then one `1|<eventTime>|<user>` line per event, cut under the payload limit.
    static func presencePayloads(_ notes: [PresenceNote], from instance: String) -> [String] {
        var out: [String] = [], current = "p:\(instance)"
        for n in notes {
            let line = "\n\(n.online ? 1 : 0)|\(n.eventTime)|\(n.user)"
            if current.utf8.count + line.utf8.count > payloadLimit {
                out.append(current)
                current = "p:\(instance)"
            }
            current += line
        }
        out.append(current)
        return out
    }

    /// Applies a notification from another instance; this instance's own are ignored.
    func receive(_ payload: String) {
        let lines = payload.split(separator: "\n", omittingEmptySubsequences: true)
        guard let head = lines.first, head.count > 2 else { return }
        let kind = head.prefix(2), sender = head.dropFirst(2)
        guard sender != engine.lease.id else { return }
        switch kind {
        case "w:":
            onWake()
        case "p:":
            let notes = lines.dropFirst().compactMap { line -> PresenceNote? in
                let parts = line.split(separator: "|", maxSplits: 2, omittingEmptySubsequences: false)
                guard parts.count == 3, let time = Int64(parts[1]) else { return nil }
                return PresenceNote(user: String(parts[2]), online: parts[0] == "1", eventTime: time)
            }
            if !notes.isEmpty { onPresence(notes) }
        default:
            break
        }
    }
}
