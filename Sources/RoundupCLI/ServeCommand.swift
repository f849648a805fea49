import ArgumentParser
import Foundation
import Logging
import Roundup

/// `roundup serve`: the service.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Run the service: IM callbacks in, WeChat subscribe messages out.")

    @OptionGroup var global: GlobalOptions
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel: Logger.Level = .info

    func run() async throws {
        let loaded = try global.load()
        for warning in loaded.warnings { writeError("warning: \(warning)") }
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let runtime = try RoundupRuntime(config: loaded.config, logger: Logger(label: "roundup"))
        try await runtime.run(configPath: global.config)
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// `roundup usersig [IDENTIFIER] [--expire SECONDS]`.
struct UserSigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "usersig", abstract: "Print a UserSig for the IM admin account (or another identifier).")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "IM UserID (default: im.admin_identifier).") var identifier: String?
    @Option(help: "Validity in seconds.") var expire: Int64 = 86_400

    func run() async throws {
        let config = try global.load().config
        guard !config.im.secretKey.isEmpty, config.im.sdkAppID != 0 else {
            throw OperatorFailure("Set im.sdk_app_id and im.secret_key (ROUNDUP_IM_SECRET_KEY) to sign a UserSig.")
        }
        guard expire > 0 else { throw ValidationError("--expire must be a positive number of seconds.") }
        let sig = UserSig.generate(
            sdkAppID: config.im.sdkAppID, key: config.im.secretKey, identifier: identifier ?? config.im.adminIdentifier,
            expire: expire, time: Int64(Date().timeIntervalSince1970))
        print(sig)
    }
}
