import ArgumentParser
import Foundation
import Roundup

/// `roundup storage`: moving Roundup's data between databases.
struct StorageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage", abstract: "Move Roundup's data between databases.", subcommands: [StorageCopyCommand.self])
}

/// `roundup storage copy --from FILE`: an SQLite database into the configured, empty PostgreSQL.
struct StorageCopyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "copy",
        abstract: "Copy an SQLite database into the PostgreSQL database storage.url names, which must be empty.",
        discussion: "Stop roundup serve on the SQLite file first. Everything is copied in one transaction, read back and compared "
            + "(rows and a SHA-256 per table) before it commits; digests that were sending become in_doubt.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var output: OutputOptions
    @Option(name: .long, help: "The SQLite database file to copy (roundup serve must not be running on it).")
    var from: String

    func run() async throws {
        let loaded = try global.load()
        guard let url = loaded.config.storage.url else {
            throw UsageFailure("roundup storage copy copies into PostgreSQL: set storage.url (or ROUNDUP_STORAGE_URL) to the target database.")
        }
        do {
            let source = try SQLiteCopySource.open(path: from)
            let store = try RoundupStore.open(loaded.config.storage)
            defer { store.postgres?.shutdown() }
            let result = try await StorageCopy.run(from: source, to: store, now: wallNow())
            emit(Report(storageCopy: result, from: from, to: url.location), output)
        } catch let error as StorageCopyError {
            throw OperatorFailure(error.description)
        }
    }
}
