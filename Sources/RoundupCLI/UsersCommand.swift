import ArgumentParser
import Foundation
import Roundup

/// `roundup users import|list|bind|unbind`.
struct UsersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "users", abstract: "Manage the roster: who is bound to which openid.",
        subcommands: [Import.self, List.self, Bind.self, Unbind.self])

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Bind users in bulk from a CSV file with columns im_user_id,openid,name,profile.")

        @OptionGroup var global: GlobalOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The CSV file (header row first).") var file: String

        func run() async throws {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw OperatorFailure("Cannot read \(file).")
            }
            guard let text = String(data: data, encoding: .utf8) else {
                throw OperatorFailure("\(file) is not UTF-8 text.")
            }
            let (loaded, store) = try global.openStore()
            let report = try rosterOperator(store: store, config: loaded.config).importRoster(csv: text)
            emit(report, output)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List known users and their bindings.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var output: OutputOptions

        func run() async throws {
            let (loaded, store) = try global.openStore()
            emit(try rosterOperator(store: store, config: loaded.config).list(), output)
        }
    }

    struct Bind: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Bind a user to an openid, name or profile (merges; an empty --name or --profile clears it).")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The IM UserID.") var id: String
        @Argument(help: "The WeChat openid (optional: a teacher has only a name).") var openid: String?
        @Option(help: "Display name shown in digests.") var name: String?
        @Option(help: "Digest profile from digest.profiles.") var profile: String?

        func run() async throws {
            let (loaded, store) = try global.openStore()
            let op = rosterOperator(store: store, config: loaded.config)
            emit(try op.bind(id, openid: openid, name: name, profile: profile), output)
        }
    }

    struct Unbind: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a user's openid; pending messages stay.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The IM UserID.") var id: String

        func run() async throws {
            let (loaded, store) = try global.openStore()
            emit(try rosterOperator(store: store, config: loaded.config).unbind(id), output)
        }
    }
}

/// `roundup credits [USER]`.
struct CreditsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "credits", abstract: "Show subscription credits per openid and template.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "Only this user's credits.") var user: String?

    func run() async throws {
        let (loaded, store) = try global.openStore()
        emit(try rosterOperator(store: store, config: loaded.config).credits(user: user), output)
    }
}

/// The roster operator the commands share. A bind or import that changes a user's profile
/// re-times that user's open digest here, in this process; a running `serve` reads the new due
/// time from the database.
func rosterOperator(store: RoundupStore, config: RoundupConfig) -> RosterOperator {
    RosterOperator(store: store, config: config, now: wallNow, afterBindingChange: { changes in
        try DigestLifecycle.retime(store: store, config: config, now: wallNow(), users: changes.filter(\.profileChanged).map(\.userID),
                                   reason: "profile changed")
    })
}
