import ArgumentParser
import Foundation
import Roundup

/// `roundup config check`.
struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Work with the configuration.", subcommands: [Check.self])

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate the config and print the effective config with secrets masked.")

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            let loaded = try global.load()
            for warning in loaded.warnings { writeError("warning: \(warning)") }
            let source = loaded.source.map { "# from \($0)" } ?? "# built-in defaults (no config file)"
            let overrides = loaded.overriddenKeys.sorted().map { "# \($0) from \(ConfigLoader.environmentName(for: $0))" }
            let header = ([source] + overrides).joined(separator: "\n")
            print(header + "\n" + loaded.config.effectiveYAML(), terminator: "")
        }
    }
}
