import Hummingbird
import Logging
import NIOCore

/// An HTTP error with a JSON body `{"error": "<one sentence>"}` (every error body is
/// JSON except the two fixed protocol replies). All errors become one of these in one place.
public struct APIError: HTTPResponseError, Equatable {
    public let status: HTTPResponse.Status
    public let message: String

    public init(_ status: HTTPResponse.Status, _ message: String) {
        self.status = status
        self.message = message
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        jsonResponse(status, .object([("error", .string(message))]))
    }
}

/// A response with a JSON body.
func jsonResponse(_ status: HTTPResponse.Status, _ body: JSONValue) -> Response {
    var buffer = ByteBuffer()
    buffer.writeString(body.serialized)
    return Response(status: status, headers: [.contentType: "application/json; charset=utf-8"], body: .init(byteBuffer: buffer))
}

/// A plain-text response (`success`, `echostr`, metrics).
func textResponse(_ status: HTTPResponse.Status, _ text: String, contentType: String = "text/plain; charset=utf-8") -> Response {
    var buffer = ByteBuffer()
    buffer.writeString(text)
    return Response(status: status, headers: [.contentType: contentType], body: .init(byteBuffer: buffer))
}

/// Turns every error thrown below it into a JSON error body with the right status.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            throw error
        } catch let error as any HTTPResponseError {
            throw APIError(error.status, JSONErrorMiddleware.sentence(for: error.status))
        } catch {
            logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            throw APIError(.internalServerError, "Roundup could not handle the request; see its log.")
        }
    }

    static func sentence(for status: HTTPResponse.Status) -> String {
        switch status.code {
        case 404: return "there is no such endpoint"
        case 405: return "that method is not allowed on this endpoint"
        case 413: return "the request body is larger than server.max_body_bytes"
        case 408: return "the request took too long to arrive"
        default: return status.reasonPhrase.isEmpty ? "the request failed" : status.reasonPhrase.lowercased()
        }
    }
}

extension Request {
    /// The body, refusing more than `limit` bytes with 413 — by `Content-Length` before reading
    /// anything, and otherwise (chunked) as soon as more than `limit` bytes have arrived, so an
    /// oversized body is never buffered whole. A body cut short (the connection closed or timed
    /// out before `Content-Length` bytes arrived) is refused too, never handled as if complete.
    func collectBody(limit: Int) async throws -> ByteBuffer {
        let declared = headers[.contentLength].flatMap(Int.init)
        if let declared, declared > limit {
            throw APIError(.contentTooLarge, "the request body is larger than server.max_body_bytes (\(limit) bytes)")
        }
        let buffer: ByteBuffer
        do {
            buffer = try await body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "the request body is larger than server.max_body_bytes (\(limit) bytes)")
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            // A bad chunk, or a connection closed or timed out mid-body: the client's doing, so a
            // 400 rather than a 500 and no error in the log for every stalled client.
            throw APIError(.badRequest, "the request body could not be read: it was malformed or the client stopped sending it")
        }
        if let declared, buffer.readableBytes < declared {
            throw APIError(.badRequest, "the request body ended before its Content-Length (\(buffer.readableBytes) of \(declared) bytes)")
        }
        return buffer
    }
}
