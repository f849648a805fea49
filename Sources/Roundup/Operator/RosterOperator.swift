/// The roster commands (`users import|list|bind|unbind`, `credits`): the store calls and what
/// they print, with every bind and import going through `BindingService`. The CLI only parses
/// arguments and prints.
public struct RosterOperator: Sendable {
    public let store: RoundupStore
    public let config: RoundupConfig
    public let now: @Sendable () -> Timestamp
    /// The binding rules, writes and after-change action `PUT /admin/users/{id}` uses too.
    public let bindings: BindingService

    /// - Parameter afterBindingChange: what to do once a bind or import has changed users
    ///   (the CLI re-times the open digest of each user whose profile changed).
    public init(
        store: RoundupStore, config: RoundupConfig, now: @escaping @Sendable () -> Timestamp,
        afterBindingChange: @escaping @Sendable ([BindingChange]) throws -> Void
    ) {
        self.store = store
        self.config = config
        self.now = now
        let profiles = Set(config.digest.profiles.keys)
        bindings = BindingService(store: store, profiles: { profiles }, now: now, afterChange: afterBindingChange)
    }

    /// `users import FILE.csv`: all rows or none.
    public func importRoster(csv text: String) throws -> Report {
        let (rows, result) = try bindings.importRoster(csv: text)
        let total = rows.count
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
        /// An argument given sets the field; one left out keeps it.
        func update(_ v: String?) -> FieldUpdate<String> { v.map { .set($0) } ?? .keep }
        do {
            let user = try bindings.bind(id, BindingRequest(openid: update(openid), name: update(name), profile: update(profile)))
            return Report(key: "user", data: RosterOperator.userJSON(user), text: "bound \(RosterOperator.describe(user))")
        } catch let error as BindingError {
            switch error {
            case .invalid(let why): throw OperatorFailure(why.prefix(1).uppercased() + why.dropFirst() + ".")
            case .openidBoundElsewhere(_, let other):
                throw OperatorFailure("That openid is already bound to user \(other); unbind it there first.")
            }
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
