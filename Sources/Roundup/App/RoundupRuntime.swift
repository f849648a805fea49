import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// Everything one running Roundup shares: the config in force, the database, presence, metrics
/// and the services built on them. `serve`, the demo, the benchmark and the end-to-end tests all
/// build it the same way.
public struct RoundupRuntime: Sendable {
    public let config: LiveConfig
    public let store: RoundupStore
    public let presence: PresenceMap
    public let metrics: RoundupMetrics
    public let committer: GroupCommitter
    public let ingestor: Ingestor
    public let ledger: SubscriptionLedger
    public let fanout: GroupFanout
    /// Sends one digest: presence, render, the WeChat call and its outcome.
    public let sender: DigestSender
    /// What is due, and the send pipeline.
    public let scheduler: DigestScheduler
    /// Retention and the text purge.
    public let housekeeper: Housekeeper
    public let clock: any WallClock
    public let logger: Logger
    /// Set when a graceful stop begins (`/healthz` then answers 503).
    public let drain = DrainState()
    /// PostgreSQL: this instance's heartbeat, and the notifier that carries wake-ups and
    /// presence between instances. Nil on SQLite.
    public let heartbeat: InstanceHeartbeat?
    public let notifier: PostgresNotifier?

    /// Opens the database named by the config and wires the services.
    public init(config: RoundupConfig, clock: any WallClock = SystemWallClock(), logger: Logger) throws {
        let store = try RoundupStore.open(config.storage)
        self.init(config: config, store: store, clock: clock, logger: logger, imAPI: RoundupRuntime.imClient(config, clock: clock),
                  wechatAPI: config.wechat.isDryRun ? nil : WeChatAPIClient(baseURL: config.wechat.apiBaseURL))
    }

    /// The IM REST client the config describes, or nil without an SDKAppID and secret key.
    public static func imClient(_ config: RoundupConfig, clock: any WallClock) -> (any IMRestAPI)? {
        guard config.im.sdkAppID != 0, !config.im.secretKey.isEmpty else { return nil }
        return IMRestClient(configuration: IMRestConfiguration(
            baseURL: config.im.apiBaseURL, sdkAppID: config.im.sdkAppID, adminIdentifier: config.im.adminIdentifier,
            secretKey: config.im.secretKey, now: { clock.now }))
    }

    /// Wires the services over an open store; `imAPI` is IM's REST API (or a fake).
    /// `wechatAPI` nil means dry-run: digests are rendered and recorded, never sent.
    public init(config: RoundupConfig, store: RoundupStore, clock: any WallClock, logger: Logger, imAPI: (any IMRestAPI)?,
                wechatAPI: (any WeChatAPI)?) {
        self.config = LiveConfig(config)
        self.store = store
        self.presence = PresenceMap()
        self.metrics = RoundupMetrics()
        self.committer = GroupCommitter(store: store)
        self.clock = clock
        self.logger = logger
        let fanout = GroupFanout(store: store, presence: presence, config: self.config, clock: clock, api: imAPI, metrics: metrics, logger: logger)
        self.fanout = fanout
        self.ingestor = Ingestor(
            committer: committer, presence: presence, config: self.config, clock: clock, metrics: metrics, logger: logger,
            onGroupMessage: { fanout.signal() })
        let metrics = self.metrics
        let wechat = wechatAPI.map { api in
            SubscribeSender(api: api, tokens: AccessTokenManager(
                api: api, appID: config.wechat.appID, secret: config.wechat.appSecret,
                cache: StoreAccessTokenCache(store: store, clock: clock, metrics: metrics, logger: logger), now: { clock.now },
                onRefresh: { metrics.accessTokenRefreshes.increment() }, onFailure: { metrics.accessTokenFailures.increment() }))
        }
        let sender = DigestSender(store: store, committer: committer, presence: presence, config: self.config, clock: clock,
                                  metrics: metrics, logger: logger, imAPI: imAPI, wechat: wechat)
        self.sender = sender
        let scheduler = DigestScheduler(store: store, sender: sender, config: self.config, clock: clock, logger: logger)
        self.scheduler = scheduler
        self.housekeeper = Housekeeper(store: store, config: self.config, clock: clock, metrics: metrics, logger: logger)
        self.ledger = SubscriptionLedger(store: store, config: self.config, clock: clock, logger: logger,
                                         onCreditsGranted: { _ in scheduler.wake() })
        if let engine = store.postgres {
            self.heartbeat = InstanceHeartbeat(store: store, engine: engine, fingerprint: config.digest.fingerprint, clock: clock, logger: logger)
            let presence = self.presence
            let notifier = PostgresNotifier(
                engine: engine, logger: logger, onWake: { scheduler.wake() },
                onPresence: { notes in for n in notes { presence.applyRemote(user: n.user, online: n.online, eventTime: n.eventTime) } })
            presence.observe { user, online, time in notifier.publish(PresenceNote(user: user, online: online, eventTime: time)) }
            self.notifier = notifier
        } else {
            self.heartbeat = nil
            self.notifier = nil
        }
    }

    /// The background services, in the order a `ServiceGroup` starts them (and the reverse of
    /// the order it stops them): on PostgreSQL the heartbeat and the notifier, then the send
    /// pipeline (when `sending`), group fan-out and housekeeping. `serve` runs them with the HTTP
    /// application and the config reloader; the benchmark runs them around its load.
    public func backgroundServices(sending: Bool = true) -> [any Service] {
        let coordination: [any Service] = ([heartbeat, notifier] as [(any Service)?]).compactMap { $0 }
        return coordination + (sending ? [scheduler] : []) + [fanout, housekeeper]
    }

    /// Runs `backgroundServices(sending:)` around `body`, and stops them when it returns.
    public func withBackgroundServices<T: Sendable>(sending: Bool = true, _ body: () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for service in backgroundServices(sending: sending) {
                group.addTask { try await service.run() }
            }
            do {
                let result = try await body()
                group.cancelAll()
                try await group.waitForAll()
                return result
            } catch {
                group.cancelAll()
                throw error
            }
        }
    }

    /// The HTTP routes, each error as a JSON body.
    public func buildRouter() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: JSONErrorMiddleware(logger: logger))
        StatusController(store: store, gauges: StatusGauges(store: store, presence: presence, metrics: metrics, config: config, clock: clock, logger: logger),
                         drain: drain)
            .addRoutes(to: router)
        IMCallbackController(ingestor: ingestor, config: config, clock: clock, metrics: metrics, logger: logger)
            .addRoutes(to: router)
        WeChatPushController(ledger: ledger, config: config, logger: logger).addRoutes(to: router)
        let scheduler = self.scheduler
        let bindings = BindingService(
            store: store, profiles: { [config] in Set(config.snapshot.digest.profiles.keys) }, now: { [clock] in clock.timestamp },
            afterChange: { [store, config] changes in
                try DigestLifecycle.retime(store: store, config: config.snapshot, now: clock.timestamp,
                                           users: changes.filter(\.profileChanged).map(\.userID), reason: "profile changed")
                scheduler.wake()
            })
        AdminController(store: store, ledger: ledger, presence: presence, config: config, clock: clock, bindings: bindings)
            .addRoutes(to: router)
        AdminDigestController(store: store, config: config, clock: clock, onFlushed: { scheduler.wake() }).addRoutes(to: router)
        return router
    }

    /// The HTTP application on `server.host:server.port` (port 0 picks a free one, reported
    /// through `onServerRunning`). A client that stalls is disconnected after `timeouts.idle`, and
    /// one whose request has not arrived whole after `timeouts.request` is cut off (tests pass
    /// shorter ones; `serve` uses the standard constants, since the config has no key for them).
    public func buildApplication(
        timeouts: ConnectionTimeouts = .standard,
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let cfg = config.snapshot
        return Application(
            responder: RequestDeadlineResponder(base: buildRouter().buildResponder(), timeout: timeouts.request),
            server: .http1(configuration: .init(idleTimeout: TimeAmount(timeouts.idle))),
            configuration: .init(address: .hostname(cfg.server.host, port: cfg.server.port), serverName: "roundup"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? cfg.server.port) },
            logger: logger)
    }

    /// Runs the service until SIGTERM or SIGINT, then shuts down gracefully. Takes the database's
    /// single-writer lease first; `configPath` is re-read on SIGHUP or when it changes.
    public func run(configPath: String?, loader: ConfigLoader = ConfigLoader(),
                    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        // SQLite: one serve per file (a lock). PostgreSQL: any number, each with a heartbeat row.
        let lease = store.sqlite == nil ? nil : try ServeLease.acquire(store: store, now: clock.timestamp)
        defer { withExtendedLifetime(lease) {} }
        // Registered before the first claim, and before this instance answers anything.
        try await heartbeat?.beat()
        let cfg = config.snapshot
        if cfg.wechat.isDryRun {
            logger.warning("dry-run mode: digests are rendered and recorded as dry_run, never sent to WeChat",
                           metadata: ["reason": "\(cfg.wechat.dryRun ? "wechat.dry_run is true" : "no wechat.app_id/app_secret")"])
        }
        logger.info("roundup starting", metadata: ["database": "\(cfg.storage.url?.location ?? cfg.storage.path)"])
        let logger = self.logger
        let host = cfg.server.host
        let app = buildApplication { port in
            logger.info("listening", metadata: ["address": "\(host):\(port)"])
            await onServerRunning(port)
        }
        let reloader = ConfigReloader(
            path: configPath ?? (FileManager.default.fileExists(atPath: ConfigLoader.defaultPath) ? ConfigLoader.defaultPath : nil),
            loader: loader, live: config, scheduler: scheduler, store: store, metrics: metrics, logger: logger, clock: clock)
        // Later entries stop first: the drain gate (503 on /healthz while requests are still
        // served), the HTTP application, the reloader, the background services (sends in flight
        // finish), and last the notifier and the heartbeat (which releases unstarted claims).
        // Several instances sit behind a load balancer, which needs a moment to see the 503.
        // At most 2 s, and a third of instance_timeout, so that a stopping instance hands its
        // unstarted work over well before a dead one's would be taken.
        let drainPeriod: Duration = store.postgres.map { .milliseconds(Int64(min(2, $0.lease.timeoutSeconds / 3) * 1000)) } ?? .zero
        let group = ServiceGroup(
            services: backgroundServices() + [reloader, app, DrainGate(state: drain, period: drainPeriod)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        try await group.run()
    }
}
