import Foundation
import Testing

/// The PostgreSQL server the tests share: skipped where there is none, but never under `CI=true`,
/// where a missing server fails these tests.
@Suite("PostgreSQL test server")
struct PostgresTestServerTests {
    @Test(
        "a fresh database answers a query through psql",
        .enabled(if: PostgresTestServer.skipReason == nil, "no PostgreSQL server binaries and ROUNDUP_TEST_POSTGRES_URL unset"))
    func freshDatabaseAnswers() async throws {
        guard let url = try await PostgresTestServer.freshDatabaseURL() else { return }
        let psql = try #require(PostgresTestServer.psqlClient)
        let result = try await runTool(
            psql, ["-X", "-At", "-d", url, "-c", "select 1", "-c", "select current_database()"], in: URL(fileURLWithPath: "/"))
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "1")
        #expect(url.contains("/\(lines.last ?? "?")?"), "\(url) names another database than \(lines.last ?? "none")")
        await PostgresTestServer.dropDatabase(url)
    }

    @Test(
        "two fresh databases have different names, and a dropped one is gone",
        .enabled(if: PostgresTestServer.skipReason == nil, "no PostgreSQL server binaries and ROUNDUP_TEST_POSTGRES_URL unset"))
    func freshDatabasesDiffer() async throws {
        guard let first = try await PostgresTestServer.freshDatabaseURL(),
            let second = try await PostgresTestServer.freshDatabaseURL()
        else { return }
        let shape = /^postgres(ql)?:\/\/.*\/t_[0-9a-f]{16}\?(.*&)?sslmode=disable(&.*)?$/
        #expect(first.wholeMatch(of: shape) != nil, "\(first)")
        #expect(second.wholeMatch(of: shape) != nil, "\(second)")
        #expect(first != second)
        await PostgresTestServer.dropDatabase(first)
        await PostgresTestServer.dropDatabase(second)
        let psql = try #require(PostgresTestServer.psqlClient)
        let gone = try await runTool(psql, ["-X", "-At", "-d", first, "-c", "select 1"], in: URL(fileURLWithPath: "/"))
        #expect(gone.status != 0)
        #expect(gone.stderr.contains("does not exist"), "\(gone.stderr)")
    }
}
