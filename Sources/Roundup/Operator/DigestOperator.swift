import Foundation

/// The digest commands (`pending`, `show`, `explain`, `flush`, `cancel`, `history`,
/// `dead`, `retry`, `stats`): the store calls, the checks and what they print. The CLI only
/// parses arguments and prints; failures are `OperatorFailure`s (exit 1).
public struct DigestOperator: Sendable {
    public let store: RoundupStore
    public let config: RoundupConfig
    public let now: @Sendable () -> Timestamp

    /// States `history` lists: every way a digest can end, plus the two that wait for an operator.
    public static let historyStates: [DigestState] = [.sent, .dryRun, .cancelled, .expired, .dead, .inDoubt]

    public init(store: RoundupStore, config: RoundupConfig, now: @escaping @Sendable () -> Timestamp) {
        self.store = store
        self.config = config
        self.now = now
    }

    /// Times as this command shows them, fixed at one instant.
    func timeView() -> OperatorTime { OperatorTime(now: now(), timeZone: config.digest.timezone) }

    // MARK: - pending

    /// `pending`: one row per open or held digest.
    public func pending() throws -> Report {
        let digests = try store.digestSummaries(states: [.open, .held])
        let t = timeView()
        let rows = digests.map { d -> [String] in
            [d.imUserID, d.name ?? "-", d.openidBound ? "yes" : "no", String(d.messages), d.senders.joined(separator: "、"),
             d.firstAt.map(t.clock) ?? "-", d.state == .open ? d.dueAt.map(t.relative) ?? "-" : "-", Self.stateLabel(d)]
        }
        let table = TextTable(headers: ["USER", "NAME", "BOUND", "MSGS", "FROM", "FIRST", "DUE", "STATE"], rows: rows, shrinkable: [4, 1, 0])
        let text = digests.isEmpty ? "no open or held digests" : table.render() + "\n" + plural(digests.count, "digest")
        return Report(key: "digests", data: .array(digests.map(\.json)), text: text)
    }

    /// `open`, `held:no_credit`, `cancelled:operator`: short enough for an 80-column table.
    static func stateLabel(_ d: DigestSummary) -> String {
        d.reason.map { "\(d.state.rawValue):\($0.rawValue)" } ?? d.state.rawValue
    }

    // MARK: - show

    /// The subscribe/send body a digest would produce, and which template it used.
    public struct BodyPreview: Sendable, Equatable {
        public var templateID: String?
        public var body: String?
        /// One sentence: which template and why, or why there is no body.
        public var note: String
    }

    /// `show USER`: the open or held digest's messages, decision log and the exact body it would send.
    public func show(_ user: String) throws -> Report {
        let t = timeView()
        guard let d = try store.activeDigestSummary(for: user) else {
            let known = try store.isKnown(user: user)
            var text = known ? "\(user) has no open or held digest; nothing would be sent now."
                : "Roundup has never seen \(user); nothing is pending."
            let stuck = try store.recentDigestSummaries(states: [.sending, .inDoubt, .dead], user: user, limit: 5)
            if !stuck.isEmpty {
                text += "\n" + stuck.map { "digest #\($0.id) is \($0.state.rawValue); see roundup explain \(user)" }.joined(separator: "\n")
            }
            return Report(fields: [("digest", .null), ("messages", .array([])), ("log", .array([])), ("body", .null), ("template_id", .null)],
                          text: text)
        }
        let messages = try store.digestMessages(d.id)
        let log = try store.digestLog(d.id)
        let preview = try bodyPreview(d, messages: messages, at: t.now)

        var lines: [String] = []
        let who = d.name.map { "\(d.imUserID) (\($0))" } ?? d.imUserID
        let status = d.state == .open ? "open, due \(d.dueAt.map(t.clockAndRelative) ?? "-")"
            : "held (\(d.reason?.rawValue ?? "?"))\(d.heldSince.map { " since \(t.clock($0))" } ?? "")"
        lines.append("digest #\(d.id) for \(who): \(status)")
        lines.append("openid bound: \(d.openidBound ? "yes" : "no"); \(plural(d.messages, "message")) from "
                     + "\(d.senders.isEmpty ? "nobody" : d.senders.joined(separator: "、")); first at \(d.firstAt.map(t.clock) ?? "-")")
        lines.append("")
        let messageRows = messages.map { m in
            [t.clock(Timestamp(seconds: m.msgTime)), Self.senderName(m), m.summary.isEmpty ? "(text erased)" : m.summary]
        }
        lines.append(messages.isEmpty ? "no pending messages"
                     : TextTable(headers: ["TIME", "FROM", "MESSAGE"], rows: messageRows, shrinkable: [2, 1]).render())
        lines.append("")
        lines.append("decision log:")
        lines.append(TextTable(headers: ["TIME", "EVENT", "DETAIL"], rows: log.map { [t.clock($0.at), $0.kind, $0.detail] }, shrinkable: [2]).render())
        lines.append("")
        lines.append(preview.note)
        if let body = preview.body { lines.append(body) }

        let messageJSON = JSONValue.array(messages.map { m in
            .object([
                ("id", .int(m.id)), ("sender", .string(m.sender)), ("sender_name", .string(Self.senderName(m))),
                ("msg_time", .string(Timestamp(seconds: m.msgTime).rfc3339)), ("summary", .string(m.summary)),
            ])
        })
        let logJSON = JSONValue.array(log.map { .object([("at", .string($0.at.rfc3339)), ("kind", .string($0.kind)), ("detail", .string($0.detail))]) })
        return Report(
            fields: [("digest", d.json), ("messages", messageJSON), ("log", logJSON), ("body", .string(preview.body)),
                     ("template_id", .string(preview.templateID))],
            text: lines.joined(separator: "\n"))
    }

    /// A sender as digests name them: bound name, else group NameCard, else IM id.
    static func senderName(_ m: DigestMessageRow) -> String { m.senderName ?? m.senderNameCard ?? m.sender }

    /// The body the engine would send now: the first template in config order this openid may
    /// use (as the scheduler chooses); for a held digest, or when no template is
    /// usable yet, the first configured template, as it would be once the hold is lifted.
    public func bodyPreview(_ d: DigestSummary, messages: [DigestMessageRow], at now: Timestamp) throws -> BodyPreview {
        guard !messages.isEmpty else { return BodyPreview(templateID: nil, body: nil, note: "no body: no messages are left to render") }
        guard let first = config.templates.first else {
            return BodyPreview(templateID: nil, body: nil, note: "no body: no template is configured")
        }
        let user = try store.user(d.imUserID)
        let pauses = try store.sendPauses()
        var template = first
        var note: String
        if d.state == .open, let openid = user?.openid, let usable = try usableTemplate(openid: openid, user: d.imUserID, pauses: pauses) {
            template = usable
            note = "body it would send now (template \(usable.id))"
        } else if d.state == .held {
            note = "body it would send once the hold is lifted (first configured template \(first.id))"
        } else {
            note = "body it would send once a template is usable (first configured template \(first.id))"
        }
        let input = RenderInput(
            recipientName: user?.name,
            messages: messages.map {
                RenderMessage(sender: $0.sender, senderName: $0.senderName, senderNameCard: $0.senderNameCard, msgTime: $0.msgTime,
                              receivedOrder: $0.id, summary: $0.summary)
            },
            now: now.date, timeZone: config.digest.timezone)
        switch Renderer.render(input, template: template) {
        case .ok(let rendered):
            if user?.openid == nil { note += "; touser is a placeholder: no openid is bound" }
            note += ":"
            return BodyPreview(templateID: template.id, body: rendered.body(touser: user?.openid ?? Self.unboundPlaceholder), note: note)
        case .unfit(let keyword):
            return BodyPreview(templateID: template.id, body: nil,
                               note: "no body: field \(keyword) of template \(template.id) has no value or fallback that fits; sending would make the digest dead with errcode render:\(keyword)")
        }
    }

    /// `touser` in a shown body when the user has no openid yet.
    public static let unboundPlaceholder = "(no openid bound)"

    /// The template the scheduler would choose for this openid now (`DigestLifecycle.chooseTemplate`), if any.
    func usableTemplate(openid: String, user: String, pauses: SendPauses) throws -> TemplateConfig? {
        let credits = Dictionary(try store.credits(openid: openid).map { ($0.templateID, $0) }, uniquingKeysWith: { a, _ in a })
        if case .use(let t) = DigestLifecycle(config: config, now: now()).chooseTemplate(openid: openid, user: user, credits: credits, pauses: pauses) {
            return t
        }
        return nil
    }

    // MARK: - flush

    /// `flush USER… [--force]` / `flush --all`: open digests due now. Every named
    /// user is checked first; if any has no open digest, nothing changes.
    public func flush(users: [String], all: Bool, force: Bool) throws -> Report {
        let t = timeView()
        var targets: [String] = []
        if all {
            targets = try store.digestSummaries(states: [.open]).map(\.imUserID)
        } else {
            for user in users where !targets.contains(user) {
                guard let d = try store.activeDigestSummary(for: user) else {
                    throw OperatorFailure("\(user) has no open digest to flush.")
                }
                if d.state == .held { throw OperatorFailure(try heldFlushRefusal(d)) }
                targets.append(user)
            }
        }
        var flushed: [DigestSummary] = []
        var lines: [String] = []
        let note = "flushed by the operator (roundup flush\(force ? " --force: quiet hours skipped" : ""))"
        for (user, outcome) in zip(targets, try store.flushDigests(users: targets, at: t.now, force: force, now: t.now, note: note)) {
            switch outcome {
            case .flushed(let d):
                flushed.append(d)
                var line = "flushed \(user) (digest #\(d.id), \(plural(d.messages, "message"))): due now"
                if let quiet = try quietHoursNote(user: user, force: force, at: t) { line += "; \(quiet)" }
                lines.append(line)
            case .held(let d):
                if !all { throw OperatorFailure(try heldFlushRefusal(d)) }
            case .noDigest:
                if !all { throw OperatorFailure("\(user) has no open digest to flush.") }
            }
        }
        let text = flushed.isEmpty ? "no open digests to flush"
            : (lines + ["a running roundup serve sends \(flushed.count == 1 ? "it" : "them") within a second"]).joined(separator: "\n")
        return Report(key: "digests", data: .array(flushed.map(\.json)), text: text)
    }

    /// Why a held digest cannot be flushed, and when it will go.
    func heldFlushRefusal(_ d: DigestSummary) throws -> String {
        let who = d.name ?? d.imUserID
        let lift: String
        switch d.reason {
        case .unbound: lift = "it will go as soon as an openid is bound to \(d.imUserID)"
        case .noCredit: lift = "it will go as soon as \(who) accepts a subscription"
        case .configError: lift = "fix the template and reload, or run roundup retry \(d.id)"
        default: lift = "it will go when the hold is lifted"
        }
        return "\(d.imUserID)'s digest is held (\(d.reason?.rawValue ?? "?")) and a flush never skips binding or credit; \(lift)."
    }

    /// A note when quiet hours will hold a flushed digest back (without `--force`).
    func quietHoursNote(user: String, force: Bool, at t: OperatorTime) throws -> String? {
        guard !force else { return nil }
        let policy = config.digest.policy(forProfile: try store.user(user)?.profile)
        guard DuePolicy.isQuiet(t.now, policy.quietHours, config.digest.timezone) else { return nil }
        let end = DuePolicy.afterQuietHours(t.now, policy.quietHours, config.digest.timezone)
        return "quiet hours (\(policy.quietHours)) hold it until \(t.clock(end)); --force sends it now"
    }

    // MARK: - cancel

    /// `cancel USER`: the open or held digest becomes `cancelled` (reason `operator`); its
    /// messages are marked `dropped` (left without a notification — not `seen`, which means the
    /// user saw them in the app).
    public func cancel(_ user: String) throws -> Report {
        let t = now()
        guard let d = try store.activeDigestSummary(for: user) else {
            throw OperatorFailure("\(user) has no open or held digest to cancel.")
        }
        let note = "cancelled by the operator (roundup cancel); \(plural(d.messages, "message")) dropped, nothing sent"
        let lifecycle = DigestLifecycle(config: config, now: t)
        let moved = try store.write { tx in try lifecycle.cancelByOperator(tx, digest: d.id, from: d.state, note: note) }
        guard moved, let after = try store.digestSummary(d.id) else {
            throw OperatorFailure("\(user)'s digest changed while it was being cancelled; run the command again.")
        }
        return Report(key: "digest", data: after.json,
                      text: "cancelled digest #\(d.id) for \(user): \(plural(d.messages, "message")) dropped, nothing sent")
    }

    // MARK: - history

    /// `history [USER] [--limit N]`: finished, dead and in-doubt digests, newest first.
    public func history(user: String?, limit: Int) throws -> Report {
        if let user, try !store.isKnown(user: user) { throw OperatorFailure("Roundup has never seen \(user).") }
        let digests = try store.recentDigestSummaries(states: Self.historyStates, user: user, limit: max(1, limit))
        let t = timeView()
        let rows = try digests.map { d -> [String] in
            let when = try d.finishedAt ?? store.digestTimingFacts(d.id)?.updatedAt ?? d.openedAt
            return [String(d.id), d.imUserID, Self.stateLabel(d), String(d.messages), t.clock(when), d.errcode ?? "-", Self.detail(d)]
        }
        let table = TextTable(headers: ["ID", "USER", "STATE", "MSGS", "WHEN", "ERRCODE", "DETAIL"], rows: rows, shrinkable: [6, 1])
        return Report(key: "history", data: .array(digests.map(\.json)), text: digests.isEmpty ? "no finished digests" : table.render())
    }

    /// The last column of `history` and `dead`: errmsg, msgid or the senders.
    static func detail(_ d: DigestSummary) -> String {
        if let errmsg = d.errmsg, !errmsg.isEmpty { return errmsg }
        if let msgid = d.msgid { return "msgid \(msgid)" }
        return d.senders.joined(separator: "、")
    }

    // MARK: - dead and retry

    /// `dead`: dead, in-doubt and config-error-held digests, which only an operator moves on.
    public func dead() throws -> Report {
        let digests = try store.digestSummaries(states: [.dead, .inDoubt, .held]).filter { $0.state != .held || $0.reason == .configError }
        let t = timeView()
        let rows = try digests.map { d -> [String] in
            let since = try d.heldSince ?? store.digestTimingFacts(d.id)?.updatedAt ?? d.openedAt
            return [String(d.id), d.imUserID, Self.stateLabel(d), String(d.messages), t.clock(since), d.errcode ?? "-", Self.detail(d)]
        }
        let table = TextTable(headers: ["ID", "USER", "STATE", "MSGS", "SINCE", "ERRCODE", "DETAIL"], rows: rows, shrinkable: [6, 1])
        let text = digests.isEmpty ? "no dead, in-doubt or config-error digests"
            : table.render() + "\nre-queue with roundup retry ID (in_doubt needs --force: the user may get it twice)"
        return Report(key: "digests", data: .array(digests.map(\.json)), text: text)
    }

    /// What `retry` did with one digest.
    enum RetryResult {
        case requeued(Int64)
        case merged(Int64, into: Int64, moved: Int)
    }

    /// `retry ID… [--force]`: re-queue dead digests (in-doubt ones only with `force`) and
    /// config-error holds, due now; merged into the user's open or held digest when there is
    /// one. Every id is checked first; if any cannot be retried, nothing changes.
    public func retry(_ ids: [Int64], force: Bool) throws -> Report {
        let t = now()
        var targets: [DigestSummary] = []
        for id in ids where !targets.contains(where: { $0.id == id }) {
            guard let d = try store.digestSummary(id) else { throw OperatorFailure("No digest \(id) exists.") }
            switch d.state {
            case .dead: break
            case .inDoubt:
                guard force else {
                    throw OperatorFailure("Digest \(id) is in doubt: WeChat may have delivered it, so it is retried only with --force (nothing was changed).")
                }
            case .held where d.reason == .configError: break
            default:
                throw OperatorFailure("Digest \(id) is \(Self.stateLabel(d)); only dead, in-doubt and config-error digests can be retried.")
            }
            targets.append(d)
        }
        var results: [DigestSummary] = []
        var lines: [String] = []
        for d in targets {
            let result = try store.write { tx in try Self.requeue(d, tx: tx, force: force, now: t) }
            switch result {
            case .requeued(let id):
                lines.append("re-queued digest #\(id) for \(d.imUserID): due now")
                if let s = try store.digestSummary(id) { results.append(s) }
            case .merged(let id, let target, let moved):
                lines.append("merged digest #\(id) into \(d.imUserID)'s digest #\(target) (\(plural(moved, "message")) moved)")
                if let s = try store.digestSummary(target) { results.append(s) }
            }
        }
        return Report(key: "digests", data: .array(results.map(\.json)), text: lines.joined(separator: "\n"))
    }

    /// Re-queues one digest inside a transaction.
    static func requeue(_ d: DigestSummary, tx: StoreTransaction, force: Bool, now: Timestamp) throws -> RetryResult {
        let command = "roundup retry\(force ? " --force" : "")"
        func changed() -> OperatorFailure { OperatorFailure("Digest \(d.id) changed while it was being retried; run the command again.") }
        if d.state == .held {
            var note = "re-queued by \(command)"
            if let template = try tx.templateID(ofDigest: d.id), try tx.clearSendPause(.template(template)) {
                note += "; the pause on template \(template) is lifted"
            }
            guard try tx.moveDigest(d.id, from: .held, to: .open, now: now, note: note) else { throw changed() }
            try tx.resetAttempts(d.id, now: now)
            _ = try tx.requestFlush(d.id, at: now, force: false, now: now, note: "due now (\(command))")
            return .requeued(d.id)
        }
        if let active = try tx.activeDigest(for: d.imUserID) {
            let moved = try tx.movePendingMessages(from: d.id, to: active.id)
            guard try tx.moveDigest(d.id, from: d.state, to: .cancelled, reason: .operator, now: now,
                                    note: "merged into digest #\(active.id) by \(command); \(plural(moved, "message")) moved")
            else { throw changed() }
            try tx.appendEvent(digest: active.id, at: now, kind: .message,
                               detail: "\(plural(moved, "message")) merged from \(d.state.rawValue) digest #\(d.id) by \(command)")
            if active.state == .open {
                _ = try tx.requestFlush(active.id, at: now, force: false, now: now, note: "due now (\(command) merged digest #\(d.id))")
            }
            return .merged(d.id, into: active.id, moved: moved)
        }
        guard try tx.moveDigest(d.id, from: d.state, to: .open, now: now, note: "re-queued by \(command)") else { throw changed() }
        try tx.resetAttempts(d.id, now: now)
        _ = try tx.requestFlush(d.id, at: now, force: false, now: now, note: "due now (\(command))")
        return .requeued(d.id)
    }

    // MARK: - stats

    /// `stats`: digests by state, sends saved and credits outstanding.
    public func stats() throws -> Report {
        let s = try store.operatorStats()
        let states = DigestState.allCases.map { ($0.rawValue, JSONValue.int(Int64(s.digestsByState[$0, default: 0]))) }
        let held = [DigestReason.unbound, .noCredit, .configError].map { ($0.rawValue, JSONValue.int(Int64(s.heldByReason[$0, default: 0]))) }
        let json = JSONValue.object([
            ("digests", .object(states)), ("held", .object(held)),
            ("messages_stored", .int(Int64(s.messagesStored))), ("c2c_messages", .int(Int64(s.c2cMessages))),
            ("group_copies", .int(Int64(s.groupCopies))), ("pending_messages", .int(Int64(s.pendingMessages))),
            ("digests_sent", .int(Int64(s.digestsSent))), ("sends_saved", .int(Int64(s.sendsSaved))),
            ("credits_outstanding", .int(Int64(s.creditsOutstanding))),
            ("credits_by_template", .object(s.creditsByTemplate.sorted { $0.key < $1.key }.map { ($0.key, .int(Int64($0.value))) })),
            ("subscriptions", .int(Int64(s.subscriptions))),
        ])
        let stateRows = DigestState.allCases.map { state -> [String] in
            var label = state.rawValue
            if state == .held {
                label += " (" + [DigestReason.unbound, .noCredit, .configError].map { "\($0.rawValue) \(s.heldByReason[$0, default: 0])" }
                    .joined(separator: ", ") + ")"
            }
            return [label, String(s.digestsByState[state, default: 0])]
        }
        let lines = [
            TextTable(headers: ["DIGESTS", "COUNT"], rows: stateRows).render(),
            "",
            "messages stored: \(s.messagesStored) (\(s.c2cMessages) one-to-one, \(s.groupCopies) group copies); \(s.pendingMessages) pending",
            "digests sent: \(s.digestsSent) (dry_run included)",
            "sends saved: \(s.sendsSaved)",
            "credits outstanding: \(s.creditsOutstanding) one-time"
                + (s.creditsByTemplate.isEmpty ? "" : " (" + s.creditsByTemplate.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + ")")
                + "; \(plural(s.subscriptions, "long-term subscription"))",
        ]
        return Report(key: "stats", data: json, text: lines.joined(separator: "\n"))
    }
}
