import NIOCore
import NIOPosix
import Synchronization

/// A TCP proxy on 127.0.0.1 to a target port, that a test can cut (close the listener and every
/// connection, so new connections are refused) and restore on the same port: a database outage
/// without stopping the database.
final class TCPProxy: Sendable {
    let targetPort: Int
    private let state = Mutex<(listener: (any Channel)?, open: [any Channel], port: Int)>((nil, [], 0))

    init(targetPort: Int) { self.targetPort = targetPort }

    var port: Int { state.withLock { $0.port } }

    /// Listens (on `port`, or a free one the first time); returns the port.
    @discardableResult
    func start() async throws -> Int {
        let target = targetPort
        let chosen = state.withLock { $0.port }
        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] inbound in
                inbound.setAutoRead(false)
                self.track(inbound)
                return ClientBootstrap(group: inbound.eventLoop).connect(host: "127.0.0.1", port: target).flatMap { outbound in
                    self.track(outbound)
                    return outbound.pipeline.addHandler(Pipe(peer: inbound)).flatMap {
                        inbound.pipeline.addHandler(Pipe(peer: outbound))
                    }.map { inbound.setAutoRead(true) }
                }
            }
            .bind(host: "127.0.0.1", port: chosen).get()
        let port = listener.localAddress?.port ?? 0
        state.withLock { $0.listener = listener; $0.port = port }
        return port
    }

    /// Refuses new connections and drops every open one.
    func cut() async {
        let (listener, open) = state.withLock { s -> ((any Channel)?, [any Channel]) in
            defer { s.listener = nil; s.open = [] }
            return (s.listener, s.open)
        }
        try? await listener?.close()
        for c in open { try? await c.close() }
    }

    private func track(_ channel: any Channel) {
        state.withLock { $0.open.append(channel) }
    }
}

extension Channel {
    fileprivate func setAutoRead(_ on: Bool) { _ = setOption(.autoRead, value: on) }
}

/// Copies what one side reads to the other, and closes the other side when this one closes.
private final class Pipe: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let peer: any Channel

    init(peer: any Channel) { self.peer = peer }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        peer.writeAndFlush(unwrapInboundIn(data), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        peer.close(promise: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
