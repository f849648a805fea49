import ServiceLifecycle
import Synchronization

/// Whether this process is stopping: `/healthz` answers 503 from the moment a graceful stop
/// begins, so a load balancer stops sending it requests before it stops listening.
public final class DrainState: Sendable {
    private let flag = Atomic<Bool>(false)
    public init() {}
    public var isDraining: Bool { flag.load(ordering: .relaxed) }
    func begin() { flag.store(true, ordering: .relaxed) }
}

/// The first service to stop (it is last in the `ServiceGroup`): on SIGTERM it marks the process
/// draining and holds the HTTP server open for `period`, during which `/healthz` answers 503 and
/// other requests are still served; then the server, the pipeline and the heartbeat stop in turn.
struct DrainGate: Service {
    let state: DrainState
    let period: Duration

    func run() async throws {
        try? await gracefulShutdown()
        state.begin()
        try? await Task.sleep(for: period)
    }
}
