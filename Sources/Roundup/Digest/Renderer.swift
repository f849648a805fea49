import Foundation

/// One of a digest's remaining messages, as far as rendering needs it.
public struct RenderMessage: Sendable, Equatable {
    /// The sender's IM UserID.
    public var sender: String
    /// The sender's bound display name, if any.
    public var senderName: String?
    /// The sender's group `NameCard`, for group messages.
    public var senderNameCard: String?
    /// IM `MsgTime`, in seconds since 1970.
    public var msgTime: Int64
    /// Receipt order, breaking ties between messages of the same second.
    public var receivedOrder: Int64
    /// The message summary.
    public var summary: String

    public init(
        sender: String, senderName: String? = nil, senderNameCard: String? = nil, msgTime: Int64, receivedOrder: Int64,
        summary: String
    ) {
        self.sender = sender
        self.senderName = senderName
        self.senderNameCard = senderNameCard
        self.msgTime = msgTime
        self.receivedOrder = receivedOrder
        self.summary = summary
    }
}

/// Everything a digest contributes to its subscribe message.
public struct RenderInput: Sendable, Equatable {
    /// The recipient's bound display name, for `{{user}}`.
    public var recipientName: String?
    /// The digest's remaining messages, in any order; must not be empty.
    public var messages: [RenderMessage]
    /// When the message is sent: times on another day get their date.
    public var now: Date
    /// `digest.timezone`.
    public var timeZone: TimeZone

    public init(recipientName: String?, messages: [RenderMessage], now: Date, timeZone: TimeZone) {
        self.recipientName = recipientName
        self.messages = messages
        self.now = now
        self.timeZone = timeZone
    }
}

/// A rendered subscribe message for any recipient: every field already fitted to its keyword type.
public struct RenderedMessage: Sendable, Equatable {
    /// One keyword and its fitted value.
    public struct Field: Sendable, Equatable {
        public var keyword: String
        public var value: String

        public init(keyword: String, value: String) {
            self.keyword = keyword
            self.value = value
        }
    }

    public var templateID: String
    /// The page with `{{from}}` expanded; nil when the template has none (omitted from the body).
    public var page: String?
    public var miniprogramState: String
    public var lang: String
    /// Fields in template order.
    public var data: [Field]

    public init(templateID: String, page: String?, miniprogramState: String, lang: String, data: [Field]) {
        self.templateID = templateID
        self.page = page
        self.miniprogramState = miniprogramState
        self.lang = lang
        self.data = data
    }

    /// The send request for one openid.
    public func subscribeMessage(touser: String) -> SubscribeMessage {
        SubscribeMessage(
            touser: touser, templateID: templateID, page: page, miniprogramState: miniprogramState, lang: lang,
            data: data.map { SubscribeMessage.Field(key: $0.keyword, value: $0.value) })
    }

    /// The exact `subscribeMessage.send` JSON body (keys `touser`, `template_id`, `page`,
    /// `miniprogram_state`, `lang`, `data` in that order, `data` in template order). It is written by
    /// the same encoder the sender uses, so `roundup show` prints byte for byte what is sent.
    public func body(touser: String) -> String {
        subscribeMessage(touser: touser).json.serialized
    }
}

/// What rendering a digest gives.
public enum RenderResult: Sendable, Equatable {
    /// Every field fits.
    case ok(RenderedMessage)
    /// This field's value and fallback are both empty or cannot fit; the digest goes `dead`.
    case unfit(keyword: String)

    /// The digest's errcode when it cannot be rendered: `render:<keyword>`.
    public var errcode: String? {
        if case .unfit(let keyword) = self { return "render:\(keyword)" }
        return nil
    }
}

/// Turns a digest into the field values of a `subscribeMessage.send`: expands the
/// placeholders once, then fits each value to its keyword type, using the fallback when it cannot.
public enum Renderer {
    /// Renders `input` with `template`. An empty message list is a programming error (a digest with
    /// no messages left is expired or cancelled, never rendered) and traps.
    public static func render(_ input: RenderInput, template: TemplateConfig) -> RenderResult {
        precondition(!input.messages.isEmpty, "a digest with no messages is never rendered")
        let facts = DigestFacts(input)
        var data: [RenderedMessage.Field] = []
        for field in template.fields {
            let expanded = expand(field.value) { facts.value(of: $0, in: field.type) }
            let fitted = FieldFitter.fit(expanded, as: field.type)
            guard let value = fitted ?? field.fallback.flatMap({ FieldFitter.fit($0, as: field.type) }) else {
                return .unfit(keyword: field.keyword)
            }
            data.append(.init(keyword: field.keyword, value: value))
        }
        let page = expand(template.page) { $0 == .from ? percentEncoded(facts.from) : nil }
        return .ok(
            RenderedMessage(
                templateID: template.id, page: page.isEmpty ? nil : page,
                miniprogramState: template.miniprogramState.rawValue, lang: template.lang, data: data))
    }

    /// Replaces each `{{name}}` in one pass: substituted text is never scanned again, so `{{…}}`
    /// inside names or message text stays literal. A name `value` answers nil for stays as written.
    static func expand(_ text: String, _ value: (Placeholder) -> String?) -> String {
        var out = ""
        var rest = Substring(text)
        while let open = rest.range(of: "{{"), let close = rest[open.upperBound...].range(of: "}}") {
            out += rest[..<open.lowerBound]
            let name = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            if let placeholder = Placeholder(rawValue: name), let replacement = value(placeholder) {
                out += replacement
            } else {
                out += rest[open.lowerBound..<close.upperBound]
            }
            rest = rest[close.upperBound...]
        }
        return out + rest
    }

    /// `text` as a URL query value: every byte but the RFC 3986 unreserved ones percent-encoded.
    static func percentEncoded(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = String(byte, radix: 16, uppercase: true)
                out += "%" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return out
    }
}

/// What the placeholders of one digest stand for, computed once per render.
struct DigestFacts {
    let count: Int
    let senderCount: Int
    let firstSender: String
    let lastSender: String
    let senders: [String]
    let preview: String
    let firstTime: Int64
    let lastTime: Int64
    let user: String
    /// The first sender's IM id.
    let from: String
    let now: Date
    let calendar: Calendar

    /// Orders the messages by (MsgTime, receipt order) and resolves each sender's name once.
    init(_ input: RenderInput) {
        let ordered = input.messages.sorted { ($0.msgTime, $0.receivedOrder) < ($1.msgTime, $1.receivedOrder) }
        var ids: [String] = []
        var names: [String: String] = [:]
        for message in ordered where names[message.sender] == nil {
            ids.append(message.sender)
            names[message.sender] = DigestFacts.name(of: message.sender, in: ordered)
        }
        var distinctNames: [String] = []
        for id in ids where !distinctNames.contains(names[id]!) { distinctNames.append(names[id]!) }

        let first = ordered.first!
        let last = ordered.last!
        count = ordered.count
        senderCount = ids.count
        firstSender = names[first.sender]!
        lastSender = names[last.sender]!
        senders = distinctNames
        preview = last.summary
        firstTime = first.msgTime
        lastTime = last.msgTime
        user = input.recipientName ?? ""
        from = first.sender
        now = input.now
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = input.timeZone
        self.calendar = calendar
    }

    /// A sender's name: their bound display name, else their group NameCard, else their IM
    /// id. The first usable one in message order wins; one that cleans to nothing (only emoji or
    /// spaces) is not usable.
    static func name(of sender: String, in ordered: [RenderMessage]) -> String {
        let theirs = ordered.filter { $0.sender == sender }
        let usable = { (name: String?) in name.flatMap { FieldFitter.clean($0).isEmpty ? nil : $0 } }
        return theirs.lazy.compactMap { usable($0.senderName) }.first
            ?? theirs.lazy.compactMap { usable($0.senderNameCard) }.first
            ?? sender
    }

    /// The text of a placeholder inside a field of this keyword type (times depend on it).
    func value(of placeholder: Placeholder, in type: KeywordType) -> String {
        switch placeholder {
        case .count: return String(count)
        case .senderCount: return String(senderCount)
        case .firstSender: return firstSender
        case .lastSender: return lastSender
        case .senders: return senders.joined(separator: "、")
        case .preview: return preview
        case .firstTime: return time(firstTime, in: type)
        case .lastTime: return time(lastTime, in: type)
        case .user: return user
        case .from: return from
        }
    }

    /// A MsgTime as a digest shows it: `2025年3月4日 16:05` in a `time` field, `2025年3月4日` in a
    /// `date` field, elsewhere `16:05` on the day of sending and `3月4日 16:05` on any other day.
    func time(_ seconds: Int64, in type: KeywordType) -> String {
        let parts: Set<Calendar.Component> = [.year, .month, .day, .hour, .minute]
        let c = calendar.dateComponents(parts, from: Date(timeIntervalSince1970: TimeInterval(seconds)))
        let (year, month, day) = (c.year ?? 0, c.month ?? 0, c.day ?? 0)
        let clock = DigestFacts.twoDigits(c.hour ?? 0) + ":" + DigestFacts.twoDigits(c.minute ?? 0)
        switch type {
        case .time: return "\(year)年\(month)月\(day)日 \(clock)"
        case .date: return "\(year)年\(month)月\(day)日"
        default:
            let today = calendar.dateComponents([.year, .month, .day], from: now)
            return (today.year, today.month, today.day) == (year, month, day) ? clock : "\(month)月\(day)日 \(clock)"
        }
    }

    /// `7` → `07`.
    static func twoDigits(_ n: Int) -> String { n < 10 ? "0\(n)" : String(n) }
}
