import Crypto
import Foundation

extension DigestSettings {
    /// A short hash of the effective digest settings, shown by `roundup instances`: instances
    /// sharing a database that disagree on windows or quiet hours show different fingerprints.
    /// Sets and profiles are taken in sorted order, so equal settings hash equally in every process.
    public var fingerprint: String {
        var text = "\(Self.canonical(policy))|\(timezone.identifier)|\(sendConcurrency)"
        for name in profiles.keys.sorted() {
            text += "|\(name)=\(Self.canonical(policy(forProfile: name)))"
        }
        return SHA256.hash(data: Data(text.utf8)).prefix(6).map { String(format: "%02x", $0) }.joined()
    }

    static func canonical(_ p: DigestPolicy) -> String {
        [
            "\(p.window.milliseconds)", "\(p.mode)", "\(p.maxWait.milliseconds)", "\(p.maxMessages)", "\(p.minInterval.milliseconds)",
            "\(p.quietHours)", "\(p.cancelOnOnline)", "\(p.offlineLookback.milliseconds)", "\(p.groupMessages)",
            "\(p.retention.milliseconds)", p.urgentSenders.sorted().joined(separator: ","), p.ignoreSenders.sorted().joined(separator: ","),
        ].joined(separator: ";")
    }
}
