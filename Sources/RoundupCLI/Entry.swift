import ArgumentParser
import Foundation
import Roundup

// Exit codes: 0 success, 1 failure (stdout empty, one sentence on stderr),
// 2 bad usage or config.
func writeError(_ text: String) {
    FileHandle.standardError.write(Data((text.hasSuffix("\n") ? text : text + "\n").utf8))
}

@main
struct RoundupMain {
    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        let command: any ParsableCommand
        do {
            command = try RoundupCommand.parseAsRoot(arguments)
        } catch {
            let code = RoundupCommand.exitCode(for: error)
            if code == .success {
                print(RoundupCommand.fullMessage(for: error))
                exit(0)
            }
            writeError(RoundupCommand.fullMessage(for: error))
            exit(2)
        }

        do {
            try await dispatch(command)
            exit(0)
        } catch let error as ConfigError {
            for problem in error.problems { writeError("config: \(problem)") }
            exit(2)
        } catch let error as RosterImportError {
            writeError("Nothing was imported: \(error.problems.count) bad row\(error.problems.count == 1 ? "" : "s").")
            for problem in error.problems { writeError("line \(problem.line): \(problem.message)") }
            exit(1)
        } catch let error as OperatorFailure {
            writeError(error.message)
            exit(1)
        } catch let error as UsageFailure {
            writeError(error.message)
            exit(2)
        } catch let error as LeaseError {
            // Spelled exactly as documented ("another roundup serve (pid N) owns PATH"), for scripts that look for it.
            writeError(error.description)
            exit(1)
        } catch let error as StoreError {
            writeError(error.description.prefix(1).uppercased() + error.description.dropFirst() + ".")
            exit(1)
        } catch let error as ExitCode {
            exit(error.rawValue)
        } catch {
            if let damage = SQLiteEngine.damageHint(for: error) {
                // A bad page met after the open: say so plainly rather than print SQLite's error.
                writeError(damage)
                exit(1)
            }
            let code = RoundupCommand.exitCode(for: error)
            if code == .success {
                print(RoundupCommand.fullMessage(for: error))
                exit(0)
            }
            writeError(RoundupCommand.fullMessage(for: error))
            exit(code == .validationFailure ? 2 : 1)
        }
    }

    /// Runs the parsed command, calling the `async` `run()` of async commands.
    static func dispatch(_ command: any ParsableCommand) async throws {
        if var asyncCommand = command as? any AsyncParsableCommand {
            try await runAsync(&asyncCommand)
        } else {
            var sync = command
            try sync.run()
        }
    }

    static func runAsync<C: AsyncParsableCommand>(_ command: inout C) async throws {
        try await command.run()
    }
}
