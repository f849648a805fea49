/// The lifecycle of a digest: one user's batch of pending messages that becomes one
/// subscribe message. Raw values are the exact spellings used in SQLite, the CLI and the admin API.
public enum DigestState: String, Sendable, CaseIterable, Codable, Hashable {
    case open
    case held
    case sending
    case sent
    case dryRun = "dry_run"
    case cancelled
    case expired
    case dead
    case inDoubt = "in_doubt"

    /// States in which a digest still belongs to its user's single active batch (a user
    /// has at most one `open` or `held` digest at a time).
    public static let active: Set<DigestState> = [.open, .held]

    /// True when nothing will ever happen to the digest again on its own.
    public var isFinished: Bool {
        switch self {
        case .sent, .dryRun, .cancelled, .expired: return true
        case .open, .held, .sending, .dead, .inDoubt: return false
        }
    }

    /// Every transition the state machine allows, including re-entering the same state where that
    /// carries meaning (a held digest whose reason changes, an open digest being re-timed).
    ///
    /// - open → held (unbound / no credit / config error), sending, cancelled, expired, dead (render error)
    /// - held → open (hold lifted or re-timed), sending, cancelled, expired
    /// - sending → sent, dry_run, held (43101, config error), open (backoff retry), dead, in_doubt
    /// - dead → open (`roundup retry`), cancelled (merged into another digest by retry)
    /// - in_doubt → sent (settled by a sent event), open (`roundup retry --force`), cancelled (merged)
    public static let transitions: [DigestState: Set<DigestState>] = [
        .open: [.open, .held, .sending, .cancelled, .expired, .dead],
        .held: [.held, .open, .sending, .cancelled, .expired],
        .sending: [.sent, .dryRun, .held, .open, .dead, .inDoubt],
        .dead: [.open, .cancelled],
        .inDoubt: [.sent, .open, .cancelled],
        .sent: [],
        .dryRun: [],
        .cancelled: [],
        .expired: [],
    ]

    /// Whether the state machine allows moving from `self` to `next`.
    public func canMove(to next: DigestState) -> Bool {
        DigestState.transitions[self, default: []].contains(next)
    }

    /// The reasons a digest in this state may carry; empty when the state takes no reason.
    public var allowedReasons: Set<DigestReason> {
        switch self {
        case .held: return [.unbound, .noCredit, .configError]
        case .cancelled: return [.userOnline, .read, .recalled, .operator]
        default: return []
        }
    }
}

/// Why a digest is held or was cancelled. Dead digests carry an errcode instead.
public enum DigestReason: String, Sendable, CaseIterable, Codable, Hashable {
    // held
    case unbound
    case noCredit = "no_credit"
    case configError = "config_error"
    // cancelled
    case userOnline = "user_online"
    case read
    case recalled
    case `operator`
}
