import Foundation
import GRDB
import Synchronization
import Testing

@testable import Roundup

/// A database file that is not a database, is cut short or has a damaged page (issue 8): the open
/// fails with one sentence naming the file, what `PRAGMA quick_check` found and how to restore it,
/// `serve` and the other commands exit 1, and `roundup check` reports damage the open never reads.
/// A sound file is never scanned at open.
@Suite("Damaged database files")
struct CorruptDatabaseTests {
    /// A test folder with a config whose database is `roundup.sqlite` inside it.
    struct Site {
        let dir: URL
        var database: String { dir.appendingPathComponent("roundup.sqlite").path }
        var config: String { dir.appendingPathComponent("roundup.yaml").path }

        init() throws {
            dir = try TestSupport.temporaryDirectory()
            try "storage:\n  path: \(dir.appendingPathComponent("roundup.sqlite").path)\nserver:\n  port: 0\n"
                .write(toFile: dir.appendingPathComponent("roundup.yaml").path, atomically: true, encoding: .utf8)
        }

        func remove() { try? FileManager.default.removeItem(at: dir) }

        /// A real database with a few hundred credit rows (so tables span several pages), its
        /// WAL checkpointed into the file and emptied, so the file alone holds every page.
        func makeDatabase() throws {
            let store = try RoundupStore.open(path: database)
            for i in 0..<300 {
                try store.applyCredit(openid: "o_parent_\(i)", templateID: "T1", change: .add(1), eventKey: "k\(i)", now: Timestamp(ServiceHarness.start))
            }
            let busy = try DatabaseQueue(path: database).writeWithoutTransaction { db in
                try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)").map { $0[0] as Int } ?? 1
            }
            #expect(busy == 0, "the WAL could not be checkpointed")
            #expect(size(database + "-wal") == 0)
            #expect(size(database) > 300 * 50)
            withExtendedLifetime(store) {}
        }

        /// A file's size in bytes (0 when it does not exist).
        func size(_ path: String) -> Int {
            ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
        }

        /// The database's page size.
        func pageSize() throws -> Int {
            try DatabaseQueue(path: database).read { db in try Int.fetchOne(db, sql: "PRAGMA page_size") ?? 0 }
        }

        /// Overwrites the root page of `table` with garbage, like a bad sector would.
        func corruptRootPage(of table: String) throws {
            let (root, pageSize) = try DatabaseQueue(path: database).read { db in
                (try Int.fetchOne(db, sql: "SELECT rootpage FROM sqlite_master WHERE name = ?", arguments: [table]) ?? 0,
                 try Int.fetchOne(db, sql: "PRAGMA page_size") ?? 0)
            }
            #expect(root > 1)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: database))
            try handle.seek(toOffset: UInt64((root - 1) * pageSize))
            try handle.write(contentsOf: Data((0..<pageSize).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }))
            try handle.close()
        }

        func run(_ arguments: [String]) async throws -> ProcessResult {
            try await runRoundup(arguments + ["--config", config], in: dir)
        }
    }

    /// Every command that opens the database.
    static let commands: [[String]] = [["serve"], ["pending"], ["users", "list"], ["credits"], ["stats"], ["check"], ["backup", "copy.sqlite"]]

    /// Checks the one-sentence refusal: exit 1, nothing on stdout, and on stderr (after `serve`'s
    /// config warnings) one line with the path, SQLite's words and the way back.
    func expectRefused(_ result: ProcessResult, _ site: Site, saying words: String, _ command: [String]) {
        #expect(result.status == 1, "\(command): \(result.stderr)")
        #expect(result.stdout.isEmpty, "\(command)")
        let lines = result.stderr.split(separator: "\n").map(String.init)
        #expect(lines.filter { !$0.hasPrefix("warning: ") }.count == 1, "\(command): \(result.stderr)")
        let line = lines.first { $0.hasPrefix("Cannot open the database \(site.database): the file is damaged or is not a SQLite database (") }
        #expect(line != nil, "\(command): \(result.stderr)")
        #expect(line?.contains(words) == true, "\(command): \(result.stderr)")
        #expect(line?.contains("restore it from a backup") == true, "\(command)")
        #expect(line?.contains("move \(site.database) and its -wal and -shm files aside") == true, "\(command)")
    }

    @Test("a file of random bytes: serve and every other command exit 1 saying it is not a database, and the file is left as it was")
    func randomBytes() async throws {
        let site = try Site()
        defer { site.remove() }
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        let bytes = Data((0..<16_384).map { _ -> UInt8 in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 56)
        })
        try bytes.write(to: URL(fileURLWithPath: site.database))
        for command in Self.commands {
            let result = try await site.run(command)
            expectRefused(result, site, saying: #"SQLite says "file is not a database" and PRAGMA quick_check cannot run on it"#, command)
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: site.database)) == bytes)
        #expect(!FileManager.default.fileExists(atPath: site.dir.appendingPathComponent("copy.sqlite").path))
    }

    @Test("a database cut short after its first pages is refused at open with what quick_check says")
    func truncated() async throws {
        let site = try Site()
        defer { site.remove() }
        try site.makeDatabase()
        let pageSize = try site.pageSize()
        #expect(pageSize > 0)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: site.database))
        try handle.truncate(atOffset: UInt64(pageSize))
        try handle.close()

        #expect(throws: StoreError.self) { try RoundupStore.open(path: site.database) }
        for command in [["serve"], ["users", "list"], ["check"]] {
            let result = try await site.run(command)
            expectRefused(result, site, saying: "PRAGMA quick_check", command)
        }
    }

    @Test("a damaged page that opening reads is refused with quick_check's findings, by serve, the CLI and check")
    func damagedPageReadAtOpen() async throws {
        let site = try Site()
        defer { site.remove() }
        try site.makeDatabase()
        try site.corruptRootPage(of: "grdb_migrations")

        let error = try #require(throws: StoreError.self) { try RoundupStore.open(path: site.database) }
        guard case .cannotOpen(let path, let reason) = error else {
            Issue.record("unexpected \(error)")
            return
        }
        #expect(path == site.database)
        #expect(reason.contains("PRAGMA quick_check found \"Page "), "\(reason)")
        for command in [["serve"], ["pending"], ["check"]] {
            let result = try await site.run(command)
            expectRefused(result, site, saying: "PRAGMA quick_check found \"", command)
        }
    }

    @Test("a damaged page that opening does not read leaves start-up alone (no scan at open), and roundup check finds it")
    func damagedPageFoundByCheck() async throws {
        let site = try Site()
        defer { site.remove() }
        try site.makeDatabase()
        let sound = try await site.run(["check"])
        #expect(sound.status == 0)
        #expect(sound.stdout == "database \(site.database) is sound\n")

        try site.corruptRootPage(of: "credits")
        // Opening touches the schema and migrations only: it succeeds, with no full scan.
        let store = try RoundupStore.open(path: site.database)
        #expect(try store.users().isEmpty)
        #expect(try !store.sqlite!.quickCheck().isEmpty)

        let listed = try await site.run(["users", "list"])
        #expect(listed.status == 0, "\(listed.stderr)")
        // A command that reads the bad page says the database is damaged and what to do.
        let credits = try await site.run(["credits"])
        #expect(credits.status == 1)
        #expect(credits.stderr.hasPrefix("The database is damaged (SQLite says \""), "\(credits.stderr)")
        #expect(credits.stderr.contains("run roundup check"))
        let check = try await site.run(["check"])
        #expect(check.status == 1)
        #expect(check.stdout.isEmpty)
        #expect(check.stderr.hasPrefix("The database \(site.database) failed PRAGMA quick_check: the file is damaged"), "\(check.stderr)")
        #expect(check.stderr.contains("PRAGMA quick_check found \""))
        #expect(check.stderr.lowercased().contains("page "), "\(check.stderr)")
        #expect(check.stderr.contains("restore it from a backup"))
    }
}
