import Foundation
import Testing

@testable import Roundup

@Suite("Rendering")
struct RendererTests {
    static let shanghai = TimeZone(identifier: "Asia/Shanghai")!
    static let utc = TimeZone(identifier: "UTC")!
    /// 2025-03-04 16:01 in Asia/Shanghai (08:01 UTC).
    static let t1601: Int64 = 1_741_075_260
    /// 2025-03-04 17:00 in Asia/Shanghai: the sending time of most tests.
    static let sentAt = Date(timeIntervalSince1970: 1_741_078_800)

    /// A template with these fields, in order.
    static func template(_ fields: [TemplateField], page: String = "") -> TemplateConfig {
        TemplateConfig(id: "TPL", page: page, fields: fields)
    }

    /// One field from its keyword, the type read from the keyword.
    static func field(_ keyword: String, _ value: String, fallback: String? = nil) -> TemplateField {
        TemplateField(keyword: keyword, type: KeywordType.of(keyword: keyword)!, value: value, fallback: fallback)
    }

    /// A message `minutes` after 16:01 Shanghai time.
    static func message(
        _ sender: String, name: String? = nil, card: String? = nil, minute: Int64, order: Int64? = nil, _ summary: String
    ) -> RenderMessage {
        RenderMessage(
            sender: sender, senderName: name, senderNameCard: card, msgTime: t1601 + minute * 60,
            receivedOrder: order ?? minute, summary: summary)
    }

    /// Renders and expects every field to fit.
    static func rendered(
        _ messages: [RenderMessage], _ template: TemplateConfig, recipient: String? = nil, now: Date = sentAt,
        zone: TimeZone = shanghai
    ) throws -> RenderedMessage {
        let input = RenderInput(recipientName: recipient, messages: messages, now: now, timeZone: zone)
        guard case .ok(let message) = Renderer.render(input, template: template) else {
            Issue.record("expected the digest to render")
            throw CancellationError()
        }
        return message
    }

    /// The field values of a rendering, by keyword.
    static func values(_ m: RenderedMessage) -> [String: String] {
        Dictionary(uniqueKeysWithValues: m.data.map { ($0.keyword, $0.value) })
    }

    static let schoolAfternoon = [
        message("zhang_t", name: "张老师", minute: 0, "明天带上作业本"),
        message("li_t", card: "李老师", minute: 1, "[图片]"),
        message("zhang_t", name: "张老师", minute: 2, "记得签字"),
        message("li_t", card: "李老师", minute: 3, "下午的活动改到三点"),
        message("zhang_t", name: "张老师", minute: 4, "收到请回复"),
    ]

    @Test("the example template renders two teachers' five messages to the exact body")
    func exampleBody() throws {
        let config = try TestSupport.loader().load(path: TestSupport.fixture("config/roundup.example.yaml").path).config
        let template = try #require(config.templates.first)
        let m = try Self.rendered(Self.schoolAfternoon, template)
        let expected = #"{"touser":"oOPENID","template_id":"bDmywsp2oEHjwAadTPKkw9p3pqQy1-8L2TgBg0DRfRM","#
            + #""page":"pages/chat/index?peer=zhang_t","miniprogram_state":"formal","lang":"zh_CN","data":{"#
            + #""thing1":{"value":"张老师等2人"},"number2":{"value":"5"},"thing3":{"value":"收到请回复"},"#
            + #""time4":{"value":"2025年3月4日 16:05"}}}"#
        #expect(m.body(touser: "oOPENID") == expected)
        #expect(String(decoding: m.subscribeMessage(touser: "oOPENID").body, as: UTF8.self) == expected)
    }

    @Test("counts, senders, first and last sender, user and from")
    func placeholders() throws {
        let t = Self.template([
            Self.field("thing1", "{{senders}}"),
            Self.field("thing2", "{{first_sender}}/{{last_sender}}"),
            Self.field("number3", "{{count}}"),
            Self.field("number4", "{{sender_count}}"),
            Self.field("thing5", "{{user}}家长您好"),
            Self.field("character_string6", "{{from}}"),
        ])
        let messages = Self.schoolAfternoon + [Self.message("wang_t", name: "王老师", minute: 5, "好的")]
        let v = Self.values(try Self.rendered(messages, t, recipient: "小明"))
        #expect(v["thing1"] == "张老师、李老师、王老师")
        #expect(v["thing2"] == "张老师/王老师")
        #expect(v["number3"] == "6")
        #expect(v["number4"] == "3")
        #expect(v["thing5"] == "小明家长您好")
        #expect(v["character_string6"] == "zhang_t")
        #expect(Self.values(try Self.rendered(messages, t))["thing5"] == "家长您好")
    }

    @Test("{{senders}} lists each distinct name once, in order of first appearance")
    func sendersAreDistinct() throws {
        let t = Self.template([Self.field("thing1", "{{senders}}"), Self.field("number2", "{{sender_count}}")])
        let messages = [
            Self.message("b", name: "乙", minute: 3, "x"),
            Self.message("a", name: "甲", minute: 1, "x"),
            Self.message("b", name: "乙", minute: 2, "x"),
            Self.message("c", name: "甲", minute: 4, "x"),
        ]
        let v = Self.values(try Self.rendered(messages, t))
        #expect(v["thing1"] == "甲、乙")
        #expect(v["number2"] == "3")
    }

    @Test(
        "a sender's name is the bound name, else the NameCard, else the IM id",
        arguments: [
            (String?("王老师"), String?("王芳"), "王老师"),
            (nil, "王芳", "王芳"),
            (nil, nil, "wang_t"),
            ("", "王芳", "王芳"),
            ("😀", nil, "wang_t"),
            (" ", " ", "wang_t"),
        ])
    func senderName(bound: String?, card: String?, expected: String) throws {
        let t = Self.template([Self.field("thing1", "{{first_sender}}")])
        let m = try Self.rendered([Self.message("wang_t", name: bound, card: card, minute: 0, "x")], t)
        #expect(Self.values(m)["thing1"] == expected)
    }

    @Test("expansion is single-pass: placeholders inside names and message text stay literal")
    func singlePass() throws {
        let t = Self.template([Self.field("thing1", "{{first_sender}}"), Self.field("thing2", "{{preview}}")])
        let messages = [Self.message("x", name: "{{count}}老师", minute: 0, "{{count}}条{{user}}")]
        let v = Self.values(try Self.rendered(messages, t))
        #expect(v["thing1"] == "{{count}}老师")
        #expect(v["thing2"] == "{{count}}条{{user}}")
    }

    @Test("times show the date only when not on the day of sending; time and date fields use full dates")
    func timeFormats() throws {
        let t = Self.template([
            Self.field("thing1", "{{first_time}}"),
            Self.field("thing2", "{{last_time}}"),
            Self.field("time3", "{{last_time}}"),
            Self.field("date4", "{{first_time}}"),
            Self.field("time5", "{{first_time}}~{{last_time}}"),
        ])
        // 2025-03-03 23:50 and 2025-03-04 08:05 in Shanghai, sent 2025-03-04 09:00.
        let messages = [
            RenderMessage(sender: "a", msgTime: 1_741_017_000, receivedOrder: 1, summary: "x"),
            RenderMessage(sender: "a", msgTime: 1_741_046_700, receivedOrder: 2, summary: "y"),
        ]
        let v = Self.values(try Self.rendered(messages, t, now: Date(timeIntervalSince1970: 1_741_050_000)))
        #expect(v["thing1"] == "3月3日 23:50")
        #expect(v["thing2"] == "08:05")
        #expect(v["time3"] == "2025年3月4日 08:05")
        #expect(v["date4"] == "2025年3月3日")
        #expect(v["time5"] == "2025年3月3日 23:50~2025年3月4日 08:05")
    }

    @Test("the same instant renders in digest.timezone: Asia/Shanghai against UTC")
    func timeZones() throws {
        let t = Self.template([Self.field("time1", "{{last_time}}"), Self.field("thing2", "{{last_time}}")])
        // 2025-03-04 20:00 UTC = 2025-03-05 04:00 Shanghai; sent 2025-03-05 09:00 Shanghai = 01:00 UTC.
        let messages = [RenderMessage(sender: "a", msgTime: 1_741_118_400, receivedOrder: 1, summary: "x")]
        let now = Date(timeIntervalSince1970: 1_741_136_400)
        let inShanghai = Self.values(try Self.rendered(messages, t, now: now, zone: Self.shanghai))
        let inUTC = Self.values(try Self.rendered(messages, t, now: now, zone: Self.utc))
        #expect(inShanghai["time1"] == "2025年3月5日 04:00")
        #expect(inShanghai["thing2"] == "04:00")
        #expect(inUTC["time1"] == "2025年3月4日 20:00")
        #expect(inUTC["thing2"] == "3月4日 20:00")
    }

    @Test("messages are ordered by MsgTime, then by receipt order")
    func ordering() throws {
        let t = Self.template([
            Self.field("thing1", "{{first_sender}}"), Self.field("thing2", "{{last_sender}}"),
            Self.field("thing3", "{{preview}}"),
        ])
        let messages = [
            Self.message("late", minute: 9, order: 1, "newest"),
            Self.message("tie_second", minute: 0, order: 7, "second"),
            Self.message("tie_first", minute: 0, order: 3, "first"),
        ]
        let v = Self.values(try Self.rendered(messages, t))
        #expect(v["thing1"] == "tie_first")
        #expect(v["thing2"] == "late")
        #expect(v["thing3"] == "newest")
    }

    @Test("a preview of only emoji uses the fallback; a long one is cut with …")
    func previewFallback() throws {
        let t = Self.template([Self.field("thing1", "{{preview}}", fallback: "您有新消息")])
        let emojiOnly = try Self.rendered([Self.message("a", minute: 0, "😀👍🏽 🇨🇳\n")], t)
        #expect(Self.values(emojiOnly)["thing1"] == "您有新消息")
        let long = try Self.rendered([Self.message("a", minute: 0, "今天下午三点在学校礼堂召开家长会请准时参加谢谢")], t)
        #expect(Self.values(long)["thing1"] == "今天下午三点在学校礼堂召开家长会请准时…")
    }

    @Test("a field that cannot fit and has no usable fallback makes the digest unfit")
    func unfit() throws {
        let messages = [Self.message("t", name: "Teacher", minute: 0, "x")]
        let input = RenderInput(recipientName: nil, messages: messages, now: Self.sentAt, timeZone: Self.shanghai)
        let noFallback = Self.template([Self.field("thing1", "{{count}}"), Self.field("phrase2", "{{first_sender}}")])
        let result = Renderer.render(input, template: noFallback)
        #expect(result == .unfit(keyword: "phrase2"))
        #expect(result.errcode == "render:phrase2")

        let badFallback = Self.template([Self.field("phrase1", "{{first_sender}}", fallback: "New message")])
        #expect(Renderer.render(input, template: badFallback) == .unfit(keyword: "phrase1"))

        let goodFallback = Self.template([Self.field("phrase1", "{{first_sender}}", fallback: "新消息")])
        guard case .ok(let m) = Renderer.render(input, template: goodFallback) else {
            Issue.record("expected the fallback to be used")
            return
        }
        #expect(m.data == [.init(keyword: "phrase1", value: "新消息")])
        #expect(Renderer.render(input, template: goodFallback).errcode == nil)
    }

    @Test("{{from}} in page is percent-encoded as a query value; an empty page is left out of the body")
    func page() throws {
        let messages = [Self.message("a&b 老/x=1", minute: 0, "x")]
        let t = Self.template([Self.field("thing1", "{{from}}")], page: "pages/chat/index?peer={{from}}&tab=1")
        let m = try Self.rendered(messages, t)
        #expect(m.page == "pages/chat/index?peer=a%26b%20%E8%80%81%2Fx%3D1&tab=1")
        #expect(Self.values(m)["thing1"] == "a&b 老/x=1")

        let bare = try Self.rendered(messages, Self.template([Self.field("thing1", "{{count}}")]))
        #expect(bare.page == nil)
        #expect(bare.body(touser: "o") == #"{"touser":"o","template_id":"TPL","miniprogram_state":"formal","lang":"zh_CN","data":{"thing1":{"value":"1"}}}"#)
    }

    @Test("the body escapes quotes and backslashes and keeps data in template order")
    func bodyEscaping() throws {
        let t = Self.template([Self.field("thing9", "{{preview}}"), Self.field("number1", "{{count}}")])
        let m = try Self.rendered([Self.message("a", minute: 0, #"他说"好的"\"#)], t)
        #expect(m.body(touser: "o\"1") == #"{"touser":"o\"1","template_id":"TPL","miniprogram_state":"formal","lang":"zh_CN","data":{"thing9":{"value":"他说\"好的\"\\"},"number1":{"value":"1"}}}"#)
    }
}
