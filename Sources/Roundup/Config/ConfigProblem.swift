/// One thing wrong with a config, named by its key path (`digest.window`,
/// `templates[0].fields.thing1`) so an operator can find it.
public struct ConfigProblem: Sendable, Equatable, CustomStringConvertible {
    public let keyPath: String
    public let message: String

    public init(_ keyPath: String, _ message: String) {
        self.keyPath = keyPath
        self.message = message
    }

    public var description: String { keyPath.isEmpty ? message : "\(keyPath): \(message)" }
}

/// A config that cannot be used, with every problem found in it.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public let problems: [ConfigProblem]
    public init(problems: [ConfigProblem]) { self.problems = problems }
    public var description: String { problems.map(\.description).joined(separator: "\n") }
}
