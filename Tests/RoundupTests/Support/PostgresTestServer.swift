import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A PostgreSQL server for the tests, handing each test its own new, empty database.
///
/// The server is, in this order:
/// - the one `ROUNDUP_TEST_POSTGRES_URL` names: a `postgres://` URL of a superuser and a database
///   to connect to for `CREATE DATABASE` (`.ci/run` starts a throwaway cluster and exports it);
/// - outside CI, a cluster started from the newest server binaries under
///   `/usr/lib/postgresql/<version>/bin` (Debian's `postgresql` package), or one an earlier test
///   run left running;
/// - else none, and PostgreSQL tests are skipped with `skipReason`.
///
/// Under `CI=true` they are never skipped: an unset `ROUNDUP_TEST_POSTGRES_URL` or an unreachable
/// server is an error.
///
/// The local cluster lives in `<temporary directory>/roundup-test-postgres-<port>` (the data in
/// `data/`, which is also its unix socket folder, the server log in `server.log`), listens on
/// 127.0.0.1 only with trust authentication, and is left running when the test process exits, so
/// the next run reuses it instead of paying for `initdb` again. A run starts one only when it finds
/// none it can use, after removing the folders whose server is gone; a run that reuses one drops
/// the databases made by this type over an hour ago. Stop it with `pg_ctl -D
/// <temporary directory>/roundup-test-postgres-<port>/data stop` (as `postgres` when root).
enum PostgresTestServer {
    /// The environment variable naming an existing server.
    static let urlVariable = "ROUNDUP_TEST_POSTGRES_URL"

    /// A `postgres://…/t_<16 hex digits>?sslmode=disable` URL of a newly created empty database, or
    /// nil when PostgreSQL tests are skipped (see `skipReason`). Throws when the server is missing
    /// under `CI=true`, unreachable, or fails to start.
    static func freshDatabaseURL() async throws -> String? {
        guard let server = try await server() else { return nil }
        var bits = UInt64.random(in: .min ... .max)
        var hex = ""
        for _ in 0..<16 {
            hex.append(String(bits & 0xf, radix: 16))
            bits >>= 4
        }
        let name = "t_" + hex
        let result = try await psql(server.adminURL, ["CREATE DATABASE \(name)"])
        guard result.status == 0 else {
            throw PostgresTestServerError(
                description: "CREATE DATABASE \(name) failed on \(server.adminURL): \(result.stderr.trimmed)")
        }
        return server.url(database: name)
    }

    /// Drops a database `freshDatabaseURL` made, closing its connections; does nothing for any
    /// other URL or when there is no server (best effort: errors are ignored).
    static func dropDatabase(_ url: String) async {
        guard let path = URLComponents(string: url)?.path, case let name = String(path.drop { $0 == "/" }),
            isTestDatabaseName(name), let server = try? await server()
        else { return }
        _ = try? await psql(server.adminURL, ["DROP DATABASE IF EXISTS \(name) WITH (FORCE)"])
    }

    /// Why PostgreSQL tests are skipped, as a sentence, or nil when they run; printed to stderr the
    /// first time it is not nil. Computed from the environment and the file system alone, so
    /// `.enabled(if:)` can use it.
    static var skipReason: String? {
        let environment = ProcessInfo.processInfo.environment
        if !(environment[urlVariable] ?? "").isEmpty || environment["CI"] == "true" || serverBinaries != nil { return nil }
        let reason = "PostgreSQL tests skipped: no server binaries under /usr/lib/postgresql and \(urlVariable) unset"
        if !skipPrinted.exchange(true, ordering: .relaxed) { FileHandle.standardError.write(Data((reason + "\n").utf8)) }
        return reason
    }

    private static let skipPrinted = Atomic<Bool>(false)

    /// The `psql` client: the newest server version's, else the first on `PATH`.
    static let psqlClient: URL? = {
        if let bin = serverBinaries { return bin.appendingPathComponent("psql") }
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init) + ["/usr/bin"]
        return dirs.map { URL(fileURLWithPath: $0).appendingPathComponent("psql") }
            .first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }()

    /// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`, `pg_ctl`, `postgres` and `psql`.
    static let serverBinaries: URL? = {
        let root = "/usr/lib/postgresql"
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        let usable = versions.filter { version in
            ["initdb", "pg_ctl", "postgres", "psql"].allSatisfy {
                FileManager.default.isExecutableFile(atPath: "\(root)/\(version)/bin/\($0)")
            }
        }
        let numbers = { (version: String) in version.split(separator: ".").map { Int($0) ?? 0 } }
        let newest = usable.max { numbers($0).lexicographicallyPrecedes(numbers($1)) }
        return newest.map { URL(fileURLWithPath: "\(root)/\($0)/bin") }
    }()

    /// Runs SQL statements with `psqlClient` against `url`, one `-c` each (so `CREATE DATABASE` and
    /// `DROP DATABASE` run outside a transaction), printing bare unaligned rows.
    static func psql(_ url: String, _ statements: [String], timeout: Double = 60) async throws -> ProcessResult {
        guard let client = psqlClient else {
            throw PostgresTestServerError(description: "there is no psql client (Debian: apt-get install postgresql-client)")
        }
        var environment = ProcessInfo.processInfo.environment
        environment["PGCONNECT_TIMEOUT"] = "10"
        let arguments = ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url] + statements.flatMap { ["-c", $0] }
        return try await runTool(client, arguments, in: URL(fileURLWithPath: "/"), environment: environment, timeout: timeout)
    }

    // MARK: - Finding the server once per process

    /// The server every test of this process shares, or nil when skipped; the first caller finds
    /// or starts it, the others await the same task (and share its error, so a broken server fails
    /// each test at once instead of each retrying the start).
    private static let resolved = Mutex<Task<Server?, any Error>?>(nil)

    private static func server() async throws -> Server? {
        let task = resolved.withLock { current in
            if let current { return current }
            let started = Task { try await resolveServer() }
            current = started
            return started
        }
        return try await task.value
    }

    private static func resolveServer() async throws -> Server? {
        let environment = ProcessInfo.processInfo.environment
        if let given = environment[urlVariable], !given.isEmpty {
            guard let parts = URLComponents(string: given), ["postgres", "postgresql"].contains(parts.scheme ?? "") else {
                throw PostgresTestServerError(description: "\(urlVariable) is not a postgres:// URL: \(given)")
            }
            let server = Server(adminURL: given)
            try await waitUntilAccepting(server, seconds: 30)
            return server
        }
        if environment["CI"] == "true" {
            throw PostgresTestServerError(
                description: "CI=true but \(urlVariable) is unset: .ci/run starts a PostgreSQL server and exports its URL there")
        }
        guard let bin = serverBinaries else {
            _ = skipReason
            return nil
        }
        return try await LocalCluster.findOrStart(bin: bin)
    }

    /// Polls `select 1` until the server answers, for at most `seconds`, sleeping between tries.
    fileprivate static func waitUntilAccepting(_ server: Server, seconds: Double) async throws {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while true {
            let result = try await psql(server.adminURL, ["select 1"], timeout: 15)
            if result.status == 0, result.stdout.trimmed == "1" { return }
            guard ContinuousClock.now < deadline else {
                throw PostgresTestServerError(
                    description: "the PostgreSQL server at \(server.adminURL) does not accept connections: \(result.stderr.trimmed)")
            }
            try await Task.sleep(for: .milliseconds(250))
        }
    }

    /// Whether `name` has the shape of a database `freshDatabaseURL` makes.
    fileprivate static func isTestDatabaseName(_ name: String) -> Bool {
        name.count == 18 && name.hasPrefix("t_") && name.dropFirst(2).allSatisfy { "0123456789abcdef".contains($0) }
    }
}

/// Why the tests have no usable PostgreSQL server.
struct PostgresTestServerError: Error, CustomStringConvertible {
    let description: String
}

/// A reachable server, as the URL of a database to run `CREATE DATABASE` in.
private struct Server: Sendable {
    let adminURL: String

    /// The admin URL with the database replaced, `sslmode=disable` added when it names none.
    func url(database name: String) -> String {
        guard var parts = URLComponents(string: adminURL) else { return adminURL }
        parts.path = "/" + name
        var query = parts.queryItems ?? []
        if !query.contains(where: { $0.name == "sslmode" }) { query.append(URLQueryItem(name: "sslmode", value: "disable")) }
        parts.queryItems = query
        return parts.string ?? adminURL
    }
}

/// The cluster the test processes of this machine share when no URL is given (see
/// `PostgresTestServer`).
private enum LocalCluster {
    static let folderPrefix = "roundup-test-postgres-"
    static var parent: URL { FileManager.default.temporaryDirectory }

    /// Reuses the cluster an earlier run left answering, else removes dead folders and starts one.
    /// A lock file serialises this between test processes, so two runs starting together neither
    /// both start a cluster nor remove the folder the other is filling.
    static func findOrStart(bin: URL) async throws -> Server {
        let lock = parent.appendingPathComponent("roundup-test-postgres.lock").path
        let (server, reused) = try await withFileLock(lock, timeout: 180) { () async throws -> (Server, Bool) in
            for (folder, port) in existingFolders() {
                switch await probe(folder: folder, port: port, bin: bin) {
                case .ours:
                    return (Server(adminURL: adminURL(port: port)), true)
                case .silent:
                    await discard(folder: folder, bin: bin)
                case .busyOrForeign:
                    continue
                }
            }
            var lastError: (any Error)?
            for _ in 0..<5 {
                // Below Linux's ephemeral range, so outgoing connections do not take it meanwhile.
                let port = Int.random(in: 20_000..<32_768)
                let folder = parent.appendingPathComponent("\(folderPrefix)\(port)")
                if FileManager.default.fileExists(atPath: folder.path) { continue }
                do {
                    return (try await start(folder: folder, port: port, bin: bin), false)
                } catch let error as PortTaken {
                    lastError = error
                    await discard(folder: folder, bin: bin)
                }
            }
            throw PostgresTestServerError(
                description: "no free port for a PostgreSQL test cluster after 5 tries: \(lastError.map { "\($0)" } ?? "every folder name was taken")")
        }
        // Outside the lock: dropping many databases takes a while.
        if reused { await dropOldDatabases(server) }
        return server
    }

    static func adminURL(port: Int) -> String { "postgres://postgres@127.0.0.1:\(port)/postgres?sslmode=disable" }

    /// The `roundup-test-postgres-<port>` folders under the temporary directory.
    static func existingFolders() -> [(URL, Int)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: parent.path)) ?? []
        return names.sorted().compactMap { name in
            guard name.hasPrefix(folderPrefix), let port = Int(name.dropFirst(folderPrefix.count)) else { return nil }
            return (parent.appendingPathComponent(name), port)
        }
    }

    enum Probe { case ours, silent, busyOrForeign }

    /// `ours`: the server on the port serves this folder's data; `silent`: nothing answers there;
    /// `busyOrForeign`: something answers but cannot be used (say every connection slot is taken
    /// by another test run), so the folder is left alone.
    static func probe(folder: URL, port: Int, bin: URL) async -> Probe {
        let data = folder.appendingPathComponent("data").path
        guard FileManager.default.fileExists(atPath: data + "/postmaster.pid") else { return .silent }
        let ready = try? await runTool(
            bin.appendingPathComponent("pg_isready"), ["-q", "-h", "127.0.0.1", "-p", "\(port)", "-t", "5"],
            in: URL(fileURLWithPath: "/"), timeout: 15)
        // pg_isready: 0 accepting, 1 rejecting (starting or stopping), 2 no response.
        guard let ready, ready.status == 0 || ready.status == 1 else { return .silent }
        let shown = try? await PostgresTestServer.psql(adminURL(port: port), ["SHOW data_directory"], timeout: 15)
        return shown?.status == 0 && shown?.stdout.trimmed == data ? .ours : .busyOrForeign
    }

    /// Stops the folder's server if its pid file names a live postgres of this folder, then
    /// removes the folder (best effort). The pid is checked first: a stale file may name a pid
    /// the system has since given to another process.
    static func discard(folder: URL, bin: URL) async {
        let data = folder.appendingPathComponent("data").path
        if let pidFile = try? String(contentsOfFile: data + "/postmaster.pid", encoding: .utf8),
            let pid = pidFile.split(separator: "\n").first.flatMap({ Int($0) }),
            let command = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline")),
            String(decoding: command, as: UTF8.self).contains(data)
        {
            _ = try? await runAsServerUser(bin.appendingPathComponent("pg_ctl"), ["-D", data, "-m", "immediate", "-w", "stop"], timeout: 60)
        }
        try? FileManager.default.removeItem(at: folder)
    }

    /// The lost race for a port: the server log says the address is in use.
    struct PortTaken: Error, CustomStringConvertible { let description: String }

    /// Creates the folder, runs `initdb` and starts the server on `port`.
    static func start(folder: URL, port: Int, bin: URL) async throws -> Server {
        let data = folder.appendingPathComponent("data").path
        let log = folder.appendingPathComponent("server.log").path
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        if geteuid() == 0 {
            // The server refuses to run as root: the folder belongs to the postgres user.
            guard let user = getpwnam("postgres") else {
                try? FileManager.default.removeItem(at: folder)
                throw PostgresTestServerError(
                    description: "running as root, and there is no postgres user to run the PostgreSQL test cluster as")
            }
            guard chown(folder.path, user.pointee.pw_uid, user.pointee.pw_gid) == 0 else {
                try? FileManager.default.removeItem(at: folder)
                throw PostgresTestServerError(description: "cannot hand \(folder.path) to the postgres user (errno \(errno))")
            }
        }
        let initdb = try await runAsServerUser(
            bin.appendingPathComponent("initdb"),
            ["-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"], timeout: 300)
        guard initdb.status == 0 else {
            try? FileManager.default.removeItem(at: folder)
            throw PostgresTestServerError(description: "initdb failed for \(data): \(initdb.stdout.trimmed) \(initdb.stderr.trimmed)")
        }
        // max_connections: the parallel tests plus three `roundup serve` with a pool of 10 each;
        // shared_buffers small enough that this starts anywhere. No fsync: the data is throwaway.
        let options = [
            "-c listen_addresses=127.0.0.1", "-p \(port)", "-c unix_socket_directories='\(data)'", "-c max_connections=400",
            "-c shared_buffers=32MB", "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
        ].joined(separator: " ")
        let started = try await runAsServerUser(
            bin.appendingPathComponent("pg_ctl"), ["-D", data, "-l", log, "-w", "-t", "60", "-o", options, "start"],
            leavesServerRunning: true, timeout: 120)
        let logText = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        if started.status != 0 {
            if logText.contains("could not bind") { throw PortTaken(description: logText.trimmed) }
            await discard(folder: folder, bin: bin)
            throw PostgresTestServerError(
                description: "the PostgreSQL test cluster in \(folder.path) did not start: \(started.stderr.trimmed)\n\(logText.trimmed)")
        }
        let server = Server(adminURL: adminURL(port: port))
        do {
            try await PostgresTestServer.waitUntilAccepting(server, seconds: 30)
        } catch {
            await discard(folder: folder, bin: bin)
            throw error
        }
        return server
    }

    /// Drops the databases `freshDatabaseURL` made over an hour ago (the age of their
    /// `PG_VERSION` file), so a reused cluster does not grow without bound; best effort.
    static func dropOldDatabases(_ server: Server) async {
        let query = """
            SELECT datname FROM pg_database WHERE datname ~ '^t_[0-9a-f]{16}$' \
            AND (pg_stat_file('base/' || oid || '/PG_VERSION')).modification < now() - interval '1 hour'
            """
        guard let listed = try? await PostgresTestServer.psql(server.adminURL, [query]), listed.status == 0 else { return }
        let names = listed.stdout.split(separator: "\n").map(String.init).filter(PostgresTestServer.isTestDatabaseName)
        guard !names.isEmpty else { return }
        _ = try? await PostgresTestServer.psql(server.adminURL, names.map { "DROP DATABASE IF EXISTS \($0) WITH (FORCE)" }, timeout: 300)
    }

    /// Runs a server tool as the postgres user when this process is root (through `runuser`),
    /// else as this user; from `/`, which the postgres user can enter. `leavesServerRunning`: the
    /// tool starts a server that outlives it (`pg_ctl start`), see `closingInheritedDescriptors`.
    static func runAsServerUser(
        _ tool: URL, _ arguments: [String], leavesServerRunning: Bool = false, timeout: Double
    ) async throws -> ProcessResult {
        var command = [tool.path] + arguments
        if geteuid() == 0 {
            let runuser = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"].first { FileManager.default.isExecutableFile(atPath: $0) }
            guard let runuser else {
                throw PostgresTestServerError(description: "running as root, and there is no runuser to start PostgreSQL as the postgres user")
            }
            command = [runuser, "-u", "postgres", "--"] + command
        }
        if leavesServerRunning { command = ["/bin/bash", "-c", closingInheritedDescriptors, "bash"] + command }
        return try await runTool(
            URL(fileURLWithPath: command[0]), Array(command.dropFirst()), in: URL(fileURLWithPath: "/"), timeout: timeout)
    }

    /// A bash script running its arguments as a command with every descriptor above 2 closed,
    /// while bash keeps its own until the command exits. Foundation's `Process` learns that a
    /// child ended when the last copy of a socket it hands the child is closed; a server that
    /// `pg_ctl` leaves running would inherit that copy, and `runTool` would wait for as long as
    /// the server runs.
    static let closingInheritedDescriptors = #"""
        closes=""
        for fd in /proc/$$/fd/*; do n=${fd##*/}; if [ "$n" -gt 2 ]; then closes+=" $n>&-"; fi; done
        eval "\"\$@\"$closes"
        status=$?
        exit $status
        """#

    /// Runs `body` holding an exclusive `flock` on `path`, polling for it with short sleeps (a
    /// blocking `flock` would hold a thread of the cooperative pool). Closing the file releases it,
    /// and so does the process ending.
    static func withFileLock<T>(_ path: String, timeout: Double, _ body: () async throws -> T) async throws -> T {
        // O_CLOEXEC: a server started meanwhile must not inherit the descriptor, or it would hold
        // the lock for as long as it runs.
        var fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o666)
        if fd < 0 { fd = open(path, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { throw PostgresTestServerError(description: "cannot open the lock file \(path) (errno \(errno))") }
        defer { close(fd) }
        let deadline = ContinuousClock.now + .seconds(timeout)
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard ContinuousClock.now < deadline else {
                throw PostgresTestServerError(description: "another test process held \(path) for over \(Int(timeout)) s")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        return try await body()
    }
}

extension String {
    /// The text without surrounding whitespace and newlines.
    fileprivate var trimmed: String { trimmingCharacters(in: .whitespacesAndNewlines) }
}
