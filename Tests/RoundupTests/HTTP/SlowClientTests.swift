import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@testable import Roundup

/// Clients no HTTP library would be: ones that stall before, inside or after a request head, trickle
/// a body, or announce a body larger than `server.max_body_bytes` (issue 8: bodies over the limit
/// get 413 before they are buffered whole; slow or stalled clients time out). Each test runs the
/// real application on loopback with short injected timeouts and talks to it over a raw socket.
@Suite("Slow and oversized clients")
struct SlowClientTests {
    /// Far longer than any injected timeout: a connection still open after this was never cut off.
    static let bound = 15.0
    /// `server.max_body_bytes` in these tests (the smallest the config allows).
    static let limit = 1024

    /// Runs `body` against the live application with the given timeouts; hands it the port.
    func withServer(
        _ h: ServiceHarness, idle: Duration = .seconds(60), request: Duration = .seconds(60),
        _ body: @escaping @Sendable (Int) async throws -> Void
    ) async throws {
        try await h.runtime.buildApplication(timeouts: ConnectionTimeouts(idle: idle, request: request)).test(.live) { client in
            try await body(try #require(client.port))
        }
    }

    func harness() throws -> ServiceHarness {
        try ServiceHarness(env: ["ROUNDUP_SERVER_MAX_BODY_BYTES": String(Self.limit)])
    }

    /// The head of a signed IM callback, so the request passes authentication and reads its body.
    func callbackHead(_ h: ServiceHarness, _ framing: String) -> String {
        "POST \(h.callbackURI("C2C.CallbackAfterSendMsg")) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\(framing)\r\n"
    }

    @Test("a client that connects and sends nothing is disconnected after the idle timeout")
    func stalledBeforeHead() async throws {
        let h = try harness()
        defer { h.remove() }
        try await withServer(h, idle: .seconds(1)) { port in
            let connection = try RawHTTPSocket(port: port)
            let result = await connection.readUntilClosed(within: Self.bound)
            #expect(result.closed)
            #expect(result.bytes.isEmpty)
        }
    }

    @Test("a client that stalls in the middle of a request head is disconnected after the idle timeout")
    func stalledMidHead() async throws {
        let h = try harness()
        defer { h.remove() }
        try await withServer(h, idle: .seconds(1)) { port in
            let connection = try RawHTTPSocket(port: port)
            try await connection.send("POST /im/callback HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
            let result = await connection.readUntilClosed(within: Self.bound)
            #expect(result.closed)
        }
    }

    @Test("a client that stalls in the middle of a body is disconnected, and the half body is not ingested")
    func stalledMidBody() async throws {
        let h = try harness()
        defer { h.remove() }
        let body = String(decoding: try JSONSerialization.data(withJSONObject: Callbacks.c2c(from: "t", to: "p", key: "half")), as: UTF8.self)
        try await withServer(h, idle: .seconds(1)) { port in
            let connection = try RawHTTPSocket(port: port)
            try await connection.send(callbackHead(h, "Content-Length: \(body.utf8.count)\r\n") + String(body.prefix(40)))
            let result = await connection.readUntilClosed(within: Self.bound)
            #expect(result.closed)
            #expect(!result.text.contains("HTTP/1.1 200"))
        }
        #expect(try h.store.messages(recipient: "p").isEmpty)
        let metrics = h.runtime.metrics.exposition()
        #expect(metricSample(metrics, #"roundup_callbacks_total{command="C2C.CallbackAfterSendMsg",outcome="malformed"}"#) == 0)
        #expect(metricSample(metrics, #"roundup_callbacks_total{command="C2C.CallbackAfterSendMsg",outcome="stored"}"#) == 0)
    }

    @Test("a client that trickles its body a byte at a time is cut off at the request deadline, though never idle")
    func trickledBody() async throws {
        let h = try harness()
        defer { h.remove() }
        try await withServer(h, idle: .seconds(60), request: .seconds(2)) { port in
            let connection = try RawHTTPSocket(port: port)
            try await connection.send(callbackHead(h, "Content-Length: 1000\r\n"))
            // One byte every 250 ms: at most 60 of the 1000 bytes before the bound.
            let trickle = await connection.trickle(byte: UInt8(ascii: " "), every: 0.25, times: Int(Self.bound / 0.25))
            #expect(trickle.closed)
            #expect(trickle.sent < Int(Self.bound / 0.25))
        }
    }

    @Test("an active keep-alive client keeps its connection for longer than the idle timeout")
    func keepAlive() async throws {
        let h = try harness()
        defer { h.remove() }
        try await withServer(h, idle: .seconds(3)) { port in
            let connection = try RawHTTPSocket(port: port)
            let started = ContinuousClock.now
            // Ten requests 0.4 s apart on one connection: at least 4 s in all, longer than the
            // idle timeout, while no gap comes near it (however slow the machine, the total only grows).
            let answers = await connection.keepAlive("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", times: 10, gap: 0.4, within: Self.bound)
            #expect(answers.count == 10, "only \(answers.count) of 10 requests were answered on the kept-alive connection")
            #expect(answers.allSatisfy { $0.hasPrefix("HTTP/1.1 200") })
            #expect(ContinuousClock.now - started > .seconds(3))
            // Left alone, the same connection is closed once it has been idle for the timeout.
            #expect(await connection.readUntilClosed(within: Self.bound).closed)
        }
    }

    @Test("a Content-Length over the limit gets 413 at once, without the server waiting for the body")
    func oversizedContentLength() async throws {
        let h = try harness()
        defer { h.remove() }
        try await withServer(h) { port in
            let connection = try RawHTTPSocket(port: port)
            // 10 MB announced, not one byte sent: only an answer before any body can arrive.
            try await connection.send(callbackHead(h, "Content-Length: 10000000\r\n"))
            let response = try #require(await connection.readResponse(within: Self.bound))
            #expect(response.hasPrefix("HTTP/1.1 413"))
            #expect(response.contains(#"{"error":"the request body is larger than server.max_body_bytes (1024 bytes)"}"#))
        }
        #expect(try h.store.messages(recipient: "p").isEmpty)
    }

    @Test("a chunked body with no Content-Length gets 413 as soon as more than the limit has arrived")
    func oversizedChunkedBody() async throws {
        let h = try harness()
        defer { h.remove() }
        try await withServer(h) { port in
            let connection = try RawHTTPSocket(port: port)
            try await connection.send(callbackHead(h, "Transfer-Encoding: chunked\r\n"))
            // Two chunks of 600 bytes: 1200 > 1024, and the body never ends (no 0-length chunk).
            let chunk = String(repeating: "x", count: 600)
            try await connection.send("258\r\n\(chunk)\r\n")
            try await connection.send("258\r\n\(chunk)\r\n")
            let response = try #require(await connection.readResponse(within: Self.bound))
            #expect(response.hasPrefix("HTTP/1.1 413"))
            #expect(response.contains("server.max_body_bytes"))
        }
    }

    @Test("a malformed chunked body gets a JSON 400, not a 500")
    func malformedChunk() async throws {
        let h = try harness()
        defer { h.remove() }
        try await withServer(h) { port in
            let connection = try RawHTTPSocket(port: port)
            try await connection.send(callbackHead(h, "Transfer-Encoding: chunked\r\n") + "zz\r\n{}\r\n0\r\n\r\n")
            let response = try #require(await connection.readResponse(within: Self.bound))
            #expect(response.hasPrefix("HTTP/1.1 400"), "\(response)")
            #expect(response.contains(#"{"error":"the request body could not be read"#), "\(response)")
        }
        #expect(try h.store.messages(recipient: "p").isEmpty)
    }

    @Test("a chunked body within the limit is read whole and ingested")
    func chunkedWithinLimit() async throws {
        let h = try harness()
        defer { h.remove() }
        let body = String(decoding: try JSONSerialization.data(withJSONObject: Callbacks.c2c(from: "t", to: "p", key: "chunked")), as: UTF8.self)
        let half = body.utf8.count / 2
        let first = String(decoding: Array(body.utf8.prefix(half)), as: UTF8.self)
        let second = String(decoding: Array(body.utf8.dropFirst(half)), as: UTF8.self)
        try await withServer(h) { port in
            let connection = try RawHTTPSocket(port: port)
            try await connection.send(callbackHead(h, "Transfer-Encoding: chunked\r\n"))
            for part in [first, second] {
                try await connection.send(String(part.utf8.count, radix: 16) + "\r\n" + part + "\r\n")
            }
            try await connection.send("0\r\n\r\n")
            let response = try #require(await connection.readResponse(within: Self.bound))
            #expect(response.hasPrefix("HTTP/1.1 200"))
        }
        #expect(try h.store.messages(recipient: "p").map(\.msgKey) == ["chunked"])
    }
}

/// A blocking loopback TCP connection for raw HTTP bytes. Every blocking call runs on a thread
/// of its own, never on Swift concurrency's small shared pool.
final class RawHTTPSocket: Sendable {
    private let fd: Int32

    struct ReadResult: Sendable {
        let bytes: [UInt8]
        /// The server closed (or reset) the connection.
        let closed: Bool
        var text: String { String(decoding: bytes, as: UTF8.self) }
    }

    init(port: Int) throws {
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw RawHTTPSocketError.system("socket", errno) }
        #if canImport(Darwin)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
        #endif
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            let error = errno
            close(fd)
            throw RawHTTPSocketError.system("connect", error)
        }
        self.fd = fd
    }

    deinit { close(fd) }

    /// Writes all of `text`; throws when the server has closed the connection.
    func send(_ text: String) async throws {
        let fd = self.fd
        let bytes = Array(text.utf8)
        let failure: Int32? = await Self.onThread { RawHTTPSocket.writeAll(fd, bytes) }
        if let failure { throw RawHTTPSocketError.system("send", failure) }
    }

    /// Reads until the server closes the connection or `seconds` pass.
    func readUntilClosed(within seconds: Double) async -> ReadResult {
        let fd = self.fd
        return await Self.onThread { RawHTTPSocket.read(fd, within: seconds) { _ in false } }
    }

    /// Reads one complete response (head and `Content-Length` body), or nil if none arrives in
    /// `seconds` or the connection closes first.
    func readResponse(within seconds: Double) async -> String? {
        let fd = self.fd
        let result = await Self.onThread { RawHTTPSocket.read(fd, within: seconds) { RawHTTPSocket.responseLength($0) != nil } }
        guard let length = RawHTTPSocket.responseLength(result.bytes) else { return nil }
        return String(decoding: result.bytes.prefix(length), as: UTF8.self)
    }

    /// Sends `request` `times` times, `gap` seconds after each answer, all on one thread of its
    /// own (so the gaps do not stretch when the cooperative pool is busy); returns the answers
    /// read, stopping at the first request that gets none within `seconds`.
    func keepAlive(_ request: String, times: Int, gap: Double, within seconds: Double) async -> [String] {
        let fd = self.fd
        let bytes = Array(request.utf8)
        return await Self.onThread {
            var answers: [String] = []
            for _ in 0..<times {
                guard RawHTTPSocket.writeAll(fd, bytes) == nil else { break }
                let result = RawHTTPSocket.read(fd, within: seconds) { RawHTTPSocket.responseLength($0) != nil }
                guard let length = RawHTTPSocket.responseLength(result.bytes) else { break }
                answers.append(String(decoding: result.bytes.prefix(length), as: UTF8.self))
                usleep(UInt32(gap * 1_000_000))
            }
            return answers
        }
    }

    /// Sends `byte` every `interval` seconds, `times` times, stopping once the server closes the
    /// connection; returns how many were sent and whether it closed.
    func trickle(byte: UInt8, every interval: Double, times: Int) async -> (sent: Int, closed: Bool) {
        let fd = self.fd
        return await Self.onThread {
            for sent in 0..<times {
                if RawHTTPSocket.writeAll(fd, [byte]) != nil { return (sent, true) }
                if RawHTTPSocket.read(fd, within: interval, until: { _ in false }).closed { return (sent + 1, true) }
            }
            return (times, false)
        }
    }

    // MARK: blocking helpers (run on their own thread)

    private static func onThread<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: work()) }.start()
        }
    }

    /// nil on success, else the errno.
    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Int32? {
        var offset = 0
        while offset < bytes.count {
            #if canImport(Glibc)
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            #else
            let n = bytes[offset...].withUnsafeBytes { Darwin.send(fd, $0.baseAddress, $0.count, 0) }
            #endif
            if n < 0 {
                if errno == EINTR { continue }
                return errno
            }
            offset += n
        }
        return nil
    }

    /// Reads until `done` says so, the peer closes, or `seconds` pass.
    private static func read(_ fd: Int32, within seconds: Double, until done: ([UInt8]) -> Bool) -> ReadResult {
        let deadline = Date().addingTimeInterval(seconds)
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while !done(bytes) {
            let remaining = deadline.timeIntervalSinceNow
            if remaining <= 0 { return ReadResult(bytes: bytes, closed: false) }
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, Int32(min(remaining * 1000, 1000).rounded(.up)))
            if ready < 0, errno == EINTR { continue }
            if ready <= 0 { continue }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                bytes += buffer[0..<n]
            } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                return ReadResult(bytes: bytes, closed: true)
            }
        }
        return ReadResult(bytes: bytes, closed: false)
    }

    /// The length of the first complete response in `bytes`, or nil while it is incomplete.
    private static func responseLength(_ bytes: [UInt8]) -> Int? {
        let separator = Array("\r\n\r\n".utf8)
        guard bytes.count >= separator.count,
              let end = (0...(bytes.count - separator.count)).first(where: { bytes[$0..<($0 + separator.count)].elementsEqual(separator) })
        else { return nil }
        let head = String(decoding: bytes[0..<end], as: UTF8.self).lowercased()
        let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
            .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
        let total = end + separator.count + length
        return bytes.count >= total ? total : nil
    }
}

enum RawHTTPSocketError: Error {
    case system(String, Int32)
}
