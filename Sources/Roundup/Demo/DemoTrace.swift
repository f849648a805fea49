import Foundation

/// One line of a demo trace: what happens `at` seconds after the start of the replay.
///
/// The trace is JSON Lines, one event per line (blank lines and lines starting with `#` are
/// skipped). Event types and their keys:
/// - `bind` `{user, openid?, name?}`: the mini program's backend binds a user (`PUT /admin/users`);
///   teachers have a name and no openid.
/// - `credit` `{openid, template, count}`: the backend reports accepted subscriptions (`POST /admin/credits`).
/// - `group_members` `{group, members}`: the class group as the fake IM REST API lists it.
/// - `state` `{user, action}`: `State.StateChange` (`Login`, `Logout`, `Disconnect`).
/// - `c2c` `{from, to, text, key?}`: `C2C.CallbackAfterSendMsg` (`key` is the MsgKey, for a later recall).
/// - `group` `{group, from, text, at_all?, mentions?}`: `Group.CallbackAfterSendMsg`.
/// - `accept` `{openid, template}`: a signed WeChat push of `subscribe_msg_popup_event` (accept).
/// - `read` `{user, peer}`: `C2C.CallbackAfterMsgReport` (the user read everything from `peer`).
/// - `recall` `{from, to, key}`: `C2C.CallbackAfterMsgWithDraw`.
public struct DemoEvent: Sendable, Equatable {
    /// Seconds from the start of the replay.
    public var at: Double
    public var kind: Kind
    /// The 1-based line of the trace it came from (for error messages and unique keys).
    public var line: Int

    /// What happens.
    public enum Kind: Sendable, Equatable {
        case bind(user: String, openid: String?, name: String?)
        case credit(openid: String, template: String, count: Int)
        case groupMembers(group: String, members: [String])
        case state(user: String, action: String)
        case c2c(from: String, to: String, text: String, key: String?)
        case group(group: String, from: String, text: String, atAll: Bool, mentions: [String])
        case accept(openid: String, template: String)
        case read(user: String, peer: String)
        case recall(from: String, to: String, key: String)
    }

    public init(at: Double, kind: Kind, line: Int = 0) {
        self.at = at
        self.kind = kind
        self.line = line
    }

    /// The IM accounts this event names.
    var accounts: [String] {
        switch kind {
        case .bind(let user, _, _), .state(let user, _): return [user]
        case .credit, .accept: return []
        case .groupMembers(_, let members): return members
        case .c2c(let from, let to, _, _), .recall(let from, let to, _): return [from, to]
        case .group(_, let from, _, _, let mentions): return [from] + mentions
        case .read(let user, let peer): return [user, peer]
        }
    }
}

/// Why a trace could not be read.
public struct DemoTraceError: Error, Equatable, CustomStringConvertible {
    /// The 1-based line, or 0 for the whole file.
    public var line: Int
    public var reason: String

    public var description: String { line > 0 ? "line \(line): \(reason)" : reason }
}

/// A replayable afternoon: events in time order (file order within one instant).
public struct DemoTrace: Sendable, Equatable {
    public var events: [DemoEvent]

    public init(events: [DemoEvent]) {
        self.events = events.enumerated().sorted { a, b in
            a.element.at != b.element.at ? a.element.at < b.element.at : a.offset < b.offset
        }.map(\.element)
    }

    /// The built-in trace, a resource of the library (identical to `Fixtures/demo/trace.jsonl`).
    public static func builtIn() throws -> DemoTrace { try parse(builtInText()) }

    /// Where the built-in trace lies among the library's resources.
    public static func builtInURL() throws -> URL {
        guard let url = Bundle.module.url(forResource: "demo-trace", withExtension: "jsonl") else {
            throw DemoTraceError(line: 0, reason: "the built-in trace is missing from the library's resources")
        }
        return url
    }

    /// The text of the built-in trace.
    public static func builtInText() throws -> String { try String(contentsOf: builtInURL(), encoding: .utf8) }

    /// Reads a trace file.
    public static func load(path: String) throws -> DemoTrace {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DemoTraceError(line: 0, reason: "cannot read the trace file \(path)")
        }
        return try parse(String(decoding: data, as: UTF8.self))
    }

    /// Parses JSON Lines; every problem names its line.
    public static func parse(_ text: String) throws -> DemoTrace {
        var events: [DemoEvent] = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            events.append(try parseEvent(line, line: index + 1))
        }
        guard !events.isEmpty else { throw DemoTraceError(line: 0, reason: "the trace has no events") }
        return DemoTrace(events: events)
    }

    /// The IM accounts the trace names, sorted.
    public var accounts: [String] { Array(Set(events.flatMap(\.accounts))).sorted() }

    /// Display names from the `bind` events.
    public var names: [String: String] {
        var names: [String: String] = [:]
        for event in events {
            if case .bind(let user, _, let name?) = event.kind { names[user] = name }
        }
        return names
    }

    private static func parseEvent(_ text: String, line: Int) throws -> DemoEvent {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
            throw DemoTraceError(line: line, reason: "not a JSON object")
        }
        func string(_ key: String) throws -> String {
            guard let value = object[key] as? String, !value.isEmpty else {
                throw DemoTraceError(line: line, reason: "\(key) must be a non-empty string")
            }
            return value
        }
        func optionalString(_ key: String) throws -> String? {
            guard let value = object[key], !(value is NSNull) else { return nil }
            guard let s = value as? String else { throw DemoTraceError(line: line, reason: "\(key) must be a string") }
            return s.isEmpty ? nil : s
        }
        func strings(_ key: String) throws -> [String] {
            guard let value = object[key] else { return [] }
            guard let list = value as? [String] else { throw DemoTraceError(line: line, reason: "\(key) must be a list of strings") }
            return list
        }
        guard let atNumber = object["at"] as? NSNumber, atNumber.doubleValue >= 0, atNumber.doubleValue.isFinite else {
            throw DemoTraceError(line: line, reason: "at must be a number of seconds, zero or more")
        }
        let kind: DemoEvent.Kind
        switch try string("type") {
        case "bind":
            kind = .bind(user: try string("user"), openid: try optionalString("openid"), name: try optionalString("name"))
        case "credit":
            guard let count = object["count"] as? Int, (1...100).contains(count) else {
                throw DemoTraceError(line: line, reason: "count must be a whole number from 1 to 100")
            }
            kind = .credit(openid: try string("openid"), template: try string("template"), count: count)
        case "group_members":
            kind = .groupMembers(group: try string("group"), members: try strings("members"))
        case "state":
            kind = .state(user: try string("user"), action: try string("action"))
        case "c2c":
            kind = .c2c(from: try string("from"), to: try string("to"), text: try string("text"), key: try optionalString("key"))
        case "group":
            kind = .group(group: try string("group"), from: try string("from"), text: try string("text"),
                          atAll: object["at_all"] as? Bool ?? false, mentions: try strings("mentions"))
        case "accept":
            kind = .accept(openid: try string("openid"), template: try string("template"))
        case "read":
            kind = .read(user: try string("user"), peer: try string("peer"))
        case "recall":
            kind = .recall(from: try string("from"), to: try string("to"), key: try string("key"))
        case let other:
            throw DemoTraceError(line: line, reason: "unknown event type \(other)")
        }
        return DemoEvent(at: atNumber.doubleValue, kind: kind, line: line)
    }
}
