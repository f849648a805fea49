import Foundation

/// Turns the raw document into a typed `RoundupConfig`, checking every value and recording each
/// problem with its key path. Absent keys keep their defaults.
struct ConfigBuilder {
    let log: ProblemLog

    init(log: ProblemLog) { self.log = log }

    static let serverKeys = ["host", "port", "admin_token", "max_body_bytes"]
    static let storageKeys = ["path", "url", "pool_size", "instance_timeout", "text_retention", "synchronous"]
    static let wechatKeys = ["app_id", "app_secret", "push_token", "encoding_aes_key", "api_base_url", "dry_run"]
    static let imKeys = [
        "sdk_app_id", "secret_key", "admin_identifier", "callback_token", "allow_unsigned_callbacks", "ingest_from",
        "group_members_ttl", "api_base_url",
    ]

    mutating func build(_ raw: RawConfig?) -> RoundupConfig? {
        var config = RoundupConfig.defaults
        guard let raw else { return nil }

        if let s = raw.server {
            s.rejectUnknown(ConfigBuilder.serverKeys)
            string(s, "host") { v, p in
                if v.isEmpty { log.add(p, "must not be empty") } else { config.server.host = v }
            }
            int(s, "port", 0...65535) { config.server.port = $0 }
            string(s, "admin_token") { v, _ in config.server.adminToken = v }
            int(s, "max_body_bytes", 1024...1_073_741_824) { config.server.maxBodyBytes = $0 }
        }
        if let s = raw.storage {
            s.rejectUnknown(ConfigBuilder.storageKeys)
            string(s, "path") { v, p in
                if v.isEmpty { log.add(p, "must not be empty") } else { config.storage.path = v }
            }
            string(s, "url") { v, p in
                guard !v.isEmpty else { return }
                do throws(ConfigValueError) {
                    config.storage.url = try PostgresURL(parsing: v)
                } catch {
                    log.add(p, error.message)
                }
            }
            int(s, "pool_size", 1...1000) { config.storage.poolSize = $0 }
            duration(s.values["instance_timeout"], "storage.instance_timeout", minimum: .seconds(2)) { config.storage.instanceTimeout = $0 }
            duration(s.values["text_retention"], "storage.text_retention", minimum: .zero) { config.storage.textRetention = $0 }
            choice(s.values["synchronous"], "storage.synchronous", StorageSettings.Synchronous.self) { config.storage.synchronous = $0 }
        }
        if let s = raw.wechat {
            s.rejectUnknown(ConfigBuilder.wechatKeys)
            string(s, "app_id") { v, _ in config.wechat.appID = v }
            string(s, "app_secret") { v, _ in config.wechat.appSecret = v }
            string(s, "push_token") { v, _ in config.wechat.pushToken = v }
            string(s, "encoding_aes_key") { v, p in
                if !v.isEmpty {
                    if v.count != 43 {
                        log.add(p, "must be exactly 43 characters (it has \(v.count))")
                    } else if !v.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) {
                        log.add(p, "must contain only letters A-Z, a-z and digits 0-9")
                    }
                }
                config.wechat.encodingAESKey = v
            }
            url(s, "api_base_url") { config.wechat.apiBaseURL = $0 }
            bool(s, "dry_run") { config.wechat.dryRun = $0 }
        }
        if let s = raw.im {
            s.rejectUnknown(ConfigBuilder.imKeys)
            int(s, "sdk_app_id", 0...Int(UInt32.max)) { config.im.sdkAppID = UInt32($0) }
            string(s, "secret_key") { v, _ in config.im.secretKey = v }
            string(s, "admin_identifier") { v, p in
                if v.isEmpty || v.utf8.count > 32 {
                    log.add(p, "must be an IM UserID of 1 to 32 bytes")
                } else {
                    config.im.adminIdentifier = v
                }
            }
            string(s, "callback_token") { v, _ in config.im.callbackToken = v }
            bool(s, "allow_unsigned_callbacks") { config.im.allowUnsignedCallbacks = $0 }
            choice(s.values["ingest_from"], "im.ingest_from", IMSettings.IngestFrom.self) { config.im.ingestFrom = $0 }
            duration(s.values["group_members_ttl"], "im.group_members_ttl", minimum: .zero) { config.im.groupMembersTTL = $0 }
            url(s, "api_base_url") { config.im.apiBaseURL = $0 }
        }
        if let templates = raw.templates {
            config.templates = buildTemplates(templates)
        }
        if let d = raw.digest {
            config.digest.policy = policy(from: d, base: DigestPolicy())
            if let tz = d.scalars["timezone"] {
                if let zone = TimeZone(identifier: tz) {
                    config.digest.timezone = zone
                } else {
                    log.add("digest.timezone", "\"\(tz)\" is not a time zone name (e.g. Asia/Shanghai)")
                }
            }
            if let v = d.scalars["send_concurrency"] {
                intValue(v, "digest.send_concurrency", 1...1000) { config.digest.sendConcurrency = $0 }
            }
            var profiles: [String: DigestProfile] = [:]
            for (name, raw) in d.profiles {
                if name.trimmingCharacters(in: .whitespaces).isEmpty {
                    log.add("digest.profiles", "a profile name must not be empty")
                    continue
                }
                profiles[name] = profile(from: raw)
            }
            config.digest.profiles = profiles
        }
        return config
    }

    // MARK: - digest

    private func policy(from d: RawDigest, base: DigestPolicy) -> DigestPolicy {
        let profile = profile(from: d)
        let merged = profile.applied(to: base)
        if merged.mode == .sliding && merged.maxWait < merged.window {
            log.add("\(d.path).max_wait", "(\(merged.maxWait)) is shorter than window (\(merged.window)): sliding windows would never slide")
        }
        return merged
    }

    private func profile(from d: RawDigest) -> DigestProfile {
        var p = DigestProfile()
        let path = d.path
        duration(d.scalars["window"], "\(path).window", minimum: .seconds(1)) { p.window = $0 }
        choice(d.scalars["mode"], "\(path).mode", WindowMode.self) { p.mode = $0 }
        duration(d.scalars["max_wait"], "\(path).max_wait", minimum: .seconds(1)) { p.maxWait = $0 }
        if let v = d.scalars["max_messages"] { intValue(v, "\(path).max_messages", 1...10_000) { p.maxMessages = $0 } }
        duration(d.scalars["min_interval"], "\(path).min_interval", minimum: .zero) { p.minInterval = $0 }
        if let v = d.scalars["quiet_hours"] {
            do {
                let q = try QuietHours(parsing: v)
                if (0..<1440).allSatisfy({ q.contains(minuteOfDay: $0) }) {
                    log.add("\(path).quiet_hours", "\"\(v)\" covers the whole day, so nothing could ever be sent")
                } else {
                    p.quietHours = q
                }
            } catch {
                log.add("\(path).quiet_hours", error.message)
            }
        }
        if let v = d.scalars["cancel_on_online"] { boolValue(v, "\(path).cancel_on_online") { p.cancelOnOnline = $0 } }
        duration(d.scalars["offline_lookback"], "\(path).offline_lookback", minimum: .zero) { p.offlineLookback = $0 }
        choice(d.scalars["group_messages"], "\(path).group_messages", GroupMessagePolicy.self) { p.groupMessages = $0 }
        duration(d.scalars["retention"], "\(path).retention", minimum: .seconds(1)) { p.retention = $0 }
        for key in ["urgent_senders", "ignore_senders"] {
            guard let list = d.lists[key] else { continue }
            if let i = list.firstIndex(where: { $0.isEmpty }) {
                log.add("\(path).\(key)[\(i)]", "must not be empty")
            }
            let ids = Set(list.filter { !$0.isEmpty })
            if key == "urgent_senders" { p.urgentSenders = ids } else { p.ignoreSenders = ids }
        }
        return p
    }

    // MARK: - templates

    private func buildTemplates(_ raws: [RawTemplate]) -> [TemplateConfig] {
        var out: [TemplateConfig] = []
        var seen: Set<String> = []
        for raw in raws {
            let path = raw.path
            guard let id = raw.id, !id.isEmpty else {
                log.add("\(path).id", "is required")
                continue
            }
            if !seen.insert(id).inserted {
                log.add("\(path).id", "\"\(id)\" is configured twice")
            }
            var t = TemplateConfig(id: id, fields: [])
            choice(raw.kind, "\(path).kind", TemplateKind.self) { t.kind = $0 }
            choice(raw.miniprogramState, "\(path).miniprogram_state", TemplateConfig.MiniProgramState.self) { t.miniprogramState = $0 }
            if let lang = raw.lang {
                if TemplateConfig.languages.contains(lang) {
                    t.lang = lang
                } else {
                    log.add("\(path).lang", "\"\(lang)\" is not one of \(TemplateConfig.languages.joined(separator: ", "))")
                }
            }
            if let page = raw.page {
                for name in Placeholder.names(in: page) where name != Placeholder.from.rawValue {
                    log.add("\(path).page", "only {{from}} may appear in page, not {{\(name)}}")
                }
                t.page = page
            }
            if !raw.hasFields || raw.fields.isEmpty {
                log.add("\(path).fields", "at least one field is required")
            }
            for (keyword, field) in raw.fields {
                let fieldPath = "\(path).fields.\(keyword)"
                guard let type = KeywordType.of(keyword: keyword) else {
                    let types = KeywordType.allCases.map(\.rawValue).joined(separator: ", ")
                    log.add(fieldPath, "\"\(keyword)\" is not a WeChat keyword: a type (\(types)) followed by its number, like thing1")
                    continue
                }
                guard type.isFittable else {
                    log.add(fieldPath, "\(type.rawValue) fields cannot be filled from messages; choose a template without them")
                    continue
                }
                guard let value = field.value else { continue }
                for name in Placeholder.names(in: value) where Placeholder(rawValue: name) == nil {
                    let known = Placeholder.allCases.map { "{{\($0.rawValue)}}" }.joined(separator: " ")
                    log.add(fieldPath, "{{\(name)}} is not a placeholder (known: \(known))")
                }
                if let fallback = field.fallback {
                    if fallback.isEmpty {
                        log.add("\(fieldPath).fallback", "must not be empty")
                    } else if !Placeholder.names(in: fallback).isEmpty {
                        log.add("\(fieldPath).fallback", "must be literal text: it is used when placeholders cannot fit")
                    } else if FieldFitter.fit(fallback, as: type) != fallback {
                        // `config check` proves every fallback is sent exactly as written.
                        let sent = FieldFitter.fit(fallback, as: type).map { "it would be sent as \"\($0)\"; " } ?? ""
                        log.add(
                            "\(fieldPath).fallback",
                            "\"\(fallback)\" does not fit a \(type.rawValue) field (\(sent)\(FieldFitter.rule(for: type)))")
                    }
                }
                t.fields.append(TemplateField(keyword: keyword, type: type, value: value, fallback: field.fallback))
            }
            out.append(t)
        }
        return out
    }

    // MARK: - scalar parsing

    private func string(_ s: RawScalars, _ key: String, _ apply: (String, String) -> Void) {
        if let v = s.values[key] { apply(v, "\(s.path).\(key)") }
    }

    private func int(_ s: RawScalars, _ key: String, _ range: ClosedRange<Int>, _ apply: (Int) -> Void) {
        if let v = s.values[key] { intValue(v, "\(s.path).\(key)", range, apply) }
    }

    private func bool(_ s: RawScalars, _ key: String, _ apply: (Bool) -> Void) {
        if let v = s.values[key] { boolValue(v, "\(s.path).\(key)", apply) }
    }

    private func url(_ s: RawScalars, _ key: String, _ apply: (String) -> Void) {
        guard let v = s.values[key] else { return }
        let trimmed = v.hasSuffix("/") ? String(v.dropLast()) : v
        if let u = URL(string: trimmed), let scheme = u.scheme, ["http", "https"].contains(scheme), u.host != nil {
            apply(trimmed)
        } else {
            log.add("\(s.path).\(key)", "\"\(v)\" is not an http:// or https:// URL")
        }
    }

    private func intValue(_ v: String, _ path: String, _ range: ClosedRange<Int>, _ apply: (Int) -> Void) {
        guard let i = Int(v.trimmingCharacters(in: .whitespaces)) else {
            log.add(path, "\"\(v)\" is not a whole number")
            return
        }
        guard range.contains(i) else {
            log.add(path, "\(i) is out of range (\(range.lowerBound) to \(range.upperBound))")
            return
        }
        apply(i)
    }

    private func boolValue(_ v: String, _ path: String, _ apply: (Bool) -> Void) {
        switch v.lowercased() {
        case "true", "yes", "on": apply(true)
        case "false", "no", "off": apply(false)
        default: log.add(path, "\"\(v)\" is not true or false")
        }
    }

    private func duration(_ v: String?, _ path: String, minimum: ConfigDuration, _ apply: (ConfigDuration) -> Void) {
        guard let v else { return }
        guard let d = ConfigBuilder.parseDuration(v) else {
            log.add(path, "\"\(v)\" is not a duration (use a number and a unit: 500ms, 30s, 10m, 2h, 7d)")
            return
        }
        guard let d else {
            log.add(path, "\"\(v)\" is too long a duration")
            return
        }
        guard d >= minimum else {
            log.add(path, "must be at least \(minimum)")
            return
        }
        apply(d)
    }

    /// `ConfigDuration(parsing:)` one term at a time, so that a sum too large for 64 bits
    /// (`99999999999d99999999999d`) is refused instead of trapping: nil when the text is not a
    /// duration, `.some(nil)` when it is one but too long.
    static func parseDuration(_ text: String) -> ConfigDuration?? {
        var rest = Substring(text.trimmingCharacters(in: .whitespaces))
        guard !rest.isEmpty else { return nil }
        var total: Int64 = 0
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isASCII && $0.isNumber }
            let unit = rest.dropFirst(digits.count).prefix { $0.isASCII && $0.isLetter }
            let term = String(rest.prefix(digits.count + unit.count))
            guard !digits.isEmpty, ["ms", "s", "m", "h", "d"].contains(unit) else { return nil }
            guard let part = ConfigDuration(parsing: term) else { return .some(nil) }
            let (sum, overflow) = total.addingReportingOverflow(part.milliseconds)
            guard !overflow else { return .some(nil) }
            total = sum
            rest = rest.dropFirst(term.count)
        }
        return ConfigDuration(milliseconds: total)
    }

    private func choice<T: RawRepresentable & CaseIterable>(_ v: String?, _ path: String, _ type: T.Type, _ apply: (T) -> Void)
    where T.RawValue == String {
        guard let v else { return }
        if let c = T(rawValue: v) {
            apply(c)
        } else {
            log.add(path, "\"\(v)\" is not one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }
}
