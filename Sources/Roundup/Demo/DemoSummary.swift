import Foundation

/// What the demo reports while it runs: a progress line, or a subscribe message that was sent.
public enum DemoNote: Sendable, Equatable {
    /// One short line about what just happened (`[  5.0s] 王芳: …`).
    case progress(String)
    /// A subscribe message WeChat (the fake) accepted: the JSON body exactly as sent.
    case sent(body: String)
}

/// The closing numbers of a demo run.
public struct DemoSummary: Sendable, Equatable {
    /// Message rows stored: each C2C message, plus one copy per member for a group message.
    public var messagesReceived: Int
    /// IM accounts the trace names (teachers, parents, group members).
    public var users: Int
    /// Digests that became a subscribe message (`sent`, and `dry_run`).
    public var digestsSent: Int
    /// Digests cancelled because the user came online first (nothing sent, no credit spent).
    public var digestsCancelledOnline: Int
    /// Digests still held at the end (unbound, no credit, config error).
    public var digestsHeld: Int

    public init(messagesReceived: Int, users: Int, digestsSent: Int, digestsCancelledOnline: Int, digestsHeld: Int) {
        self.messagesReceived = messagesReceived
        self.users = users
        self.digestsSent = digestsSent
        self.digestsCancelledOnline = digestsCancelledOnline
        self.digestsHeld = digestsHeld
    }

    /// Messages that did not need a send of their own (ingested − digests sent).
    public var sendsSaved: Int { messagesReceived - digestsSent }

    /// The `--json` summary object, keys in the order docs/cli.md gives.
    public var json: JSONValue {
        .object([
            ("messages_received", .int(Int64(messagesReceived))), ("users", .int(Int64(users))),
            ("digests_sent", .int(Int64(digestsSent))), ("digests_cancelled_online", .int(Int64(digestsCancelledOnline))),
            ("digests_held", .int(Int64(digestsHeld))), ("sends_saved", .int(Int64(sendsSaved))),
        ])
    }

    /// The closing summary for people.
    public var text: String {
        let rows: [(String, Int)] = [
            ("messages received", messagesReceived), ("users", users), ("digests sent", digestsSent),
            ("cancelled: user came online", digestsCancelledOnline), ("held (unbound / no credit)", digestsHeld),
            ("sends saved", sendsSaved),
        ]
        let width = rows.map(\.0.count).max() ?? 0
        let lines = rows.map { label, value in
            "  " + label + String(repeating: " ", count: width - label.count) + "  " + String(value)
        }
        return (["Summary"] + lines).joined(separator: "\n") + "\n"
    }
}

/// Formatting helpers for the demo's output.
public enum DemoFormat {
    /// A compact JSON body laid out for reading: one line per key of the outer two levels,
    /// deeper values inline, key order and every value exactly as sent.
    public static func pretty(_ body: String, indent: String = "  ") -> String {
        var out = ""
        var depth = 0
        var inString = false
        var escaped = false
        func newline(_ level: Int) { out += "\n" + String(repeating: indent, count: level) }
        for character in body {
            if inString {
                out.append(character)
                if escaped { escaped = false } else if character == "\\" { escaped = true } else if character == "\"" { inString = false }
                continue
            }
            switch character {
            case "\"":
                inString = true
                out.append(character)
            case "{", "[":
                depth += 1
                out.append(character)
                if depth <= 2 { newline(depth) }
            case "}", "]":
                if depth <= 2 { newline(depth - 1) }
                depth -= 1
                out.append(character)
            case ",":
                out.append(character)
                if depth <= 2 { newline(depth) }
            case ":":
                out += depth <= 2 ? ": " : ":"
            case " ", "\n", "\t", "\r":
                continue
            default:
                out.append(character)
            }
        }
        return out
    }
}
