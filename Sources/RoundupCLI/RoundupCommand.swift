import ArgumentParser
import Foundation
import Roundup

/// `roundup`: the service and the operator's tools.
struct RoundupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "roundup",
        abstract: "Collects the IM messages offline users miss and sends one WeChat subscribe message per batch.",
        version: RoundupVersion.current,
        subcommands: [
            ServeCommand.self, DemoCommand.self, ConfigCommand.self, UsersCommand.self, CreditsCommand.self,
            UserSigCommand.self, BackupCommand.self, CheckCommand.self, PendingCommand.self, ShowCommand.self, ExplainCommand.self, FlushCommand.self,
            CancelCommand.self, HistoryCommand.self, DeadCommand.self, RetryCommand.self, StatsCommand.self, InstancesCommand.self,
            StorageCommand.self,
        ])
}

/// Options every command takes.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "Config file (default: ./roundup.yaml when present, else built-in defaults).")
    var config: String?

    /// The effective config: file, defaults and `ROUNDUP_*` overrides.
    func load() throws -> LoadedConfig {
        try ConfigLoader().load(path: config)
    }

    /// The config and the store it names, for commands that read or change data.
    func openStore() throws -> (LoadedConfig, RoundupStore) {
        let loaded = try load()
        let store = try RoundupStore.open(loaded.config.storage)
        return (loaded, store)
    }
}

/// `--json` for read commands.
struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print one JSON object instead of a table.")
    var json = false
}

/// Prints a report to stdout in the chosen format.
func emit(_ report: Report, _ output: OutputOptions) {
    FileHandle.standardOutput.write(Data(report.rendered(json: output.json).utf8))
}

/// The current wall-clock time as Roundup stores it.
@Sendable func wallNow() -> Timestamp { Timestamp(Date()) }
