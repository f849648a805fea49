import Foundation

extension DigestOperator {
    /// `explain USER`: one plain paragraph saying why the user's digest has not been sent yet
    /// and when it will be, or that nothing is pending. A user Roundup has never seen fails.
    public func explain(_ user: String) throws -> Report {
        guard try store.isKnown(user: user) else {
            throw OperatorFailure("Roundup has never seen \(user): no binding, no message and no digest.")
        }
        let t = timeView()
        let person = try store.user(user)
        let who = person?.name ?? user
        let active = try store.activeDigestSummary(for: user)
        let stuck = try store.recentDigestSummaries(states: [.sending, .inDoubt, .dead], user: user, limit: 5)
        var sentences: [String] = []
        if let d = active {
            sentences.append(d.state == .held ? try explainHeld(d, who: who, t: t) : try explainOpen(d, person: person, who: who, t: t))
        }
        for d in stuck { sentences.append(try explainStuck(d, t: t)) }
        if active == nil && stuck.isEmpty { sentences.append(try explainNothing(user: user, who: who, t: t)) }
        let text = sentences.joined(separator: " ")
        let primary = active ?? stuck.first
        return Report(
            key: "explanation",
            data: .object([
                ("im_user_id", .string(user)), ("state", .string(primary?.state.rawValue)), ("digest", primary?.json ?? .null),
                ("text", .string(text)),
            ]),
            text: text)
    }

    /// `7 messages from 张老师 and 李老师 waiting`.
    func waiting(_ d: DigestSummary) -> String {
        "\(plural(d.messages, "message")) from \(spokenList(d.senders)) waiting"
    }

    /// A held digest: why, since when, and what lifts the hold.
    func explainHeld(_ d: DigestSummary, who: String, t: OperatorTime) throws -> String {
        let since = d.heldSince.map { " since \(t.clock($0))" } ?? ""
        let why: String
        switch d.reason {
        case .unbound:
            why = "held: no openid is bound to \(d.imUserID)\(since); it will be sent as soon as \(who) is bound to an openid "
                + "(roundup users bind or PUT /admin/users/\(d.imUserID))"
        case .configError:
            let template = d.templateID.map { "template \($0)" } ?? "every template"
            let code = d.errcode.map { " with errcode \($0)" } ?? ""
            let msg = d.errmsg.map { " (\($0))" } ?? ""
            why = "held: WeChat rejected \(template)\(code)\(msg)\(since), a configuration error; sending with that template is paused "
                + "until the config changes (SIGHUP) or roundup retry \(d.id)"
        default:
            if config.templates.isEmpty {
                why = "held: no template is configured\(since); it will be sent once templates are configured and \(who) accepts one"
            } else {
                let after43101 = d.errcode == "43101" ? " (WeChat answered 43101)" : ""
                why = "held: no subscription credit\(after43101)\(since); it will be sent as soon as \(who) accepts a subscription"
            }
        }
        return "\(why); \(waiting(d))."
    }

    /// An open digest: when it is due and what decided that, as far as the digest and its log tell.
    func explainOpen(_ d: DigestSummary, person: User?, who: String, t: OperatorTime) throws -> String {
        let tz = config.digest.timezone
        let policy = config.digest.policy(forProfile: person?.profile)
        let due = d.dueAt ?? t.now
        guard let facts = try store.digestTimingFacts(d.id) else { return "open: due \(t.clockAndRelative(due)); \(waiting(d))." }
        var reasons: [String] = []
        if facts.flushRequested > 0 {
            reasons.append("an operator flushed it" + (facts.flushRequested == 2 ? " with --force (quiet hours skipped)" : ""))
        } else if facts.attempts > 0, let code = d.errcode {
            let msg = d.errmsg.map { " (\($0))" } ?? ""
            reasons.append("WeChat answered errcode \(code)\(msg), so try \(facts.attempts + 1) of \(DigestSender.maxAttempts) waits for its backoff")
        } else {
            let last = facts.lastMessageAt ?? facts.windowStartAt
            var candidate: Timestamp
            switch policy.mode {
            case .fixed:
                candidate = facts.windowStartAt + policy.window.milliseconds
                reasons.append("the \(policy.window) fixed window that began at \(t.clock(facts.windowStartAt)) ends then")
            case .sliding:
                let slide = last + policy.window.milliseconds
                let cap = facts.windowStartAt + policy.maxWait.milliseconds
                candidate = min(slide, cap)
                reasons.append(slide <= cap
                    ? "the \(policy.window) sliding window after the last message at \(t.clock(last)) ends then"
                    : "max_wait \(policy.maxWait) after the window began at \(t.clock(facts.windowStartAt)) ends then")
            }
            if facts.urgent {
                reasons = ["an urgent message makes it due at once"]
                candidate = min(candidate, due)
            } else if d.messages >= policy.maxMessages {
                reasons = ["max_messages (\(policy.maxMessages)) is reached"]
                candidate = min(candidate, due)
            }
            // Each later rule is named only when it is consistent with the stored due time.
            let slack: Int64 = 1000
            if !facts.urgent, policy.minInterval.milliseconds > 0,
               let lastSent = try store.lastSendStart(user: d.imUserID, excluding: d.id),
               lastSent + policy.minInterval.milliseconds > candidate, lastSent + policy.minInterval.milliseconds <= due + slack {
                candidate = lastSent + policy.minInterval.milliseconds
                reasons.append("min_interval \(policy.minInterval) after the last send at \(t.clock(lastSent)) holds it until \(t.clock(candidate))")
            }
            let afterQuiet = DuePolicy.afterQuietHours(candidate, policy.quietHours, tz)
            if afterQuiet != candidate, afterQuiet <= due + slack {
                reasons.append("quiet hours (\(policy.quietHours)) move it to \(t.clock(afterQuiet))")
                candidate = afterQuiet
            }
            if abs(candidate.milliseconds - due.milliseconds) > slack {
                // Re-timed since (a config reload, a profile change, quiet hours at send time): cite the log.
                if let entry = try store.digestLog(d.id).last(where: { $0.detail.contains(due.rfc3339) }) {
                    reasons = ["the decision log at \(t.clock(entry.at)) set it (\(entry.detail))"]
                } else {
                    reasons = ["it was re-timed after the window opened"]
                }
            }
        }
        var sentence = "open: due \(t.clockAndRelative(due)) because \(reasons.joined(separator: "; "))"
        if due <= t.now {
            let pauses = try store.sendPauses()
            if let quota = pauses.entries[.quota] {
                sentence += "; sending is paused by WeChat's daily quota (45009)\(quota.map { " until \(t.clock($0))" } ?? "")"
            } else if facts.flushRequested != 2, DuePolicy.isQuiet(t.now, policy.quietHours, tz) {
                sentence += "; quiet hours (\(policy.quietHours)) hold it until \(t.clock(DuePolicy.afterQuietHours(t.now, policy.quietHours, tz)))"
            } else {
                sentence += "; a running roundup serve sends it within a second"
            }
        }
        if !d.openidBound {
            sentence += "; but no openid is bound to \(d.imUserID), so at that time it will be held until \(who) is bound"
        } else if let openid = person?.openid, try usableTemplate(openid: openid, user: d.imUserID, pauses: try store.sendPauses()) == nil {
            let credits = Dictionary(try store.credits(openid: openid).map { ($0.templateID, $0) }, uniquingKeysWith: { a, _ in a })
            let choice = DigestLifecycle(config: config, now: t.now)
                .chooseTemplate(openid: openid, user: d.imUserID, credits: credits, pauses: try store.sendPauses())
            if case .hold(.configError, let note) = choice {
                sentence += "; but \(note), so at that time it will be held (config_error) until the template is fixed and the config reloaded"
            } else {
                sentence += "; but \(who) has no subscription credit yet, so at that time it will be held until \(who) accepts a subscription"
            }
        }
        return "\(sentence); \(waiting(d))."
    }

    /// A digest that left the open/held states without finishing: sending, in doubt or dead.
    func explainStuck(_ d: DigestSummary, t: OperatorTime) throws -> String {
        let facts = try store.digestTimingFacts(d.id)
        let at = (facts?.sendingAt ?? facts?.updatedAt).map { " at \(t.clock($0))" } ?? ""
        let count = plural(d.messages, "message")
        switch d.state {
        case .sending:
            return "Digest #\(d.id) (\(count)) is being sent right now (the WeChat call started\(at)); if Roundup stops during the call it becomes in_doubt and is never resent on its own."
        case .inDoubt:
            let why = d.errmsg.map { " (\($0))" } ?? ""
            return "Digest #\(d.id) (\(count)) is in_doubt: the WeChat call\(at) may have delivered it\(why); Roundup never resends it on its own — a subscribe_msg_sent_event settles it as sent, or roundup retry \(d.id) --force sends it again (the user may get it twice)."
        default:
            let updated = facts.map { " at \(t.clock($0.updatedAt))" } ?? ""
            let code = d.errcode.map { " with errcode \($0)" } ?? ""
            let msg = d.errmsg.map { " (\($0))" } ?? ""
            return "Digest #\(d.id) (\(count)) is dead: WeChat refused it\(code)\(msg)\(updated); its messages are kept and roundup retry \(d.id) re-queues it."
        }
    }

    /// Nothing open, held or stuck: say so, with the last finished digest if any.
    func explainNothing(user: String, who: String, t: OperatorTime) throws -> String {
        var sentence = "Nothing is pending for \(who)"
        let unjoined = try store.unjoinedMessageCount(recipient: user)
        if unjoined > 0 {
            sentence += " (\(plural(unjoined, "message")) \(unjoined == 1 ? "is" : "are") kept unjoined while they are online, and join a digest if they go offline)"
        }
        guard let last = try store.recentDigestSummaries(states: [.sent, .dryRun, .cancelled, .expired], user: user, limit: 1).first else {
            return sentence + "; Roundup has never finished a digest for them."
        }
        let when = last.finishedAt.map { " at \(t.clock($0))" } ?? ""
        let what: String
        switch last.state {
        case .sent: what = "was sent\(when) with \(plural(last.messages, "message"))\(last.msgid.map { " (msgid \($0))" } ?? "")"
        case .dryRun: what = "was rendered in dry-run mode\(when) with \(plural(last.messages, "message")) (nothing sent)"
        case .cancelled: what = "was cancelled (\(last.reason?.rawValue ?? "?"))\(when)"
        default: what = "expired\(when): every message outlived digest.retention"
        }
        return sentence + "; the last digest, #\(last.id), \(what)."
    }
}
