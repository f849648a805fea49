import Foundation
import Testing

@testable import Roundup

@Suite("IM callback decoding")
struct IMCallbackDecodingTests {
    /// Decodes a fixture under `Fixtures/im/`, with no query command.
    static func decodeFixture(_ name: String, command: String? = nil) throws -> IMCallback {
        let body = try Data(contentsOf: TestSupport.fixture("im/\(name)"))
        return try IMCallback.decode(command: command, body: body)
    }

    /// Decodes a literal body.
    static func decode(_ json: String, command: String? = nil) throws(IMCallbackDecodingError) -> IMCallback {
        try IMCallback.decode(command: command, body: Data(json.utf8))
    }

    static let expectations: [(String, IMCallback, String?)] = [
        ("state-login.json", .stateChange(IMStateChange(userID: "parent_001", action: .login, reason: "Register", eventTime: 1_741_075_200_123)), nil),
        ("state-disconnect.json", .stateChange(IMStateChange(userID: "parent_001", action: .disconnect, reason: "LinkClose", eventTime: 1_741_075_530_456)), nil),
        ("state-logout.json", .stateChange(IMStateChange(userID: "parent_002", action: .logout, reason: "Unregister", eventTime: 1_741_076_000_000)), nil),
        ("state-string-eventtime.json", .stateChange(IMStateChange(userID: "parent_003", action: .disconnect, reason: "TimeOut", eventTime: 1_741_075_800_789)), nil),
        ("state-custom-status.json", .stateChange(IMStateChange(userID: "teacher_zhang", action: .other("CustomStatusChange"), eventTime: 1_741_075_900_000)), nil),
        (
            "c2c-before-send.json",
            .c2cBeforeSend(IMC2CMessage(
                from: "teacher_zhang", to: "parent_001", msgSeq: 48374, msgRandom: 2_837_546, msgTime: 1_741_075_500,
                msgKey: "48374_2837546_1741075500", msgID: "144115233406643804-1741075500-2837546", onlineOnly: false,
                sendMsgResult: nil, elements: [.text("小明今天数学作业没有交，请家长督促一下。")], cloudCustomData: "")),
            "小明今天数学作业没有交，请家长督促一下。"
        ),
        (
            "c2c-after-send.json",
            .c2cAfterSend(IMC2CMessage(
                from: "teacher_zhang", to: "parent_001", msgSeq: 48375, msgRandom: 2_837_547, msgTime: 1_741_075_560,
                msgKey: "48375_2837547_1741075560", msgID: "144115233406643804-1741075560-2837547", sendMsgResult: 0,
                elements: [.text("明天上午九点开家长会，\n请准时到校。")],
                cloudCustomData: #"{"roundup_urgent": true, "class": "三年级二班"}"#)),
            "明天上午九点开家长会， 请准时到校。"
        ),
        (
            "c2c-after-send-mixed.json",
            .c2cAfterSend(IMC2CMessage(
                from: "teacher_li", to: "parent_002", msgSeq: 1203, msgRandom: 99_182_311, msgTime: 1_741_076_100,
                msgKey: "1203_99182311_1741076100", sendMsgResult: 0,
                elements: [
                    .image, .text("这是春游的照片\t请查收"), .file(name: "春游安全须知.pdf"), .custom(desc: "作业提醒"),
                    .relay(title: "三年级二班群聊的聊天记录"), .unknown(type: "TIMGroupTipElem"), .sound, .video,
                    .location(desc: "实验小学东门"), .face,
                ])),
            "[图片] 这是春游的照片 请查收 [文件] 春游安全须知.pdf 作业提醒 [聊天记录] 三年级二班群聊的聊天记录 [消息] [语音] [视频] [位置] 实验小学东门 [表情]"
        ),
        (
            "c2c-after-send-failed.json",
            .c2cAfterSend(IMC2CMessage(
                from: "teacher_zhang", to: "parent_009", msgSeq: 48380, msgRandom: 11, msgTime: 1_741_075_800,
                msgKey: "48380_11_1741075800", sendMsgResult: 20003, elements: [.text("请查看成绩单")])),
            "请查看成绩单"
        ),
        (
            "c2c-after-send-online-only.json",
            .c2cAfterSend(IMC2CMessage(
                from: "teacher_zhang", to: "parent_001", msgSeq: 48381, msgRandom: 12, msgTime: 1_741_075_801,
                msgKey: "48381_12_1741075801", onlineOnly: true, sendMsgResult: 0, elements: [.custom(desc: "")])),
            "[自定义消息]"
        ),
        (
            "c2c-msg-report.json",
            .msgReport(IMReadReport(reportAccount: "parent_001", peerAccount: "teacher_zhang", lastReadTime: 1_741_075_600, eventTime: 1_741_075_601_234)),
            nil
        ),
        ("c2c-withdraw.json", .withdraw(IMWithdrawal(from: "teacher_zhang", to: "parent_001", msgKey: "48375_2837547_1741075560")), nil),
        (
            "group-after-send.json",
            .groupAfterSend(IMGroupMessage(
                groupID: "@TGS#2CLASS3B", groupType: "Public", from: "teacher_zhang", operatorAccount: "teacher_zhang",
                random: 2211, msgSeq: 731, msgTime: 1_741_077_000, elements: [.text("@王明妈妈 @李华爸爸 请明天带齐春游用品。")],
                cloudCustomData: "", eventTime: 1_741_077_000_321, atAll: false, mentioned: ["parent_001", "parent_002"])),
            "@王明妈妈 @李华爸爸 请明天带齐春游用品。"
        ),
        (
            "group-after-send-at-all.json",
            .groupAfterSend(IMGroupMessage(
                groupID: "@TGS#2CLASS3B", groupType: "Public", from: "principal_office", operatorAccount: "administrator",
                random: 9001, msgSeq: 732, msgTime: 1_741_077_300, elements: [.text("@所有人 因天气原因，明天停课一天。")],
                cloudCustomData: #"{"roundup_urgent":true}"#, eventTime: 1_741_077_300_999, atAll: true, mentioned: [])),
            "@所有人 因天气原因，明天停课一天。"
        ),
        (
            "group-after-send-avchatroom.json",
            .groupAfterSend(IMGroupMessage(
                groupID: "@TGS#aLIVECLASS", groupType: "AVChatRoom", from: "parent_005", operatorAccount: "parent_005",
                random: 77, msgSeq: 15002, msgTime: 1_741_078_000, elements: [.face], eventTime: 1_741_078_000_100)),
            "[表情]"
        ),
        (
            "group-after-send-topic.json",
            .groupAfterSend(IMGroupMessage(
                groupID: "@TGS#_@TGS#cSCHOOLCOMM", groupType: "Community", from: "teacher_wang", operatorAccount: "teacher_wang",
                random: 5, msgSeq: 42, msgTime: 1_741_079_000, elements: [.text("运动会报名截止到周五")],
                eventTime: 1_741_079_000_000, topicID: "@TGS#_@TGS#cSCHOOLCOMM@TOPIC#_sports")),
            "运动会报名截止到周五"
        ),
        ("unknown-command.json", .unknown(command: "Group.CallbackAfterNewMemberJoin"), nil),
    ]

    @Test("every fixture decodes to the expected callback and summary", arguments: expectations)
    func fixtures(name: String, expected: IMCallback, summary: String?) throws {
        let decoded = try Self.decodeFixture(name)
        #expect(decoded == expected)
        switch decoded {
        case .c2cBeforeSend(let message), .c2cAfterSend(let message): #expect(message.summary == summary)
        case .groupAfterSend(let message): #expect(message.summary == summary)
        default: #expect(summary == nil)
        }
    }

    @Test("every fixture in Fixtures/im has an expectation")
    func fixturesCovered() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: TestSupport.fixture("im").path).filter { $0.hasSuffix(".json") }
        #expect(Set(names) == Set(Self.expectations.map(\.0)))
    }

    @Test("the body's CallbackCommand wins over the query's; the query's is used when the body has none")
    func commandPrecedence() throws {
        let decoded = try Self.decodeFixture("c2c-msg-report.json", command: "State.StateChange")
        #expect(decoded.command == "C2C.CallbackAfterMsgReport")
        let body = #"{"Info":{"Action":"Login","To_Account":"parent_001"},"EventTime":5}"#
        #expect(try Self.decode(body, command: "State.StateChange")
            == .stateChange(IMStateChange(userID: "parent_001", action: .login, eventTime: 5)))
        #expect(try Self.decode(#"{"CallbackCommand":"","Info":{"To_Account":"p"}}"#, command: "State.StateChange").command == "State.StateChange")
        #expect(try Self.decode("{}", command: nil) == .unknown(command: ""))
        #expect(try Self.decode("{}", command: "Foo.Bar") == .unknown(command: "Foo.Bar"))
    }

    @Test("urgent fixtures are flagged from CloudCustomData")
    func urgentFixtures() throws {
        guard case .c2cAfterSend(let message) = try Self.decodeFixture("c2c-after-send.json") else {
            Issue.record("not a C2C message")
            return
        }
        #expect(message.isUrgent)
        guard case .groupAfterSend(let group) = try Self.decodeFixture("group-after-send-at-all.json") else {
            Issue.record("not a group message")
            return
        }
        #expect(group.isUrgent)
        #expect(group.atAll)
        guard case .groupAfterSend(let live) = try Self.decodeFixture("group-after-send-avchatroom.json") else {
            Issue.record("not a group message")
            return
        }
        #expect(live.isAVChatRoom && !live.isUrgent)
    }

    @Test(
        "numbers may arrive as strings, floats or be missing",
        arguments: [
            (#""MsgSeq":"7","MsgRandom":8,"MsgTime":"1741075500""#, Int64?(7), Int64?(8), Int64(1_741_075_500)),
            (#""MsgSeq":7.0,"MsgTime":1741075500.0"#, 7, nil, 1_741_075_500),
            (#""MsgSeq":null,"MsgTime":" 1741075500 ""#, nil, nil, 1_741_075_500),
            (#""EventTime":"1741075500999""#, nil, nil, 1_741_075_500),
            (#""MsgSeq":true,"MsgTime":{}"#, nil, nil, 0),
        ] as [(String, Int64?, Int64?, Int64)])
    func lenientNumbers(fields: String, msgSeq: Int64?, msgRandom: Int64?, msgTime: Int64) throws {
        let body = #"{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"a","To_Account":"b","MsgKey":"k",\#(fields)}"#
        guard case .c2cAfterSend(let message) = try Self.decode(body) else {
            Issue.record("not a C2C message")
            return
        }
        #expect(message.msgSeq == msgSeq)
        #expect(message.msgRandom == msgRandom)
        #expect(message.msgTime == msgTime)
        #expect(message.sendMsgResult == 0)
        #expect(message.elements.isEmpty && message.summary == "[消息]")
        #expect(!message.onlineOnly)
    }

    @Test("OnlineOnlyFlag may be a number, a boolean or a string", arguments: ["1", "true", "\"1\""])
    func onlineOnlyFlag(flag: String) throws {
        let body = #"{"CallbackCommand":"C2C.CallbackBeforeSendMsg","From_Account":"a","To_Account":"b","MsgKey":"k","OnlineOnlyFlag":\#(flag)}"#
        guard case .c2cBeforeSend(let message) = try Self.decode(body) else {
            Issue.record("not a C2C message")
            return
        }
        #expect(message.onlineOnly)
        #expect(message.sendMsgResult == nil)
    }

    @Test("odd MsgBody shapes never fail: non-arrays, non-objects, missing content, wrong content types")
    func oddBodies() throws {
        let cases: [(String, [IMMessageElement])] = [
            (#""MsgBody":"hello""#, []),
            (#""MsgBody":{"MsgType":"TIMTextElem"}"#, []),
            (#""MsgBody":[1,"x",null,{"MsgType":"TIMTextElem"}]"#, [.unknown(type: ""), .unknown(type: ""), .unknown(type: ""), .text("")]),
            (#""MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":12}}]"#, [.text("12")]),
            (#""MsgBody":[{"MsgType":"TIMFileElem","MsgContent":[]}]"#, [.file(name: nil)]),
            (#""MsgBody":[{"MsgContent":{"Text":"x"}}]"#, [.unknown(type: "")]),
            (#""MsgBody":[{"MsgType":"TIMNewElem2030","MsgContent":{"Foo":[1,{"a":2}]}}]"#, [.unknown(type: "TIMNewElem2030")]),
        ]
        for (fields, elements) in cases {
            let body = #"{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"a","To_Account":"b","MsgKey":"k",\#(fields)}"#
            guard case .c2cAfterSend(let message) = try Self.decode(body) else {
                Issue.record("not a C2C message: \(fields)")
                continue
            }
            #expect(message.elements == elements, "\(fields)")
        }
    }

    @Test("GroupAtInfo entries: @all flags, repeats and unusable entries")
    func mentions() throws {
        let body = #"""
            {"CallbackCommand":"Group.CallbackAfterSendMsg","GroupId":"g","From_Account":"t","MsgSeq":"3","MsgTime":1,
             "GroupAtInfo":[{"GroupAtAllFlag":"0","GroupAt_Account":"p1"},7,{"GroupAtAllFlag":0},{"GroupAt_Account":"p2"},
                            {"GroupAtAllFlag":1,"GroupAt_Account":"@all"},{"GroupAt_Account":"p1"}]}
            """#
        guard case .groupAfterSend(let message) = try Self.decode(body) else {
            Issue.record("not a group message")
            return
        }
        #expect(message.atAll)
        #expect(message.mentioned == ["p1", "p2"])
        #expect(message.msgSeq == 3)
        #expect(message.groupType == "" && !message.isAVChatRoom)
    }

    @Test(
        "a body that is not a JSON object is refused",
        arguments: [
            ("", IMCallbackDecodingError.invalidJSON), ("{", .invalidJSON), ("not json", .invalidJSON),
            ("[]", .notAnObject), ("\"State.StateChange\"", .notAnObject), ("42", .notAnObject), ("null", .notAnObject),
        ])
    func notAnObject(body: String, expected: IMCallbackDecodingError) {
        #expect(throws: expected) { try Self.decode(body, command: "State.StateChange") }
    }

    @Test(
        "a body without the fields its command cannot do without is refused",
        arguments: [
            ("State.StateChange", #"{"EventTime":1}"#, "Info"),
            ("State.StateChange", #"{"Info":"Login"}"#, "Info"),
            ("State.StateChange", #"{"Info":{"Action":"Login"}}"#, "Info.To_Account"),
            ("State.StateChange", #"{"Info":{"Action":"Login","To_Account":""}}"#, "Info.To_Account"),
            ("C2C.CallbackAfterSendMsg", #"{"From_Account":"a","To_Account":"b"}"#, "MsgKey"),
            ("C2C.CallbackAfterSendMsg", #"{"From_Account":"a","MsgKey":"k"}"#, "To_Account"),
            ("C2C.CallbackBeforeSendMsg", #"{"To_Account":"b","MsgKey":"k"}"#, "From_Account"),
            ("C2C.CallbackAfterMsgReport", #"{"Report_Account":"a","Peer_Account":"b"}"#, "LastReadTime"),
            ("C2C.CallbackAfterMsgReport", #"{"Peer_Account":"b","LastReadTime":1}"#, "Report_Account"),
            ("C2C.CallbackAfterMsgWithDraw", #"{"From_Account":"a","To_Account":"b"}"#, "MsgKey"),
            ("Group.CallbackAfterSendMsg", #"{"From_Account":"a","MsgSeq":1}"#, "GroupId"),
            ("Group.CallbackAfterSendMsg", #"{"GroupId":"g","From_Account":"a","MsgSeq":"x"}"#, "MsgSeq"),
        ])
    func missingFields(command: String, body: String, field: String) {
        #expect(throws: IMCallbackDecodingError.missingField(command: command, field: field)) {
            try Self.decode(body, command: command)
        }
    }

    @Test("errors read as one sentence naming the command and field")
    func descriptions() {
        let error = IMCallbackDecodingError.missingField(command: "C2C.CallbackAfterSendMsg", field: "MsgKey")
        #expect(error.description == "the C2C.CallbackAfterSendMsg callback body has no usable MsgKey")
        #expect(IMCallbackDecodingError.notAnObject.description == "the callback body is not a JSON object")
    }

    @Test("a withdrawal without From_Account is still usable")
    func withdrawWithoutSender() throws {
        #expect(try Self.decode(#"{"CallbackCommand":"C2C.CallbackAfterMsgWithDraw","To_Account":"b","MsgKey":"k"}"#)
            == .withdraw(IMWithdrawal(from: "", to: "b", msgKey: "k")))
    }

    @Test("a state change without EventTime has event time 0; actions match case-insensitively and unknown ones are kept")
    func stateDefaults() throws {
        #expect(try Self.decode(#"{"CallbackCommand":"State.StateChange","Info":{"To_Account":"p"}}"#)
            == .stateChange(IMStateChange(userID: "p", action: .other(""), eventTime: 0)))
        #expect(IMStateAction("Login") == .login && IMStateAction("LOGOUT") == .logout)
        #expect(IMStateAction("CustomStatusChange") == .other("CustomStatusChange"))
    }

    @Test("the handled commands are exactly the six documented ones")
    func commands() {
        #expect(IMCallbackCommand.allCases.count == 6)
        #expect(IMCallbackCommand(rawValue: "C2C.CallbackAfterMsgWithDraw") == .withdraw)
    }
}
