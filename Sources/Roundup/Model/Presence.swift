/// What Roundup believes about whether a user has the mini program open.
public enum PresenceState: String, Sendable, CaseIterable, Codable, Hashable {
    case online
    case offline
    case unknown
}
