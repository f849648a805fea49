/// What can go wrong in the store, in words an operator can act on.
public enum StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The openid is already bound to another user (the admin API answers 409).
    case openidBoundElsewhere(openid: String, boundTo: String)
    /// No such user.
    case userNotFound(String)
    /// The database could not be opened or created.
    case cannotOpen(path: String, reason: String)
    /// The user already has an `open` or `held` digest (a user has at most one).
    case activeDigestExists(user: String)
    /// The state machine does not allow this change.
    case illegalTransition(from: DigestState, to: DigestState)
    /// A held or cancelled digest needs one of its state's reasons; other states take none.
    case invalidReason(state: DigestState, reason: DigestReason?)

    public var description: String {
        switch self {
        case .openidBoundElsewhere(_, let other): return "that openid is already bound to user \(other)"
        case .userNotFound(let id): return "no user \(id) is known"
        case .cannotOpen(let path, let reason): return "cannot open the database \(path): \(reason)"
        case .activeDigestExists(let user): return "user \(user) already has an open or held digest"
        case .illegalTransition(let from, let to): return "a digest cannot go from \(from.rawValue) to \(to.rawValue)"
        case .invalidReason(let state, let reason):
            return "a \(state.rawValue) digest cannot have the reason \(reason?.rawValue ?? "none")"
        }
    }
}

extension StoreError {
    /// The message of an illegal digest state change rejected by the schema's trigger.
    static let illegalTransitionMessage = "illegal digest state transition"
}
