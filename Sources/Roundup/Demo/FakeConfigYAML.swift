/// Config sections that aim Roundup at the fakes of the remote APIs in `Demo/`, shared by the
/// demo, the benchmark and the tests that run the real service against the fakes. Each section
/// starts at column 0 and ends with a newline, ready to be placed in a YAML document.
public enum FakeConfigYAML {
    /// The `wechat:` section for `wechat` listening at `baseURL`.
    public static func wechat(_ wechat: FakeWeChatServer, baseURL: String, pushToken: String? = nil) -> String {
        var lines = ["wechat:", "  app_id: \"\(wechat.appID)\"", "  app_secret: \"\(wechat.secret)\""]
        if let pushToken { lines.append("  push_token: \"\(pushToken)\"") }
        lines.append("  api_base_url: \"\(baseURL)\"")
        return lines.joined(separator: "\n") + "\n"
    }

    /// The `im:` section for `im` listening at `baseURL`, with callbacks signed by `callbackToken`.
    public static func im(_ im: FakeIMServer, baseURL: String, callbackToken: String) -> String {
        """
        im:
          sdk_app_id: \(im.sdkAppID)
          secret_key: "\(im.secretKey)"
          admin_identifier: "\(im.adminIdentifier)"
          callback_token: "\(callbackToken)"
          api_base_url: "\(baseURL)"

        """
    }

    /// A `templates:` section with one one-time template: the four fields of the demo's
    /// "new messages" template, the chat page as its link.
    public static func template(id: String) -> String {
        """
        templates:
          - id: \(id)
            kind: one_time
            page: "pages/chat/index?peer={{from}}"
            fields:
              thing1: "{{first_sender}}等{{sender_count}}人"
              number2: "{{count}}"
              thing3: { value: "{{preview}}", fallback: "您有新消息" }
              time4: "{{last_time}}"

        """
    }
}
