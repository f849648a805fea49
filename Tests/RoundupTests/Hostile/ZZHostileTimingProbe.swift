import Foundation
import Testing

@testable import Roundup

@Suite("ZZ hostile timing probe")
struct ZZHostileTimingProbe {
    @Test func probe() {
        let clock = ContinuousClock()
        var inputs: [[UInt8]] = []
        let g = clock.measure {
            for seed in HostileLoop.seeds(area: "csv-rows", count: 1000) {
                var rng = HostileRandom(seed: seed)
                inputs.append(RosterCSVHostileTests.mutator.generate(&rng))
            }
        }
        let sizes = inputs.map(\.count).sorted()
        let texts = inputs.map { String(decoding: $0, as: UTF8.self) }
        let p = clock.measure { for t in texts { _ = try? RosterCSV.parseRecords(t) } }
        let r = clock.measure { for t in texts { _ = try? RosterCSV.rows(from: t, knownProfiles: ["clinic"]) } }
        let o = clock.measure { for t in texts { _ = HostileOracles.rosterRows(t, knownProfiles: ["clinic"]) } }
        var slowest: [(Duration, Int)] = []
        for t in texts { let d = clock.measure { _ = try? RosterCSV.rows(from: t, knownProfiles: ["clinic"]) }; slowest.append((d, t.utf8.count)) }
        slowest.sort { $0.0 > $1.0 }
        print("PROBE generate \(g) parse \(p) rows \(r) oracle \(o) median size \(sizes[sizes.count / 2]) max \(sizes.last!) total \(sizes.reduce(0, +))")
        print("PROBE slowest \(slowest.prefix(8))")
        let big = String(repeating: "a", count: 16_000)
        print("PROBE 16k plain \(clock.measure { _ = try? RosterCSV.parseRecords("im_user_id,name\nx,\(big)\n") })")
        let ws = String(repeating: " ", count: 16_000)
        print("PROBE 16k spaces \(clock.measure { _ = try? RosterCSV.parseRecords("im_user_id,name\nx,\(ws)\n") })")
        #expect(inputs.count == 1000)
    }
}
