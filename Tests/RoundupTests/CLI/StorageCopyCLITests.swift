import Foundation
import Testing

@testable import Roundup

/// `roundup storage copy` as an operator runs it: the built binary in a temporary folder.
@Suite("roundup CLI: storage copy")
struct StorageCopyCLITests {
    @Test("storage copy prints rows and a checksum per table (text and --json), exits 1 for a non-empty target, a held lease or a missing file, and 2 without storage.url")
    func storageCopy() async throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = "roundup-data/roundup.sqlite"

        let noURL = try await runRoundup(["storage", "copy", "--from", file], in: dir)
        #expect(noURL.status == 2)
        #expect(noURL.stdout.isEmpty)
        #expect(noURL.stderr.split(separator: "\n").count == 1)
        #expect(noURL.stderr.contains("set storage.url"))

        guard let urlA = try await PostgresTestServer.freshDatabaseURL(), let urlB = try await PostgresTestServer.freshDatabaseURL() else { return }
        let missing = try await runRoundup(["storage", "copy", "--from", file], in: dir, environment: ["ROUNDUP_STORAGE_URL": urlA])
        #expect(missing.status == 1)
        #expect(missing.stdout.isEmpty)
        #expect(missing.stderr == "There is no file \(file) to copy.\n")

        // The SQLite file as a stopped `serve` leaves it: closed, so its WAL is checkpointed away.
        let fixture: CopyFixture
        do {
            let store = try RoundupStore.open(path: dir.appendingPathComponent(file).path)
            fixture = try await StorageCopyTests.populate(store)
        }

        let text = try await runRoundup(["storage", "copy", "--from", file], in: dir, environment: ["ROUNDUP_STORAGE_URL": urlA])
        #expect(text.status == 0, "\(text.stderr)")
        let lines = text.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.split(separator: " ", omittingEmptySubsequences: true) == ["TABLE", "ROWS", "SHA-256"])
        let rows = Dictionary(uniqueKeysWithValues: lines.dropFirst().prefix(CopyTable.all.count).map { line in
            let cells = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            return (cells[0], (rows: Int(cells[1]) ?? -1, checksum: cells.count > 2 ? cells[2] : ""))
        })
        #expect(Set(rows.keys) == Set(CopyTable.all.map(\.name)))
        #expect(rows["messages"]?.rows == 8)
        #expect(rows["digests"]?.rows == 4)
        #expect(rows["users"]?.rows == 5)
        #expect(lines.count == CopyTable.all.count + 3)
        #expect(lines.dropFirst(CopyTable.all.count + 1).first?.hasPrefix("copied \(rows.values.reduce(0) { $0 + $1.rows }) rows in 12 tables from \(file) into PostgreSQL at 127.0.0.1:") == true)
        #expect(lines.last == "1 digest that was sending is now in_doubt (#\(fixture.sendingDigest)): the copy cannot know whether WeChat delivered it, so it is not resent; see roundup dead")
        #expect(!text.stdout.contains("postgres://"))

        let json = try await runRoundup(["storage", "copy", "--from", file, "--json"], in: dir, environment: ["ROUNDUP_STORAGE_URL": urlB])
        #expect(json.status == 0, "\(json.stderr)")
        let object = try parseJSON(json.stdout)
        #expect(object["schema"] as? Int == 1)
        #expect((object["in_doubt"] as? [Int]) == [Int(fixture.sendingDigest)])
        let tables = try #require(object["tables"] as? [[String: Any]])
        #expect(tables.compactMap { $0["table"] as? String } == CopyTable.all.map(\.name))
        for t in tables {
            let name = try #require(t["table"] as? String)
            // The same file gives the same counts and checksums, whichever target and format.
            #expect(t["rows"] as? Int == rows[name]?.rows, "\(name)")
            #expect(t["checksum"] as? String == rows[name]?.checksum, "\(name)")
            #expect(Set(t.keys) == ["table", "rows", "checksum"])
        }

        let again = try await runRoundup(["storage", "copy", "--from", file], in: dir, environment: ["ROUNDUP_STORAGE_URL": urlA])
        #expect(again.status == 1)
        #expect(again.stdout.isEmpty)
        #expect(again.stderr.split(separator: "\n").count == 1)
        #expect(again.stderr.contains("already holds Roundup data (rows in users, group_messages, digests, messages"))

        let store = try RoundupStore.open(path: dir.appendingPathComponent(file).path)
        let lease = try ServeLease.acquire(store: store, now: t0)
        let held = try await runRoundup(["storage", "copy", "--from", file], in: dir, environment: ["ROUNDUP_STORAGE_URL": urlA])
        withExtendedLifetime(lease) {}
        #expect(held.status == 1)
        #expect(held.stdout.isEmpty)
        #expect(held.stderr == "roundup serve (pid \(getpid())) is running on \(file): stop roundup serve first, so that nothing changes during the copy.\n")
    }
}
