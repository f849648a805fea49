import Testing

@testable import Roundup

/// Real vectors: WeChat's official mini-program examples, and samples A–D from public SDKs.
enum WeChatVectors {
    /// The official mini-program safe-mode example.
    enum Official {
        static let token = "AAAAA"
        static let key = String(repeating: "A", count: 43)
        static let appID = "wxba5fad812f8e6fb9"
        static let requestEncrypt =
            "+qdx1OKCy+5JPCBFWw70tm0fJGb2Jmeia4FCB7kao+/Q5c/ohsOzQHi8khUOb05JCpj0JB4RvQMkUyus8TPxLKJGQqcvZqzDpVzazhZv6JsXUnnR8XGT740XgXZUXQ7vJVnAG+tE8NUd4yFyjPy7GgiaviNrlCTj+l5kdfMuFUPpRSrfMZuMcp3Fn2Pede2IuQrKEYwKSqFIZoNqJ4M8EajAsjLY2km32IIjdf8YL/P50F7mStwntrA2cPDrM1kb6mOcfBgRtWygb3VIYnSeOBrebufAlr7F9mFUPAJGj04="
        static let requestMsg =
            #"{"ToUserName":"gh_97417a04a28d","FromUserName":"o9AgO5Kd5ggOC-bXrbNODIiE3bGY","CreateTime":1714112445,"MsgType":"event","Event":"debug_demo","debug_str":"hello world"}"#
        static let replyEncrypt =
            "ELGduP2YcVatjqIS+eZbp80MNLoAUWvzzyJxgGzxZO/5sAvd070Bs6qrLARC9nVHm48Y4hyRbtzve1L32tmxSQ=="
    }

    /// Sample A: Tencent's WXBizMsgCrypt sample.
    enum SampleA {
        static let token = "spamtest"
        static let key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
        static let appID = "wx2c2769f8efd9abc2"
        static let timestamp = "1409735669"
        static let nonce = "1320562132"
        static let msgSignature = "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
        static let signature = "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a"
        static let encrypt =
            "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE="
        static let msg =
            "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n<FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>\n<CreateTime>1409735668</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[abcdteT]]></Content>\n<MsgId>6054768590064713728</MsgId>\n</xml>"
    }

    /// Sample B: WxJava's deterministic encryption of multibyte text.
    enum SampleB {
        static let key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
        static let appID = "wxb11529c136998cb6"
        static let random = "aaaabbbbccccdddd"
        static let plaintext = "我是中文abcd123"
        static let encrypt = "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="
    }

    /// Sample C: EasyWeChat's decrypt vector, pad 21.
    enum SampleC {
        static let token = "pamtest"
        static let key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
        static let appID = "wxb11529c136998cb6"
        static let timestamp = "1458300676"
        static let nonce = "260774613"
        static let msgSignature = "4f3ad57b6989f09f4eb392acce4f9e93942ed890"
        static let encrypt =
            "rTNFcsut4LfGuAFKEUVVpwcaCOTJzOd9twZdIW910jb3k+iicx2uvhttIZ3Qg9Qgty3BEF2xbOrz6boTfb30dMomcgrkTqdFPwnhqbk+kIQ7rZiwny9D7NUrTgA5kpX3KsZvrXzUZyP2x9YOlxbgm572lmxKvM7HAQQhIQ/p6HBmoY30bGXFK0BtIu1pW9TjhOYrLQoU18nWYjWqDA1ynkmOytpv7QRI1P1+0NoxL0q2zO1DgeSvnE8CZGo/o5Ap/WHK5W2RAsinpzN4/LjPnmB6U01I5XCoJoC0GK/yMZycd2Oh8Nq6+wBkC1U85oy0ktOY4nLvsQMLrourmMGdZHuTbqpeJ8Ao/5PRYJ+WBvRUwPfGKBL2+2IKZF49vAJqkcGWSHGE76ZN2erXeuNazf/o9o3lIE3q739o4c8t9QGPe31GT2Go/rOz1BsrASwvauNulCh+++yz+CQzBIuikA=="
        static let msg =
            "<xml><URL><![CDATA[http://wechat.laravel.so/server]]></URL><ToUserName><![CDATA[asdasdasd]]></ToUserName><FromUserName><![CDATA[asdasdasdsadasd]]></FromUserName><CreateTime>1234567898</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hello]]></Content><MsgId>12345</MsgId></xml>"
    }

    /// Sample D: wechatpy's WeCom-flavoured decrypt and deterministic encrypt-and-sign.
    enum SampleD {
        static let token = "123456"
        static let key = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
        static let appID = "wx49f0ab532d5d035a"
        static let timestamp = "1411525903"
        static let nonce = "461056294"
        static let msgSignature = "74d92dfeb87ba7c714f89d98870ae5eb62dff26d"
        static let encrypt =
            "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0="
        static let replyRandom = "1234567890123456"
        static let replyPlaintext =
            "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n<ToUserName><![CDATA[messense]]></ToUserName>\n<AgentID>1</AgentID>\n<CreateTime>1411525903</CreateTime>\n</xml>"
        static let replyEncrypt =
            "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3"
        static let replyMsgSignature = "407518b7649e86ef23978113f92d27afa9296533"
    }
}

@Suite("WeChat push signatures")
struct PushSignatureTests {
    /// One signature vector: the strings signed and the expected hex.
    struct Vector: Sendable, CustomTestStringConvertible {
        let name: String
        let token: String
        let timestamp: String
        let nonce: String
        let encrypt: String?
        let expected: String
        var testDescription: String { name }
    }

    static let vectors: [Vector] = [
        .init(
            name: "official GET server check", token: "AAAAA", timestamp: "1714036504", nonce: "1514711492", encrypt: nil,
            expected: "f464b24fc39322e44b38aa78f5edd27bd1441696"),
        .init(
            name: "official plaintext push", token: "AAAAA", timestamp: "1714037059", nonce: "486452656", encrypt: nil,
            expected: "899cf89e464efb63f54ddac96b0a0a235f53aa78"),
        .init(
            name: "official safe-mode signature", token: "AAAAA", timestamp: "1714112445", nonce: "415670741", encrypt: nil,
            expected: "6c5c811b55cc85e0e1b54100749188c20beb3f5d"),
        .init(
            name: "official safe-mode msg_signature", token: "AAAAA", timestamp: "1714112445", nonce: "415670741",
            encrypt: WeChatVectors.Official.requestEncrypt, expected: "046e02f8204d34f8ba5fa3b1db94908f3df2e9b3"),
        .init(
            name: "official reply MsgSignature", token: "AAAAA", timestamp: "1713424427", nonce: "415670741",
            encrypt: WeChatVectors.Official.replyEncrypt, expected: "1b9339964ed2e271e7c7b6ff2b0ef902fc94dea1"),
        .init(
            name: "sample A signature", token: WeChatVectors.SampleA.token, timestamp: WeChatVectors.SampleA.timestamp,
            nonce: WeChatVectors.SampleA.nonce, encrypt: nil, expected: WeChatVectors.SampleA.signature),
        .init(
            name: "sample A msg_signature", token: WeChatVectors.SampleA.token, timestamp: WeChatVectors.SampleA.timestamp,
            nonce: WeChatVectors.SampleA.nonce, encrypt: WeChatVectors.SampleA.encrypt,
            expected: WeChatVectors.SampleA.msgSignature),
        .init(
            name: "sample C msg_signature", token: WeChatVectors.SampleC.token, timestamp: WeChatVectors.SampleC.timestamp,
            nonce: WeChatVectors.SampleC.nonce, encrypt: WeChatVectors.SampleC.encrypt,
            expected: WeChatVectors.SampleC.msgSignature),
        .init(
            name: "sample D msg_signature", token: WeChatVectors.SampleD.token, timestamp: WeChatVectors.SampleD.timestamp,
            nonce: WeChatVectors.SampleD.nonce, encrypt: WeChatVectors.SampleD.encrypt,
            expected: WeChatVectors.SampleD.msgSignature),
        .init(
            name: "sample D reply MsgSignature", token: WeChatVectors.SampleD.token,
            timestamp: WeChatVectors.SampleD.timestamp, nonce: WeChatVectors.SampleD.nonce,
            encrypt: WeChatVectors.SampleD.replyEncrypt, expected: WeChatVectors.SampleD.replyMsgSignature),
    ]

    @Test("every published vector signs to its expected hex", arguments: vectors)
    func computes(_ v: Vector) {
        #expect(PushSignature.compute(token: v.token, timestamp: v.timestamp, nonce: v.nonce, encrypt: v.encrypt) == v.expected)
        #expect(PushSignature.verify(v.expected, token: v.token, timestamp: v.timestamp, nonce: v.nonce, encrypt: v.encrypt))
    }

    @Test("a changed timestamp, nonce, token or Encrypt fails verification", arguments: vectors)
    func rejectsChanges(_ v: Vector) {
        #expect(!PushSignature.verify(v.expected, token: v.token + "x", timestamp: v.timestamp, nonce: v.nonce, encrypt: v.encrypt))
        #expect(!PushSignature.verify(v.expected, token: v.token, timestamp: v.timestamp + "1", nonce: v.nonce, encrypt: v.encrypt))
        #expect(!PushSignature.verify(v.expected, token: v.token, timestamp: v.timestamp, nonce: "0" + v.nonce, encrypt: v.encrypt))
        #expect(!PushSignature.verify(v.expected, token: v.token, timestamp: v.timestamp, nonce: v.nonce, encrypt: (v.encrypt ?? "") + "A"))
        #expect(!PushSignature.verify(String(v.expected.dropLast()), token: v.token, timestamp: v.timestamp, nonce: v.nonce, encrypt: v.encrypt))
        #expect(!PushSignature.verify("", token: v.token, timestamp: v.timestamp, nonce: v.nonce, encrypt: v.encrypt))
    }

    @Test("strings sort by bytes, so '+' sorts before digits and digits are not compared as numbers")
    func bytewiseSort() {
        // Numerically 99 < 100, but byte-wise "100" < "99".
        #expect(PushSignature.compute(["99", "100"]) == PushSignature.compute(["100", "99"]))
        #expect(PushSignature.compute(["+a", "1"]) == PushSignature.compute(["1", "+a"]))
        #expect(PushSignature.compute(["99", "100"]) == PushSignature.compute(["10099"]))
    }

    @Test("an uppercase hex signature is accepted")
    func uppercase() {
        #expect(PushSignature.verify("F464B24FC39322E44B38AA78F5EDD27BD1441696", token: "AAAAA", timestamp: "1714036504", nonce: "1514711492"))
    }
}
