import Foundation

/// The generator of every hostile case: SplitMix64, seeded per case.
typealias HostileRandom = SplitMix64

/// How many cases the generative suites run and from which seed, overridable from the environment
/// for longer local runs: `ROUNDUP_HOSTILE_SEED` (base seed), `ROUNDUP_HOSTILE_SCALE` (multiplies
/// every case count) and `ROUNDUP_HOSTILE_CASE` (runs only the case with that seed, in every loop).
enum HostileSettings {
    static let environment = ProcessInfo.processInfo.environment

    /// The base seed; a fixed default keeps CI deterministic.
    static let baseSeed: UInt64 = environment["ROUNDUP_HOSTILE_SEED"].flatMap(parseSeed) ?? 0x5EED_2025_0001

    /// Multiplies every case count (default 1).
    static let scale: Double = environment["ROUNDUP_HOSTILE_SCALE"].flatMap(Double.init).map { max($0, 0.01) } ?? 1

    /// When set, each loop runs only this case seed (as printed in a failure).
    static let onlyCase: UInt64? = environment["ROUNDUP_HOSTILE_CASE"].flatMap(parseSeed)

    /// `n` scaled by `ROUNDUP_HOSTILE_SCALE`, at least 1.
    static func cases(_ n: Int) -> Int { max(1, Int((Double(n) * scale).rounded())) }

    /// The seed of case `index` of loop `area`: distinct per loop, so loops do not explore in lockstep.
    static func caseSeed(area: String, index: Int) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in area.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
        var mixer = HostileRandom(seed: (baseSeed ^ hash) &+ UInt64(index) &* 0x9E37_79B9_7F4A_7C15)
        return mixer.next()
    }

    /// A seed written in decimal or as `0x…` hex.
    static func parseSeed(_ text: String) -> UInt64? {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        return t.hasPrefix("0x") ? UInt64(t.dropFirst(2), radix: 16) : UInt64(t)
    }

    static func hex(_ seed: UInt64) -> String { "0x" + String(seed, radix: 16) }
}
