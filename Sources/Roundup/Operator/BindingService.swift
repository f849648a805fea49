/// What one bind asks for: each field set, cleared or kept. An empty name or profile clears it;
/// an empty openid is refused like any other invalid one.
public struct BindingRequest: Sendable, Equatable {
    public var openid: FieldUpdate<String>
    public var name: FieldUpdate<String>
    public var profile: FieldUpdate<String>

    public init(openid: FieldUpdate<String> = .keep, name: FieldUpdate<String> = .keep, profile: FieldUpdate<String> = .keep) {
        self.openid = openid
        self.name = name
        self.profile = profile
    }
}

/// One user whose binding a bind or an import wrote.
public struct BindingChange: Sendable, Equatable {
    public let userID: String
    /// Whether the profile differs from before, so the user's open digest needs re-timing.
    public let profileChanged: Bool

    public init(userID: String, profileChanged: Bool) {
        self.userID = userID
        self.profileChanged = profileChanged
    }
}

/// Why a bind was refused.
public enum BindingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A value breaks a `BindingRules` rule; the text says which and why.
    case invalid(String)
    /// The openid is bound to another user, who must be unbound first.
    case openidBoundElsewhere(openid: String, user: String)

    public var description: String {
        switch self {
        case .invalid(let why): return why
        case .openidBoundElsewhere(_, let user): return "that openid is already bound to user \(user)"
        }
    }
}

/// Binds users the one way the admin API, `users bind` and `users import` share: the same
/// rules, the same store writes, and the same action after a change (re-timing the open digest
/// of a user whose profile changed, and waking the engine in `serve`), which the caller injects.
public struct BindingService: Sendable {
    public let store: RoundupStore
    /// The keys of `digest.profiles` in force.
    public let profiles: @Sendable () -> Set<String>
    public let now: @Sendable () -> Timestamp
    /// Runs after every write with the users it changed.
    public let afterChange: @Sendable ([BindingChange]) throws -> Void

    public init(
        store: RoundupStore, profiles: @escaping @Sendable () -> Set<String>, now: @escaping @Sendable () -> Timestamp,
        afterChange: @escaping @Sendable ([BindingChange]) throws -> Void
    ) {
        self.store = store
        self.profiles = profiles
        self.now = now
        self.afterChange = afterChange
    }

    /// The update `request` means for the store, or the first rule it breaks.
    public func validated(_ userID: String, _ request: BindingRequest) throws(BindingError) -> UserUpdate {
        if let why = BindingRules.problem(userID: userID) { throw .invalid(why) }
        if case .set(let openid) = request.openid, let why = BindingRules.problem(openid: openid) { throw .invalid(why) }
        if case .set(let name) = request.name, let why = BindingRules.problem(name: name) { throw .invalid(why) }
        if case .set(let profile) = request.profile, !profile.isEmpty, let why = BindingRules.problem(profile: profile, known: profiles()) {
            throw .invalid(why)
        }
        /// An empty name or profile clears the field.
        func clearingEmpty(_ update: FieldUpdate<String>) -> FieldUpdate<String> {
            if case .set(let value) = update, value.isEmpty { return .clear }
            return update
        }
        return UserUpdate(openid: request.openid, name: clearingEmpty(request.name), profile: clearingEmpty(request.profile))
    }

    /// Merges `request` into the user's binding (creating the user), then runs `afterChange`.
    /// Throws `BindingError` for a refused request, and the store's errors.
    @discardableResult
    public func bind(_ userID: String, _ request: BindingRequest) throws -> User {
        let update = try validated(userID, request)
        let before = try store.user(userID)
        let user: User
        do {
            user = try store.updateUser(userID, update, now: now())
        } catch StoreError.openidBoundElsewhere(let openid, let other) {
            throw BindingError.openidBoundElsewhere(openid: openid, user: other)
        }
        try afterChange([BindingChange(userID: userID, profileChanged: before?.profile != user.profile)])
        return user
    }

    /// Reads a roster CSV, checks every row by the same rules, and applies all rows or none;
    /// then runs `afterChange` with the users whose binding changed. Throws `RosterImportError`
    /// naming each bad line, or the store's errors.
    public func importRoster(csv text: String) throws -> (rows: [RosterRow], result: RosterImportResult) {
        let rows = try RosterCSV.rows(from: text, knownProfiles: profiles())
        let entries = rows.map(\.entry)
        // An openid held by a user the file does not re-bind would collide: name the rows.
        var problems: [RosterImportError.Problem] = []
        let inFile = Set(entries.map(\.imUserID))
        var before: [String: User] = [:]
        for row in rows {
            before[row.entry.imUserID] = try store.user(row.entry.imUserID)
            guard let openid = row.entry.openid, let holder = try store.user(openid: openid),
                holder.imUserID != row.entry.imUserID, !inFile.contains(holder.imUserID)
            else { continue }
            problems.append(.init(line: row.line, message: "openid \(openid) is bound to user \(holder.imUserID), who is not in this file"))
        }
        guard problems.isEmpty else { throw RosterImportError(problems: problems) }
        let result = try store.importRoster(entries, now: now())
        let changes = entries.compactMap { entry -> BindingChange? in
            let old = before[entry.imUserID]
            guard old?.openid != entry.openid || old?.name != entry.name || old?.profile != entry.profile || old == nil else { return nil }
            return BindingChange(userID: entry.imUserID, profileChanged: old?.profile != entry.profile)
        }
        if !changes.isEmpty { try afterChange(changes) }
        return (rows, result)
    }
}
