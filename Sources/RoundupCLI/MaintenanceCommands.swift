import ArgumentParser
import Foundation
import Roundup

/// `roundup backup FILE`: an online copy of the database.
struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup", abstract: "Copy the database to a new file, safely, even while roundup serve runs.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The new file (must not exist).") var file: String

    func run() async throws {
        let (_, store) = try global.openStore()
        guard let sqlite = store.sqlite else {
            throw UsageFailure("roundup backup copies an SQLite file; back up PostgreSQL with pg_dump (and restore with pg_restore).")
        }
        try sqlite.backup(to: file)
        print("backed up \(store.path ?? "") to \(file)")
    }
}

/// `roundup check`: `PRAGMA quick_check` on the database. A file too damaged to open is
/// reported by the open itself, with quick_check's findings (exit 1 either way).
struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check", abstract: "Check the database file for corruption (PRAGMA quick_check).")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let (_, store) = try global.openStore()
        guard let sqlite = store.sqlite else {
            // Opening already connected and checked the schema's version against this Roundup.
            guard let postgres = store.postgres, await store.isHealthy() else { throw OperatorFailure("The database does not answer.") }
            let migrations = try postgres.appliedMigrations()
            print("\(postgres.location) answers; schema migrations \(migrations.joined(separator: ", ")) (this is Roundup \(RoundupVersion.current))")
            return
        }
        let path = store.path ?? ""
        let problems = try sqlite.quickCheck()
        guard problems.isEmpty else {
            throw OperatorFailure("The database \(path) failed PRAGMA quick_check: \(SQLiteEngine.damageReport(path: path, .findings(problems))).")
        }
        print("database \(path) is sound")
    }
}

/// `roundup instances`: the running `serve` (on SQLite, the holder of the database's lock).
struct InstancesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "instances", abstract: "Show the roundup serve that owns the database now.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var output: OutputOptions

    func run() async throws {
        let (_, store) = try global.openStore()
        emit(try await InstancesReport.make(store: store, now: wallNow()), output)
    }
}
