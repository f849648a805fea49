import Hummingbird
import Logging
import NIOCore

/// How long Roundup waits for a client before it closes the connection, so a client that stalls
/// or trickles cannot hold a connection (and its memory) for ever. The config has no key for these:
/// they are constants, and tests inject shorter ones through `buildApplication(timeouts:)`.
///
/// IM gives a callback 2 s and WeChat a push 5 s, so no real caller comes near either bound.
public struct ConnectionTimeouts: Sendable, Equatable {
    /// A connection on which no request part arrives for this long is closed: before its first
    /// request, in the middle of a request head (a head counts only once it is complete) or
    /// body, and between two keep-alive requests. A request being handled is never cut off.
    public var idle: Duration
    /// A request not answered this long after its head arrived is cut off by closing the
    /// connection: the bound on a client that keeps trickling its body a byte at a time.
    public var request: Duration

    public init(idle: Duration, request: Duration) {
        self.idle = idle
        self.request = request
    }

    /// What `roundup serve` uses: 30 s idle, 60 s per request.
    public static let standard = ConnectionTimeouts(idle: .seconds(30), request: .seconds(60))
}

/// The request context of Roundup's application: the connection's channel and logger, so a
/// request that takes too long to arrive can be cut off.
public struct ChannelRequestContext: InitializableFromSource {
    let channel: any Channel
    let logger: Logger

    public init(source: ApplicationRequestContextSource) {
        self.channel = source.channel
        self.logger = source.logger
    }
}

/// Wraps the router: closes the connection when a request has not been answered
/// `ConnectionTimeouts.request` after its head arrived. Handlers read their bodies before they
/// answer, so this bounds a slow body; idle stalls are the HTTP channel's `idleTimeout`.
struct RequestDeadlineResponder<Base: HTTPResponder>: HTTPResponder where Base.Context == BasicRequestContext {
    typealias Context = ChannelRequestContext
    let base: Base
    let timeout: Duration

    func respond(to request: Request, context: ChannelRequestContext) async throws -> Response {
        let channel = context.channel
        let logger = context.logger
        let deadline = channel.eventLoop.scheduleTask(in: TimeAmount(timeout)) {
            logger.debug("request not complete within the deadline: closing the connection", metadata: ["path": "\(request.uri.path)"])
            channel.close(promise: nil)
        }
        defer { deadline.cancel() }
        return try await base.respond(to: request, context: BasicRequestContext(source: .init(channel: channel, logger: logger)))
    }
}
