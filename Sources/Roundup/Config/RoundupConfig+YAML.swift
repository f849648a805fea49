import Foundation
import Yams

extension RoundupConfig {
    /// The mask printed for a secret that is set (secrets are always printed masked).
    public static let secretMask = "********"

    /// The effective config as YAML, every key present, secrets masked — what
    /// `roundup config check` prints.
    public func effectiveYAML() -> String {
        func mask(_ s: String) -> String { s.isEmpty ? "" : RoundupConfig.secretMask }
        func str(_ s: String) -> Node { Node(s, Tag(.str), s.isEmpty ? .doubleQuoted : .any) }
        func lit(_ s: String) -> Node { Node(s) }
        func list(_ items: [String]) -> Node { .sequence(Node.Sequence(items.sorted().map(str), Tag(.seq), .flow)) }
        func map(_ pairs: [(String, Node)]) -> Node { .mapping(Node.Mapping(pairs.map { (Node($0.0), $0.1) })) }

        func policyPairs(_ p: DigestPolicy) -> [(String, Node)] {
            [
                ("window", lit(p.window.description)), ("mode", lit(p.mode.rawValue)),
                ("max_wait", lit(p.maxWait.description)), ("max_messages", lit(String(p.maxMessages))),
                ("min_interval", lit(p.minInterval.description)), ("quiet_hours", str(p.quietHours.description)),
            ]
        }
        func profilePairs(_ p: DigestProfile) -> [(String, Node)] {
            var out: [(String, Node)] = []
            if let v = p.window { out.append(("window", lit(v.description))) }
            if let v = p.mode { out.append(("mode", lit(v.rawValue))) }
            if let v = p.maxWait { out.append(("max_wait", lit(v.description))) }
            if let v = p.maxMessages { out.append(("max_messages", lit(String(v)))) }
            if let v = p.minInterval { out.append(("min_interval", lit(v.description))) }
            if let v = p.quietHours { out.append(("quiet_hours", str(v.description))) }
            if let v = p.cancelOnOnline { out.append(("cancel_on_online", lit(String(v)))) }
            if let v = p.offlineLookback { out.append(("offline_lookback", lit(v.description))) }
            if let v = p.groupMessages { out.append(("group_messages", lit(v.rawValue))) }
            if let v = p.retention { out.append(("retention", lit(v.description))) }
            if let v = p.urgentSenders { out.append(("urgent_senders", list(Array(v)))) }
            if let v = p.ignoreSenders { out.append(("ignore_senders", list(Array(v)))) }
            return out
        }

        let p = digest.policy
        let root = map([
            ("server", map([
                ("host", str(server.host)), ("port", lit(String(server.port))),
                ("admin_token", str(mask(server.adminToken))), ("max_body_bytes", lit(String(server.maxBodyBytes))),
            ])),
            ("storage", map([
                ("path", str(storage.path)), ("url", str(mask(storage.url?.description ?? ""))),
                ("pool_size", lit(String(storage.poolSize))), ("instance_timeout", lit(storage.instanceTimeout.description)),
                ("text_retention", lit(storage.textRetention.description)), ("synchronous", lit(storage.synchronous.rawValue)),
            ])),
            ("wechat", map([
                ("app_id", str(wechat.appID)), ("app_secret", str(mask(wechat.appSecret))),
                ("push_token", str(mask(wechat.pushToken))), ("encoding_aes_key", str(mask(wechat.encodingAESKey))),
                ("api_base_url", str(wechat.apiBaseURL)), ("dry_run", lit(String(wechat.dryRun))),
            ])),
            ("im", map([
                ("sdk_app_id", lit(String(im.sdkAppID))), ("secret_key", str(mask(im.secretKey))),
                ("admin_identifier", str(im.adminIdentifier)), ("callback_token", str(mask(im.callbackToken))),
                ("allow_unsigned_callbacks", lit(String(im.allowUnsignedCallbacks))),
                ("ingest_from", lit(im.ingestFrom.rawValue)), ("group_members_ttl", lit(im.groupMembersTTL.description)),
                ("api_base_url", str(im.apiBaseURL)),
            ])),
            ("templates", .sequence(Node.Sequence(templates.map { t in
                map([
                    ("id", str(t.id)), ("kind", lit(t.kind.rawValue)), ("page", str(t.page)),
                    ("miniprogram_state", lit(t.miniprogramState.rawValue)), ("lang", lit(t.lang)),
                    ("fields", map(t.fields.map { f in
                        f.fallback.map { (f.keyword, map([("value", str(f.value)), ("fallback", str($0))])) }
                            ?? (f.keyword, str(f.value))
                    })),
                ])
            }))),
            ("digest", map(policyPairs(p) + [
                ("timezone", lit(digest.timezone.identifier)),
                ("cancel_on_online", lit(String(p.cancelOnOnline))),
                ("offline_lookback", lit(p.offlineLookback.description)),
                ("group_messages", lit(p.groupMessages.rawValue)),
                ("retention", lit(p.retention.description)),
                ("urgent_senders", list(Array(p.urgentSenders))),
                ("ignore_senders", list(Array(p.ignoreSenders))),
                ("send_concurrency", lit(String(digest.sendConcurrency))),
                ("profiles", map(digest.profiles.keys.sorted().map { ($0, map(profilePairs(digest.profiles[$0]!))) })),
            ])),
        ])
        return (try? Yams.serialize(node: root, indent: 2, width: -1, allowUnicode: true)) ?? ""
    }
}
