import Foundation
import Testing

@testable import Roundup

@Suite("Subscribe message body and outcomes")
struct SubscribeMessageTests {
    @Test("the body is WeChat's subscribe/send body: data is a nested object, keys in a fixed order, text unescaped")
    func body() {
        let message = SubscribeMessage(
            touser: "OPENID", templateID: "TEMPLATE_ID", page: "pages/digest/index?id=42", miniprogramState: "formal", lang: "zh_CN",
            data: [
                .init(key: "thing1", value: "今日摘要 3 条新消息"), .init(key: "time2", value: "2019年10月1日 15:01"),
                .init(key: "number3", value: "3"),
            ])
        #expect(
            message.json.serialized
                == #"{"touser":"OPENID","template_id":"TEMPLATE_ID","page":"pages/digest/index?id=42","miniprogram_state":"formal","lang":"zh_CN","data":{"thing1":{"value":"今日摘要 3 条新消息"},"time2":{"value":"2019年10月1日 15:01"},"number3":{"value":"3"}}}"#
        )
        #expect(message.body == Data(message.json.serialized.utf8))
    }

    @Test("a nil or empty page is left out; quotes and newlines are escaped")
    func noPage() {
        for page in [nil, ""] as [String?] {
            let message = SubscribeMessage(
                touser: "o", templateID: "t", page: page, miniprogramState: "trial", lang: "en_US",
                data: [.init(key: "thing1", value: "say \"hi\"\n")])
            #expect(
                message.json.serialized
                    == #"{"touser":"o","template_id":"t","miniprogram_state":"trial","lang":"en_US","data":{"thing1":{"value":"say \"hi\"\n"}}}"#)
        }
    }

    @Test(
        "every errcode maps to its documented outcome",
        arguments: [
            (0, SendOutcome.sent(msgid: "42")),
            (43101, .noCredit),
            (40001, .tokenInvalid(errcode: 40001)), (40014, .tokenInvalid(errcode: 40014)), (42001, .tokenInvalid(errcode: 42001)),
            (-1, .retryable(errcode: "-1", errmsg: "m")), (43108, .retryable(errcode: "43108", errmsg: "m")),
            (45011, .retryable(errcode: "45011", errmsg: "m")),
            (45009, .quotaExhausted),
            (40037, .configError(errcode: 40037, errmsg: "m")), (41030, .configError(errcode: 41030, errmsg: "m")),
            (43107, .configError(errcode: 43107, errmsg: "m")), (48001, .configError(errcode: 48001, errmsg: "m")),
            (40003, .contentError(errcode: 40003, errmsg: "m")), (45168, .contentError(errcode: 45168, errmsg: "m")),
            (47003, .contentError(errcode: 47003, errmsg: "m")), (41001, .contentError(errcode: 41001, errmsg: "m")),
            (99999, .contentError(errcode: 99999, errmsg: "m")),
        ] as [(Int64, SendOutcome)])
    func classify(_ errcode: Int64, _ expected: SendOutcome) {
        #expect(SendOutcome.classify(errcode: errcode, errmsg: "m", msgid: "42") == expected)
    }

    @Test(
        "a token that cannot be had becomes an outcome before WeChat sees the send",
        arguments: [
            (WeChatAPIError.errcode(-1, "busy"), SendOutcome.retryable(errcode: "-1", errmsg: "access token: busy")),
            (.errcode(45011, "minute"), .retryable(errcode: "45011", errmsg: "access token: minute")),
            (.errcode(45009, "quota"), .quotaExhausted),
            (.errcode(40125, "invalid appsecret"), .configError(errcode: 40125, errmsg: "access token: invalid appsecret")),
            (.errcode(40164, "invalid ip"), .configError(errcode: 40164, errmsg: "access token: invalid ip")),
            (.transport("refused"), .retryable(errcode: "token_unavailable", errmsg: "refused")),
            (.badResponse("junk"), .retryable(errcode: "token_unavailable", errmsg: "junk")),
        ] as [(WeChatAPIError, SendOutcome)])
    func tokenErrors(_ error: WeChatAPIError, _ expected: SendOutcome) {
        #expect(SubscribeSender.outcome(forTokenError: error) == expected)
    }
}
