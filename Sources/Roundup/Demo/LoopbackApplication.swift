import Hummingbird
import Logging
import ServiceLifecycle

/// The application stopped before it bound its port.
public struct LoopbackDidNotStart: Error, Equatable {}

/// Runs a Hummingbird application (the fakes, or the service in the demo) around `body`, which
/// gets the port it bound (port 0 picks a free one); the application shuts down gracefully when
/// `body` returns or throws.
public func withLoopbackApplication<T>(
    logger: Logger, _ makeApp: (_ onRunning: @escaping @Sendable (Int) async -> Void) -> some ApplicationProtocol,
    _ body: (_ port: Int) async throws -> T
) async throws -> T {
    let (ports, continuation) = AsyncStream<Int>.makeStream()
    let app = makeApp { port in
        continuation.yield(port)
        continuation.finish()
    }
    let group = ServiceGroup(services: [app], logger: logger)
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask {
            defer { continuation.finish() }
            try await group.run()
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else {
            try await tasks.waitForAll()
            throw LoopbackDidNotStart()
        }
        do {
            let result = try await body(port)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return result
        } catch {
            await group.triggerGracefulShutdown()
            tasks.cancelAll()
            throw error
        }
    }
}
