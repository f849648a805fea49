import ArgumentParser
import Foundation
import Roundup

/// The digest operator for a command: the effective config and its store.
private func digestOperator(_ global: GlobalOptions) throws -> DigestOperator {
    let (loaded, store) = try global.openStore()
    return DigestOperator(store: store, config: loaded.config, now: wallNow)
}

/// `roundup pending`.
struct PendingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pending", abstract: "List open and held digests: who, how many messages, when due, why held.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var output: OutputOptions

    func run() async throws { emit(try digestOperator(global).pending(), output) }
}

/// `roundup show USER`.
struct ShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "Show a user's digest: messages, decision log and the exact body it would send.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "The IM UserID.") var user: String

    func run() async throws { emit(try digestOperator(global).show(user), output) }
}

/// `roundup explain USER`.
struct ExplainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explain", abstract: "Say in one paragraph why a user's digest has not been sent yet and when it will be.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "The IM UserID.") var user: String

    func run() async throws { emit(try digestOperator(global).explain(user), output) }
}

/// `roundup flush USER… [--force]` / `roundup flush --all`.
struct FlushCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flush", abstract: "Make open digests due now; a running roundup serve sends them within a second.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var output: OutputOptions
    @Flag(help: "Flush every open digest.") var all = false
    @Flag(help: "Also skip quiet hours (never binding, credit or presence).") var force = false
    @Argument(help: "IM UserIDs.") var users: [String] = []

    func validate() throws {
        if all && !users.isEmpty { throw ValidationError("Name users or use --all, not both.") }
        if !all && users.isEmpty { throw ValidationError("Name at least one user, or use --all.") }
    }

    func run() async throws { emit(try digestOperator(global).flush(users: users, all: all, force: force), output) }
}

/// `roundup cancel USER`.
struct CancelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel", abstract: "Cancel a user's open or held digest; its messages are dropped, nothing is sent.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "The IM UserID.") var user: String

    func run() async throws { emit(try digestOperator(global).cancel(user), output) }
}

/// `roundup history [USER] [--limit N]`.
struct HistoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history", abstract: "List sent, dry-run, cancelled, expired, dead and in-doubt digests, newest first.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "Only this user's digests.") var user: String?
    @Option(help: "At most this many digests.") var limit = 20

    func validate() throws {
        if limit < 1 { throw ValidationError("--limit must be at least 1.") }
    }

    func run() async throws { emit(try digestOperator(global).history(user: user, limit: limit), output) }
}

/// `roundup dead`.
struct DeadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dead", abstract: "List dead, in-doubt and config-error digests, which wait for roundup retry.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var output: OutputOptions

    func run() async throws { emit(try digestOperator(global).dead(), output) }
}

/// `roundup retry ID… [--force]`.
struct RetryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry",
        abstract: "Re-queue dead and config-error digests at once, merged into the user's open digest if there is one.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var output: OutputOptions
    @Flag(help: "Also re-queue in-doubt digests (WeChat may have delivered them: the user may get one twice).") var force = false
    @Argument(help: "Digest ids, as roundup dead lists them.") var ids: [Int64]

    func validate() throws {
        if ids.isEmpty { throw ValidationError("Name at least one digest id.") }
    }

    func run() async throws { emit(try digestOperator(global).retry(ids, force: force), output) }
}

/// `roundup stats`.
struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats", abstract: "Counts by digest state, sends saved and credits outstanding.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var output: OutputOptions

    func run() async throws { emit(try digestOperator(global).stats(), output) }
}
