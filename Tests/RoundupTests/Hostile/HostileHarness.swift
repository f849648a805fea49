import Foundation
import Testing

/// Runs generative loops and reports their failures: each case comes from its own seed, so a
/// failure names that seed (rerun it alone with `ROUNDUP_HOSTILE_CASE`), shows the start of the
/// input and saves all of it, ready to move into `Fixtures/hostile/<folder>/`.
enum HostileLoop {
    /// At most this many failing cases are reported one by one per loop.
    static let reportedFailures = 3

    /// The seeds of a loop's cases: `count` (scaled) of them, or only the one asked for.
    static func seeds(area: String, count: Int) -> [UInt64] {
        if let only = HostileSettings.onlyCase { return [only] }
        return (0..<HostileSettings.cases(count)).map { HostileSettings.caseSeed(area: area, index: $0) }
    }

    /// Generates and checks `count` cases; returns how many ran. The loop yields every few
    /// cases: the cooperative pool has one thread per core, and a loop that held one for seconds
    /// would stall every other test's server and clients in the meantime.
    @discardableResult
    static func run<Input>(
        area: String, folder: String, ext: String, count: Int,
        generate: (inout HostileRandom) -> Input, bytes: (Input) -> [UInt8], check: (Input) async throws -> [String],
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> Int {
        let crashGuard = CrashGuard(area: folder, ext: ext)
        let seeds = seeds(area: area, count: count)
        var failures = 0
        for (index, seed) in seeds.enumerated() {
            if index % 16 == 15 { await Task.yield() }
            var rng = HostileRandom(seed: seed)
            let input = generate(&rng)
            let raw = bytes(input)
            crashGuard.arm(raw, seed: seed)
            let problems = try await check(input)
            crashGuard.disarm()
            if !problems.isEmpty {
                failures += 1
                if failures <= reportedFailures {
                    report(area: area, folder: folder, ext: ext, seed: seed, input: raw, problems: problems, sourceLocation: sourceLocation)
                }
            }
        }
        if failures > reportedFailures {
            Issue.record("\(area): \(failures - reportedFailures) more failing cases of \(seeds.count)", sourceLocation: sourceLocation)
        }
        return seeds.count
    }

    static func report(
        area: String, folder: String, ext: String, seed: UInt64, input: [UInt8], problems: [String], sourceLocation: SourceLocation
    ) {
        let seedText = HostileSettings.hex(seed)
        let file = CrashGuard.directory.appendingPathComponent("\(folder)-\(seedText)\(ext)")
        try? FileManager.default.createDirectory(at: CrashGuard.directory, withIntermediateDirectories: true)
        let saved = (try? Data(input).write(to: file)) != nil
        Issue.record(
            """
            \(area): case \(seedText) (base seed \(HostileSettings.hex(HostileSettings.baseSeed))) breaks:
            \(problems.map { "  - \($0)" }.joined(separator: "\n"))
            input (\(input.count) bytes): \(preview(input))
            \(saved ? "saved to \(file.path); " : "")rerun it alone with ROUNDUP_HOSTILE_CASE=\(seedText); \
            keep it as a regression fixture in Fixtures/hostile/\(folder)/
            """, sourceLocation: sourceLocation)
    }

    /// The first bytes of an input, printable: non-ASCII and control bytes as `\xNN`.
    static func preview(_ bytes: [UInt8], limit: Int = 240) -> String {
        var out = ""
        for byte in bytes.prefix(limit) {
            if byte >= 0x20 && byte < 0x7F && byte != UInt8(ascii: "\\") {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                out += String(format: "\\x%02X", byte)
            }
        }
        return bytes.count > limit ? out + "…" : out
    }
}

/// Seed inputs read from `Fixtures/`.
enum HostileSeeds {
    /// The files directly under `Fixtures/<folder>` (recursively when asked) with one of the extensions.
    static func files(_ folder: String, extensions: Set<String>, recursive: Bool = false) -> [URL] {
        let root = TestSupport.fixture(folder)
        let fm = FileManager.default
        let urls: [URL]
        if recursive {
            urls = (fm.enumerator(at: root, includingPropertiesForKeys: nil)?.allObjects as? [URL]) ?? []
        } else {
            urls = (try? fm.contentsOfDirectory(at: root, includingPropertiesForKeys: nil)) ?? []
        }
        return urls.filter { extensions.contains($0.pathExtension) }.sorted { $0.path < $1.path }
    }

    /// Whether a file's bytes make a good mutation seed: not empty, and small, so that cases stay
    /// fast (a long regression input is replayed as it is, not mutated).
    static func isSeed(_ bytes: [UInt8]) -> Bool { !bytes.isEmpty && bytes.count <= 4096 }

    static func bytes(_ url: URL) -> [UInt8] { (try? Data(contentsOf: url)).map { Array($0) } ?? [] }

    static func text(_ url: URL) -> String { String(decoding: bytes(url), as: UTF8.self) }

    /// The regression inputs of one area (`Fixtures/hostile/<area>/`).
    static func regressions(_ area: String) -> [URL] {
        files("hostile/\(area)", extensions: ["json", "xml", "csv", "yaml", "txt", "bin", "query"])
    }
}
