/// The roster commands of SPEC §7 (`users import|list|bind|unbind`, `credits`): validation,
/// the store calls and what they print. The CLI only parses arguments and prints.
public struct RosterOperator: Sendable {
    public let store: RoundupStore
    public let config: RoundupConfig
    public let now: @Sendable () -> Timestamp

    public init(store: RoundupStore, config: RoundupConfig, now: @escaping @Sendable () -> Timestamp) {
        self.store = store
        self.config = config
        self.now = now
    }

    /// `users import FILE.csv`: all rows or none.
    public func importRoster(csv text: String) throws -> Report {
        let rows = try RosterCSV.rows(from: text, knownProfiles: Set(config.digest.profiles.keys))
        let entries = rows.map(\.entry)
        // An openid held by a user the file does not re-bind would collide: name the rows.
        var problems: [RosterImportError.Problem] = []
        let inFile = Set(entries.map(\.imUserID))
        for row in rows {
            guard let openid = row.entry.openid, let holder = try store.user(openid: openid),
                  holder.imUserID != row.entry.imUserID, !inFile.contains(holder.imUserID)
            else { continue }
            problems.append(.init(line: row.line, message: "openid \(openid) is bound to user \(holder.imUserID), who is not in this file"))
        }
        guard problems.isEmpty else { throw RosterImportError(problems: problems) }
        let result = try store.importRoster(entries, now: now())
        let total = entries.count
        return Report(
            key: "import",
            data: .object([
                ("rows", .int(Int64(total))), ("created", .int(Int64(result.created))),
                ("updated", .int(Int64(result.updated))), ("unchanged", .int(Int64(result.unchanged))),
            ]),
            text: "imported \(total) user\(total == 1 ? "" : "s"): \(result.created) new, \(result.updated) updated, \(result.unchanged) unchanged")
    }

    /// `users list`.
    public func list() throws -> Report {
        let users = try store.users()
        let table = TextTable(
            headers: ["USER", "NAME", "OPENID", "PROFILE"],
            rows: users.map { [$0.imUserID, $0.name ?? "-", $0.openid ?? "-", $0.profile ?? "-"] },
            shrinkable: [2, 1, 0])
        let text = users.isEmpty ? "no users" : table.render() + "\n\(users.count) user\(users.count == 1 ? "" : "s")"
        return Report(key: "users", data: .array(users.map(RosterOperator.userJSON)), text: text)
    }

    /// `users bind ID [OPENID] [--name N] [--profile P]`: merges; an empty `--name`/`--profile` clears.
    public func bind(_ id: String, openid: String?, name: String?, profile: String?) throws -> Report {
        if let why = RosterCSV.invalidUserID(id) { throw OperatorFailure(why.prefix(1).uppercased() + why.dropFirst() + ".") }
        if let openid, openid.isEmpty || !RosterCSV.isPlausibleOpenid(openid) {
            throw OperatorFailure("\"\(openid)\" is not an openid (letters, digits, - and _, up to 64 characters).")
        }
        if let profile, !profile.isEmpty, config.digest.profiles[profile] == nil {
            throw OperatorFailure("Profile \"\(profile)\" is not in digest.profiles.")
        }
        func update(_ v: String?) -> FieldUpdate<String> { v.map { $0.isEmpty ? .clear : .set($0) } ?? .keep }
        do {
            let user = try store.updateUser(id, UserUpdate(openid: update(openid), name: update(name), profile: update(profile)), now: now())
            if profile != nil {
                let lifecycle = DigestLifecycle(config: config, now: now())
                _ = try store.write { tx in try lifecycle.retime(tx, user: id, reason: "profile changed") }
            }
            return Report(key: "user", data: RosterOperator.userJSON(user), text: "bound \(RosterOperator.describe(user))")
        } catch let StoreError.openidBoundElsewhere(_, other) {
            throw OperatorFailure("That openid is already bound to user \(other); unbind it there first.")
        }
    }

    /// `users unbind ID`: clears the openid; pending messages stay.
    public func unbind(_ id: String) throws -> Report {
        guard let user = try store.unbindUser(id, now: now()) else {
            throw OperatorFailure("No user \(id) is known.")
        }
        return Report(key: "user", data: RosterOperator.userJSON(user), text: "unbound \(id); pending messages stay and wait for a new binding")
    }

    /// `credits [USER]`.
    public func credits(user id: String?) throws -> Report {
        var credits: [Credit]
        if let id {
            guard let user = try store.user(id) else { throw OperatorFailure("No user \(id) is known.") }
            credits = try user.openid.map { try store.credits(openid: $0) } ?? []
        } else {
            credits = try store.credits()
        }
        let owners = try Dictionary(store.users().compactMap { u in u.openid.map { ($0, u.imUserID) } }, uniquingKeysWith: { a, _ in a })
        credits.sort { ($0.openid, $0.templateID) < ($1.openid, $1.templateID) }
        let rows = credits.map { c -> [String] in
            let kind = config.template(id: c.templateID)?.kind
            let amount = kind == .longTerm ? (c.subscribed ? "subscribed" : "unsubscribed") : String(c.count)
            return [owners[c.openid] ?? "-", c.openid, c.templateID, kind?.rawValue ?? "not configured", amount]
        }
        let table = TextTable(headers: ["USER", "OPENID", "TEMPLATE", "KIND", "CREDITS"], rows: rows, shrinkable: [2, 1, 0])
        let json = JSONValue.array(credits.map { c in
            .object([
                ("openid", .string(c.openid)), ("im_user_id", .string(owners[c.openid])),
                ("template_id", .string(c.templateID)), ("kind", .string(config.template(id: c.templateID)?.kind.rawValue)),
                ("count", .int(Int64(c.count))), ("subscribed", .bool(c.subscribed)), ("updated_at", .string(c.updatedAt.rfc3339)),
            ])
        })
        return Report(key: "credits", data: json, text: credits.isEmpty ? "no credits" : table.render())
    }

    /// The user object of `--json` outputs.
    public static func userJSON(_ u: User) -> JSONValue {
        .object([
            ("im_user_id", .string(u.imUserID)), ("openid", .string(u.openid)), ("name", .string(u.name)),
            ("profile", .string(u.profile)), ("created_at", .string(u.createdAt.rfc3339)),
            ("updated_at", .string(u.updatedAt.rfc3339)),
        ])
    }

    static func describe(_ u: User) -> String {
        var parts = [u.imUserID]
        parts.append(u.openid.map { "to openid \($0)" } ?? "(no openid)")
        if let name = u.name { parts.append("name \(name)") }
        if let profile = u.profile { parts.append("profile \(profile)") }
        return parts.joined(separator: " ")
    }
}
