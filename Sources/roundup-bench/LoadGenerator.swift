import Histogram
import NIOCore
import NIOPosix

/// How the generator offers load.
enum LoadMode: Sendable, Equatable {
    /// Every connection sends its next request as soon as the previous answer arrives.
    case closedLoop
    /// Requests start at fixed intended times whether or not the service keeps up; latency
    /// counts from the intended start, so queueing behind a slow answer is not hidden
    /// (no coordinated omission).
    case fixedRate(perSecond: Double)
}

/// One run of the load generator: how many connections, how load is offered, and its bounds.
struct LoadPlan: Sendable {
    var connections: Int
    var mode: LoadMode
    /// No request starts after this many seconds.
    var duration: Double
    /// Nor more than this many requests in all.
    var maxRequests: Int
    /// A request unanswered this long counts as failed, and its connection is closed.
    var requestTimeout: Double = 10
    /// How long after `duration` the run waits for answers before it is cut short.
    var grace: Double = 20
}

/// What one run measured.
struct LoadResult: Sendable {
    /// Requests written.
    var started = 0
    /// Answered as the service must answer (the writer decides: e.g. 200 with `"ErrorCode":0`).
    var ok = 0
    /// Answered, but not that way.
    var notOK = 0
    /// Unanswered: the connection failed or the request timed out.
    var failed = 0
    /// From the first request's start to the last answer.
    var seconds = 0.0
    /// Send (or intended start, for a fixed rate) → full response, µs, OK answers only.
    var latency = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
    /// By request number: answered OK.
    var acknowledged: [Bool] = []
    /// The run hit its hard stop with requests still unanswered.
    var cutShort = false
    /// The first non-OK answer or failure, to explain it.
    var firstProblem: String?

    /// OK answers per second over the run.
    var okPerSecond: Double { seconds > 0 ? Double(ok) / seconds : 0 }

    /// A latency percentile in milliseconds.
    func milliseconds(atPercentile p: Double) -> Double { Double(latency.valueAtPercentile(p)) / 1000 }
}

/// Builds the bytes of request number `seq` and judges answers. Used only on the generator's
/// event loop, so implementations may keep unsynchronised caches.
protocol RequestWriter: AnyObject, Sendable {
    /// Writes one complete HTTP/1.1 request.
    func write(seq: Int, into buffer: inout ByteBuffer)
    /// Whether an answer is the one the service must give.
    func isExpected(status: Int, body: ByteBufferView) -> Bool
}

/// A lean HTTP/1.1 keep-alive load generator on one NIO event loop: N connections, one request
/// in flight on each, raw request bytes out and a minimal response parser in. Everything runs on
/// the loop (no task hop per request), so the client costs little next to the service it loads.
enum LoadGenerator {
    /// Connects `plan.connections` keep-alive connections to `127.0.0.1:port`, runs the plan,
    /// and closes them.
    static func run(port: Int, plan: LoadPlan, writer: any RequestWriter) async throws -> LoadResult {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            let result = try await run(on: group.next(), port: port, plan: plan, writer: writer)
            try await group.shutdownGracefully()
            return result
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    private static func run(on loop: any EventLoop, port: Int, plan: LoadPlan, writer: any RequestWriter) async throws -> LoadResult {
        let driver = LoadDriver(loop: loop, plan: plan, writer: writer)
        var channels: [any Channel] = []
        do {
            for index in 0..<plan.connections {
                let channel = try await ClientBootstrap(group: loop)
                    .channelOption(.socketOption(.tcp_nodelay), value: 1)
                    .connectTimeout(.seconds(5))
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(ResponseReader(driver: driver, index: index))
                        }
                    }
                    .connect(host: "127.0.0.1", port: port).get()
                channels.append(channel)
            }
        } catch {
            for channel in channels { try? await channel.close() }
            throw error
        }
        let connected = channels
        try await loop.submit { driver.start(channels: connected) }.get()
        try await driver.done.futureResult.get()
        return try await loop.submit { driver.result }.get()
    }
}

/// The generator's state, confined to its event loop (hence `@unchecked Sendable`: every
/// method runs on `loop`).
final class LoadDriver: @unchecked Sendable {
    private struct InFlight {
        var seq: Int
        /// Where latency counts from: the send, or the intended start at a fixed rate.
        var from: UInt64
        var sentAt: UInt64
    }

    let loop: any EventLoop
    let plan: LoadPlan
    let writer: any RequestWriter
    let done: EventLoopPromise<Void>

    private var channels: [(any Channel)?] = []
    private var inFlight: [InFlight?] = []
    private var idle: [Int] = []
    private var nextSeq = 0
    /// Fixed rate: requests whose intended start has come.
    private var released = 0
    private var interval: UInt64 = 0
    private var start: UInt64 = 0
    private var stopIssuing: UInt64 = 0
    private var hardStop: UInt64 = 0
    private var lastAnswer: UInt64 = 0
    private var finished = false
    private var tick: Scheduled<Void>?
    private var watchdog: RepeatedTask?
    private(set) var result = LoadResult()

    init(loop: any EventLoop, plan: LoadPlan, writer: any RequestWriter) {
        self.loop = loop
        self.plan = plan
        self.writer = writer
        self.done = loop.makePromise()
        result.acknowledged = [Bool](repeating: false, count: plan.maxRequests)
    }

    private static func now() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

    func start(channels: [any Channel]) {
        loop.assertInEventLoop()
        self.channels = channels
        inFlight = [InFlight?](repeating: nil, count: channels.count)
        idle = Array((0..<channels.count).reversed())
        start = Self.now()
        lastAnswer = start
        stopIssuing = start + UInt64(plan.duration * 1e9)
        hardStop = stopIssuing + UInt64(plan.grace * 1e9)
        watchdog = loop.scheduleRepeatedTask(initialDelay: .milliseconds(50), delay: .milliseconds(50)) { [self] _ in
            self.checkTimeouts()
        }
        switch plan.mode {
        case .closedLoop:
            while let i = idle.popLast() { dispatch(i) }
        case .fixedRate(let perSecond):
            interval = max(1, UInt64(1e9 / perSecond))
            releaseDue()
        }
        checkDone()
    }

    /// Fixed rate: releases every request whose intended start has come, hands them to idle
    /// connections, and schedules the next release.
    private func releaseDue() {
        guard !finished else { return }
        let elapsed = Self.now() &- start
        let total = fixedRateTotal
        released = max(released, min(total, Int(elapsed / interval) + 1))
        while nextSeq < released, let i = idle.popLast() { dispatch(i) }
        if released < total {
            let at = start + UInt64(released) * interval
            tick = loop.scheduleTask(deadline: .uptimeNanoseconds(at)) { [self] in self.releaseDue() }
        }
        checkDone()
    }

    /// Whether a request may start now, and from which instant its latency counts.
    private func nextRequest() -> (seq: Int, from: UInt64)? {
        guard nextSeq < plan.maxRequests else { return nil }
        switch plan.mode {
        case .closedLoop:
            let now = Self.now()
            guard now < stopIssuing else { return nil }
            defer { nextSeq += 1 }
            return (nextSeq, now)
        case .fixedRate:
            guard nextSeq < released else { return nil }
            defer { nextSeq += 1 }
            return (nextSeq, start + UInt64(nextSeq) * interval)
        }
    }

    /// Sends the next request on connection `i`, or parks it idle.
    private func dispatch(_ i: Int) {
        guard !finished, let channel = channels[i] else { return }
        guard let (seq, from) = nextRequest() else {
            idle.append(i)
            return
        }
        var buffer = channel.allocator.buffer(capacity: 1024)
        writer.write(seq: seq, into: &buffer)
        inFlight[i] = InFlight(seq: seq, from: from, sentAt: Self.now())
        result.started += 1
        channel.writeAndFlush(buffer, promise: nil)
    }

    /// A complete response arrived on connection `i`.
    func answered(_ i: Int, status: Int, body: ByteBufferView) {
        loop.assertInEventLoop()
        guard !finished, channels[i] != nil, let request = inFlight[i] else { return }
        let now = Self.now()
        inFlight[i] = nil
        lastAnswer = now
        if writer.isExpected(status: status, body: body) {
            result.ok += 1
            result.acknowledged[request.seq] = true
            result.latency.record(max(1, (now &- request.from) / 1000))
        } else {
            result.notOK += 1
            if result.firstProblem == nil {
                result.firstProblem = "HTTP \(status): \(String(decoding: body.prefix(200), as: UTF8.self))"
            }
        }
        dispatch(i)
        checkDone()
    }

    /// Connection `i` closed or failed; its request (if any) failed, and it is not reused.
    func connectionLost(_ i: Int, reason: String) {
        loop.assertInEventLoop()
        guard !finished, let channel = channels[i] else { return }
        channels[i] = nil
        if inFlight[i] != nil {
            inFlight[i] = nil
            result.failed += 1
            if result.firstProblem == nil { result.firstProblem = reason }
        }
        channel.close(promise: nil)
        checkDone()
    }

    private func checkTimeouts() {
        guard !finished else { return }
        let now = Self.now()
        let timeout = UInt64(plan.requestTimeout * 1e9)
        for i in inFlight.indices {
            if let request = inFlight[i], now &- request.sentAt > timeout {
                connectionLost(i, reason: "no answer within \(plan.requestTimeout) s")
            }
        }
        if !finished && now >= hardStop {
            result.cutShort = inFlight.contains { $0 != nil }
            for i in inFlight.indices where inFlight[i] != nil { connectionLost(i, reason: "cut short at the run's hard stop") }
            finish()
            return
        }
        // Closed loop: connections idle since the stop time have nothing left to do.
        checkDone()
    }

    private func checkDone() {
        guard !finished, !inFlight.contains(where: { $0 != nil }) else { return }
        let live = channels.contains { $0 != nil }
        let more: Bool
        switch plan.mode {
        case .closedLoop: more = nextSeq < plan.maxRequests && Self.now() < stopIssuing
        case .fixedRate: more = nextSeq < fixedRateTotal
        }
        if !live || !more { finish() }
    }

    /// Fixed rate: how many requests the run offers in all.
    private var fixedRateTotal: Int { min(plan.maxRequests, Int((stopIssuing - start) / interval)) }

    private func finish() {
        guard !finished else { return }
        finished = true
        tick?.cancel()
        watchdog?.cancel()
        result.seconds = Double(lastAnswer &- start) / 1e9
        for case let channel? in channels { channel.close(promise: nil) }
        channels = channels.map { _ in nil }
        done.succeed(())
    }
}

/// Reads HTTP/1.1 responses off one connection: the status line, `Content-Length` and the body.
/// The service always answers with a length (no chunking), and nothing is pipelined.
final class ResponseReader: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    let driver: LoadDriver
    let index: Int
    private var pending: ByteBuffer?

    init(driver: LoadDriver, index: Int) {
        self.driver = driver
        self.index = index
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if pending == nil {
            pending = incoming
        } else {
            pending!.writeBuffer(&incoming)
        }
        while let buffer = pending, let head = Self.parseHead(buffer.readableBytesView) {
            guard buffer.readableBytes >= head.headLength + head.bodyLength else { return }
            let view = buffer.readableBytesView
            let bodyStart = view.startIndex + head.headLength
            driver.answered(index, status: head.status, body: view[bodyStart..<(bodyStart + head.bodyLength)])
            pending!.moveReaderIndex(forwardBy: head.headLength + head.bodyLength)
            if pending!.readableBytes == 0 { pending = nil }
        }
        if let buffer = pending, buffer.readableBytes > 64 * 1024 {
            driver.connectionLost(index, reason: "response head without a Content-Length")
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        driver.connectionLost(index, reason: "the connection closed")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        driver.connectionLost(index, reason: "connection error: \(error)")
        context.close(promise: nil)
    }

    /// Status, head length (through the blank line) and body length, once the head is complete.
    static func parseHead(_ bytes: ByteBufferView) -> (status: Int, headLength: Int, bodyLength: Int)? {
        let cr = UInt8(ascii: "\r"), lf = UInt8(ascii: "\n")
        var i = bytes.startIndex
        let end = bytes.endIndex
        var lineStart = i
        var status: Int?
        var length: Int?
        while i + 1 < end {
            guard bytes[i] == cr, bytes[i + 1] == lf else {
                i += 1
                continue
            }
            let line = bytes[lineStart..<i]
            if line.isEmpty {
                guard let status else { return nil }
                return (status, i + 2 - bytes.startIndex, length ?? 0)
            }
            if status == nil {
                // "HTTP/1.1 200 OK"
                let parts = line.split(separator: UInt8(ascii: " "), maxSplits: 2)
                status = parts.count >= 2 ? Int(String(decoding: parts[1], as: UTF8.self)) ?? 0 : 0
            } else if line.count > 15, Self.isContentLength(line) {
                let value = line.dropFirst(15).drop { $0 == UInt8(ascii: " ") }
                length = Int(String(decoding: value, as: UTF8.self).trimmingSpaces)
            }
            i += 2
            lineStart = i
        }
        return nil
    }

    private static let contentLength = Array("content-length:".utf8)

    private static func isContentLength(_ line: ByteBufferView.SubSequence) -> Bool {
        // Every byte of the name has bit 0x20 set in lower case, so OR-ing it folds upper case.
        for (a, b) in zip(line.prefix(15), contentLength) where a | 0x20 != b { return false }
        return true
    }
}

extension String {
    fileprivate var trimmingSpaces: String {
        var s = Substring(self)
        while s.last == " " || s.last == "\t" { s.removeLast() }
        return String(s)
    }
}

extension ByteBufferView {
    /// Whether `needle` occurs in these bytes (answers are a few dozen bytes: a plain scan).
    func contains(_ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, count >= needle.count else { return needle.isEmpty }
        var i = startIndex
        while i + needle.count <= endIndex {
            if self[i] == needle[0], self[i..<(i + needle.count)].elementsEqual(needle) { return true }
            i += 1
        }
        return false
    }
}
