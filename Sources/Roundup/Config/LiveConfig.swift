import Synchronization

/// The config in force, swapped whole on a successful reload (SIGHUP or file change).
/// Readers take a snapshot per decision, so one decision never mixes two configs.
public final class LiveConfig: Sendable {
    private let current: Mutex<RoundupConfig>

    public init(_ config: RoundupConfig) { current = Mutex(config) }

    /// The config in force now.
    public var snapshot: RoundupConfig { current.withLock { $0 } }

    /// Replaces the config.
    public func replace(with config: RoundupConfig) { current.withLock { $0 = config } }
}
