import Foundation

extension IMMessageElement {
    /// The text of this element, before line breaks are flattened.
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
            guard let desc, !Self.flatten(desc).isEmpty else { return "[自定义消息]" }
            return desc
        case .relay(let title): return Self.labelled("[聊天记录]", title)
        case .unknown: return "[消息]"
        }
    }

    /// `label detail`, or the label alone when there is no detail.
    private static func labelled(_ label: String, _ detail: String?) -> String {
        guard let detail, !flatten(detail).isEmpty else { return label }
        return label + " " + detail
    }
}

extension Array where Element == IMMessageElement {
    /// The message's one-line summary: element summaries joined with one space; every run
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
    /// One line: every run of spaces and line breaks/tabs that holds at least one break or tab
    /// becomes one space; leading and trailing spaces and breaks are dropped. Works on scalars,
    /// since `Character` iteration is slow and this runs for every ingested message.
    static func flatten(_ text: String) -> String {
        let utf8 = text.utf8
        let needsWork = utf8.contains { $0 < 0x20 || $0 == 0xC2 || $0 == 0xE2 }
            || utf8.first == 0x20 || utf8.last == 0x20
        guard needsWork else { return text }
        var out = String.UnicodeScalarView()
        var pendingSpaces = 0
        var pendingBreak = false
        for scalar in text.unicodeScalars {
            if scalar == " " {
                pendingSpaces += 1
            } else if isBreak(scalar) {
                pendingBreak = true
            } else {
                if !out.isEmpty {
                    if pendingBreak {
                        out.append(" ")
                    } else if pendingSpaces > 0 {
                        out.append(contentsOf: repeatElement(" ", count: pendingSpaces))
                    }
                }
                pendingSpaces = 0
                pendingBreak = false
                out.append(scalar)
            }
        }
        return String(out)
    }

    /// Line breaks (Unicode's newline characters) and tabs.
    private static func isBreak(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x09...0x0D, 0x85, 0x2028, 0x2029: return true
        default: return false
        }
    }
}

extension IMCallback {
    /// True when `CloudCustomData` is a JSON object with `"roundup_urgent": true`; any
    /// other value, type or shape is false.
    public static func isUrgent(cloudCustomData: String?) -> Bool {
        guard let cloudCustomData, cloudCustomData.utf8.count >= 20,
            let json = try? IMJSON.parse(cloudCustomData)
        else { return false }
        return json["roundup_urgent"] == .bool(true)
    }
}

extension IMC2CMessage {
    /// Whether the sender marked this message urgent in `CloudCustomData`.
    public var isUrgent: Bool { IMCallback.isUrgent(cloudCustomData: cloudCustomData) }
    /// The one-line summary of the body.
    public var summary: String { elements.summary }
}

extension IMGroupMessage {
    /// Whether the sender marked this message urgent in `CloudCustomData`.
    public var isUrgent: Bool { IMCallback.isUrgent(cloudCustomData: cloudCustomData) }
    /// The one-line summary of the body.
    public var summary: String { elements.summary }
}
