import Dispatch
import Foundation
import Logging
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reloads `digest.*` and `templates.*` on SIGHUP or when the config file changes:
/// open digests are re-timed, template pauses lifted; an invalid file keeps the old config,
/// logs every problem and never exits. Other keys need a restart, which is logged.
public final class ConfigReloader: Service, Sendable {
    let path: String?
    let loader: ConfigLoader
    let live: LiveConfig
    let scheduler: DigestScheduler
    let store: RoundupStore
    let metrics: RoundupMetrics
    let logger: Logger
    let clock: any WallClock

    public init(path: String?, loader: ConfigLoader, live: LiveConfig, scheduler: DigestScheduler, store: RoundupStore,
                metrics: RoundupMetrics, logger: Logger, clock: any WallClock) {
        self.path = path
        self.loader = loader
        self.live = live
        self.scheduler = scheduler
        self.store = store
        self.metrics = metrics
        self.logger = logger
        self.clock = clock
    }

    public func run() async throws {
        let bell = WakeSignal()
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP)
        source.setEventHandler { bell.signal() }
        source.resume()
        defer { source.cancel() }
        let initial = modificationDate()
        await cancelWhenGracefulShutdown {
            var lastModified = initial
            while !Task.isCancelled {
                let signalled = await bell.wait(timeout: .seconds(2))
                if Task.isCancelled { return }
                let modified = self.modificationDate()
                guard signalled || modified != lastModified else { continue }
                lastModified = modified
                await self.reloadIfChanged()
            }
        }
    }

    private func modificationDate() -> Date? {
        guard let path else { return nil }
        return (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
    }

    /// Loads the file again and applies it when `digest.*` or `templates` changed. Returns
    /// whether the config in force changed.
    @discardableResult
    public func reloadIfChanged() async -> Bool {
        let loaded: LoadedConfig
        do {
            loaded = try loader.load(path: path)
        } catch {
            metrics.configReload(success: false)
            for problem in error.problems { logger.error("config reload refused; keeping the config in force", metadata: ["problem": "\(problem)"]) }
            return false
        }
        let old = live.snapshot
        var next = old
        next.digest = loaded.config.digest
        next.templates = loaded.config.templates
        let restartNeeded = loaded.config.server != old.server || loaded.config.storage != old.storage
            || loaded.config.wechat != old.wechat || loaded.config.im != old.im
        guard next != old else {
            if restartNeeded { logger.warning("config changes outside digest.* and templates take effect after a restart") }
            return false
        }
        live.replace(with: next)
        metrics.configReload(success: true)
        logger.info("config reloaded: digest and templates in force now")
        if restartNeeded { logger.warning("config changes outside digest.* and templates take effect after a restart") }
        if next.templates != old.templates {
            do {
                try await store.clearTemplatePauses()
            } catch {
                metrics.storeError(.pause)
                logger.error("cannot lift the template pauses after a config change", metadata: ["error": "\(error)"])
            }
        }
        await scheduler.retimeOpenDigests(reason: "config reloaded")
        scheduler.wake()
        return true
    }
}
