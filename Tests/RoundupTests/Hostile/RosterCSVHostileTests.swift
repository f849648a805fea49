import Foundation
import GRDB
import Testing

@testable import Roundup

/// Generated hostile rosters against `RosterCSV` and `users import` (issue 8): all rows or none,
/// and every refusal names its lines.
@Suite("Hostile input: roster CSV")
struct RosterCSVHostileTests {
    static let profiles: Set<String> = ["clinic"]
    static let seeds = HostileSeeds.files("roster", extensions: ["csv"]) + HostileSeeds.regressions("csv")
    static let mutator = Mutator(format: .csv, seeds: seeds.map(HostileSeeds.bytes).filter(HostileSeeds.isSeed))

    /// The roster already in the database before each import: the class fixture's first rows.
    static let baseline = Array(HostileSeeds.text(TestSupport.fixture("roster/parents.csv")).split(separator: "\n").prefix(12))
        .joined(separator: "\n") + "\n"

    static let config: RoundupConfig = {
        var c = RoundupConfig.defaults
        c.digest.profiles = ["clinic": DigestProfile()]
        return c
    }()

    /// A migrated in-memory database holding the baseline roster, copied for each case (SQLite's
    /// backup of a small database is far cheaper than migrating a new one).
    static let template: DatabaseQueue = {
        let store = try! RoundupStore.inMemory()
        _ = try! RosterOperator(store: store, config: config, now: { Timestamp(milliseconds: 1_741_075_200_000) }, afterBindingChange: { _ in })
            .importRoster(csv: baseline)
        return store.sqlite!.writer as! DatabaseQueue
    }()

    /// A fresh database holding the baseline roster, and the operator that imports into it.
    static func rosterOperator() throws -> RosterOperator {
        let copy = try DatabaseQueue()
        try template.backup(to: copy)
        return RosterOperator(
            store: RoundupStore(engine: SQLiteEngine(writer: copy, path: nil)), config: config, now: { Timestamp(milliseconds: 1_741_075_200_000) },
            afterBindingChange: { _ in })
    }

    @Test("the roster fixtures, unmutated, keep every property")
    func seedsParse() throws {
        #expect(Self.seeds.count >= 2)
        for url in Self.seeds {
            #expect(HostileOracles.rosterRows(HostileSeeds.text(url), knownProfiles: Self.profiles).isEmpty, "\(url.lastPathComponent)")
            #expect(HostileOracles.rosterImport(HostileSeeds.text(url), operator: try Self.rosterOperator()).isEmpty, "\(url.lastPathComponent)")
        }
        #expect(try Self.rosterOperator().store.users().count == 11)
    }

    @Test("mutated rosters parse to valid unique rows in file order, or every problem names a line of the file")
    func mutatedRows() async throws {
        try await HostileLoop.run(
            area: "csv-rows", folder: "csv", ext: ".csv", count: 2000,
            generate: { Self.mutator.generate(&$0) }, bytes: { $0 },
            check: { HostileOracles.rosterRows(String(decoding: $0, as: UTF8.self), knownProfiles: Self.profiles) })
    }

    @Test("importing a mutated roster into a database changes all of its rows or nothing")
    func mutatedImports() async throws {
        try await HostileLoop.run(
            area: "csv-import", folder: "csv", ext: ".csv", count: 300,
            generate: { Self.mutator.generate(&$0) }, bytes: { $0 },
            check: { bytes in
                do {
                    return HostileOracles.rosterImport(String(decoding: bytes, as: UTF8.self), operator: try Self.rosterOperator())
                } catch {
                    return ["could not set up the database: \(error)"]
                }
            })
    }

    @Test("roundup users import refuses a broken roster with exit 1, names its lines, and leaves the users as they were")
    func cliImport() async throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let base = dir.appendingPathComponent("base.csv")
        try Data(Self.baseline.utf8).write(to: base)
        #expect(try await runRoundup(["users", "import", base.path], in: dir).status == 0)
        let before = try await runRoundup(["users", "list", "--json"], in: dir).stdout
        var refused = 0
        for seed in HostileLoop.seeds(area: "csv-cli", count: 40) {
            var rng = HostileRandom(seed: seed)
            var bytes = Self.mutator.generate(&rng)
            // Make it surely bad: a row with a space in its id, or bytes that are not UTF-8.
            bytes += rng.percent(50) ? Array("\nbad id,,x,\n".utf8) : [0xFF, 0xFE, 0x0A]
            let file = dir.appendingPathComponent("roster.csv")
            try Data(bytes).write(to: file)
            let r = try await runRoundup(["users", "import", file.path], in: dir)
            #expect(r.status == 1, "case \(HostileSettings.hex(seed)): \(r.stderr)")
            #expect(r.stdout.isEmpty)
            #expect(r.stderr.contains("line ") || r.stderr.contains("not UTF-8"), "case \(HostileSettings.hex(seed)): \(r.stderr)")
            refused += r.status == 1 ? 1 : 0
            if refused >= 6 { break }
        }
        #expect(refused >= 6)
        #expect(try await runRoundup(["users", "list", "--json"], in: dir).stdout == before)
    }
}
