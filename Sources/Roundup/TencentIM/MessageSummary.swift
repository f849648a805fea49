import Foundation

extension IMMessageElement {
    /// The one-line text of this element (SPEC §6 "Message summaries"); empty for an empty text.
    public var summary: String {
        switch self {
        case .text(let text): return text
        case .image: return "[图片]"
        case .sound: return "[语音]"
        case .video: return "[视频]"
        case .file(let name): return Self.labelled("[文件]", name)
        case .location(let desc): return Self.labelled("[位置]", desc)
        case .face: return "[表情]"
        case .custom(let desc):
            guard let desc, !desc.allSatisfy(\.isWhitespace) else { return "[自定义消息]" }
            return desc
        case .relay(let title): return Self.labelled("[聊天记录]", title)
        case .unknown: return "[消息]"
        }
    }

    /// `label detail`, or the label alone when there is no detail.
    private static func labelled(_ label: String, _ detail: String?) -> String {
        guard let detail, !detail.allSatisfy(\.isWhitespace) else { return label }
        return label + " " + detail
    }
}

extension Array where Element == IMMessageElement {
    /// The message's one-line summary (SPEC §6): element summaries joined with one space; every run
    /// of whitespace containing a newline or tab (`\r\n` included) becomes one space; the ends are
    /// trimmed; elements with nothing to show are skipped; a message with nothing at all is `[消息]`.
    public var summary: String {
        var parts: [String] = []
        parts.reserveCapacity(count)
        for element in self {
            let line = IMMessageElement.flatten(element.summary)
            if !line.isEmpty { parts.append(line) }
        }
        return parts.isEmpty ? "[消息]" : parts.joined(separator: " ")
    }
}

extension IMMessageElement {
    /// One line: runs of whitespace that contain a line break or tab become one space, ends trimmed.
    static func flatten(_ text: String) -> String {
        guard text.contains(where: { $0.isNewline || $0 == "\t" }) else {
            return text.trimmingCharacters(in: .whitespaces)
        }
        var out = ""
        out.reserveCapacity(text.utf8.count)
        var run = ""
        var runBreaks = false
        for character in text {
            if character.isWhitespace {
                run.append(character)
                if character.isNewline || character == "\t" { runBreaks = true }
                continue
            }
            if !run.isEmpty {
                out += runBreaks ? " " : run
                run = ""
                runBreaks = false
            }
            out.append(character)
        }
        if !run.isEmpty { out += runBreaks ? " " : run }
        return out.trimmingCharacters(in: .whitespaces)
    }
}

extension IMCallback {
    /// True when `CloudCustomData` is a JSON object with `"roundup_urgent": true` (SPEC §5.2); any
    /// other value, type or shape is false.
    public static func isUrgent(cloudCustomData: String?) -> Bool {
        guard let cloudCustomData, cloudCustomData.contains("roundup_urgent"),
            let json = try? IMJSON.parse(cloudCustomData)
        else { return false }
        return json["roundup_urgent"] == .bool(true)
    }
}

extension IMC2CMessage {
    /// Whether the sender marked this message urgent in `CloudCustomData` (SPEC §5.2).
    public var isUrgent: Bool { IMCallback.isUrgent(cloudCustomData: cloudCustomData) }
    /// The one-line summary of the body (SPEC §6).
    public var summary: String { elements.summary }
}

extension IMGroupMessage {
    /// Whether the sender marked this message urgent in `CloudCustomData` (SPEC §5.2).
    public var isUrgent: Bool { IMCallback.isUrgent(cloudCustomData: cloudCustomData) }
    /// The one-line summary of the body (SPEC §6).
    public var summary: String { elements.summary }
}
