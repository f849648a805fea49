import Foundation
import Testing

@testable import Roundup

@Suite("Message summaries")
struct MessageSummaryTests {
    @Test(
        "each element kind has its documented summary",
        arguments: [
            (IMMessageElement.text("你好，张老师"), "你好，张老师"),
            (.image, "[图片]"),
            (.sound, "[语音]"),
            (.video, "[视频]"),
            (.file(name: "成绩单.xlsx"), "[文件] 成绩单.xlsx"),
            (.file(name: nil), "[文件]"),
            (.file(name: " "), "[文件]"),
            (.location(desc: "实验小学东门"), "[位置] 实验小学东门"),
            (.location(desc: nil), "[位置]"),
            (.face, "[表情]"),
            (.custom(desc: "作业提醒"), "作业提醒"),
            (.custom(desc: ""), "[自定义消息]"),
            (.custom(desc: nil), "[自定义消息]"),
            (.relay(title: "三年级二班的聊天记录"), "[聊天记录] 三年级二班的聊天记录"),
            (.relay(title: nil), "[聊天记录]"),
            (.unknown(type: "TIMGroupTipElem"), "[消息]"),
            (.unknown(type: ""), "[消息]"),
        ])
    func single(element: IMMessageElement, expected: String) {
        #expect([element].summary == expected)
    }

    @Test("several elements are joined with one space")
    func joined() {
        #expect([.image, .text("春游照片"), .file(name: "须知.pdf")].summary == "[图片] 春游照片 [文件] 须知.pdf")
    }

    @Test(
        "line breaks and tabs become one space, runs included; plain spaces stay; ends are trimmed",
        arguments: [
            ("第一行\n第二行", "第一行 第二行"),
            ("第一行\r\n第二行", "第一行 第二行"),
            ("第一行\r第二行", "第一行 第二行"),
            ("a\n\n\nb", "a b"),
            ("a \n\t b", "a b"),
            ("a\tb", "a b"),
            ("a  b", "a  b"),
            ("a\u{2028}b\u{2029}c\u{85}d", "a b c d"),
            ("\n\n开头和结尾\n", "开头和结尾"),
            ("  spaced  ", "spaced"),
            ("全角\u{3000}空格", "全角\u{3000}空格"),
            ("“引号”…", "“引号”…"),
        ])
    func flattening(text: String, expected: String) {
        #expect([IMMessageElement.text(text)].summary == expected)
    }

    @Test("empty texts are skipped, so no double spaces; a message with nothing is [消息]")
    func empties() {
        #expect([.text(""), .image, .text("\n"), .text("好")].summary == "[图片] 好")
        #expect([IMMessageElement]().summary == "[消息]")
        #expect([IMMessageElement.text("  \n ")].summary == "[消息]")
    }

    @Test("labels with a multi-line detail are flattened too")
    func multilineDetail() {
        #expect([IMMessageElement.file(name: "a\nb.txt")].summary == "[文件] a b.txt")
        #expect([IMMessageElement.custom(desc: "作业\r\n提醒")].summary == "作业 提醒")
    }

    @Test(
        "only a JSON object with roundup_urgent true is urgent",
        arguments: [
            (#"{"roundup_urgent": true}"#, true),
            (#"{"class":"三年级二班","roundup_urgent":true}"#, true),
            (#"  {"roundup_urgent" : true }  "#, true),
            (#"{"roundup_urgent": false}"#, false),
            (#"{"roundup_urgent": 1}"#, false),
            (#"{"roundup_urgent": "true"}"#, false),
            (#"{"nested": {"roundup_urgent": true}}"#, false),
            (#"[{"roundup_urgent": true}]"#, false),
            (#"{"roundup_urgent": true"#, false),
            ("roundup_urgent", false),
            ("", false),
        ] as [(String, Bool)])
    func urgent(cloudCustomData: String, expected: Bool) {
        #expect(IMCallback.isUrgent(cloudCustomData: cloudCustomData) == expected)
    }

    @Test("no CloudCustomData is not urgent")
    func urgentNil() {
        #expect(!IMCallback.isUrgent(cloudCustomData: nil))
    }
}
