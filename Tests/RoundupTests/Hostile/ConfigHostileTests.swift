import Foundation
import Testing

@testable import Roundup

/// Generated hostile YAML and environment overrides against `ConfigLoader` (issue 8): it never
/// crashes, and every problem it reports names a key path.
@Suite("Hostile input: config")
struct ConfigHostileTests {
    static let seeds = HostileSeeds.files("config", extensions: ["yaml"], recursive: true) + HostileSeeds.regressions("config")
    static let mutator = Mutator(format: .yaml, seeds: seeds.map(HostileSeeds.bytes).filter(HostileSeeds.isSeed))

    /// Valid configs whose keys get renamed: the two fixtures and one that uses every section.
    static let validSeeds: [String] = [
        HostileSeeds.text(TestSupport.fixture("config/minimal.yaml")),
        HostileSeeds.text(TestSupport.fixture("config/roundup.example.yaml")),
        """
        server:
          port: 0
        im:
          sdk_app_id: 1400000000
          ingest_from: before_send
        templates:
          - id: T1
            kind: long_term
            fields:
              thing1: "{{first_sender}}"
              name2: { value: "{{last_sender}}", fallback: "老师" }
          - id: T2
            fields:
              number1: "{{count}}"
        digest:
          mode: sliding
          window: 2m
          max_wait: 30m
          quiet_hours: "22:00-06:30"
          profiles:
            night:
              window: 1h
              ignore_senders: [bot]

        """,
    ]

    /// Every `key:` of a block-style YAML text with its key path, found from indentation.
    static func keyPaths(_ text: String) -> [(range: Range<Int>, path: String)] {
        let bytes = Array(text.utf8)
        var out: [(Range<Int>, String)] = []
        var stack: [(indent: Int, path: String)] = []
        var items: [String: Int] = [:]
        for line in Mutator.lineRanges(bytes) {
            var i = line.lowerBound
            while i < line.upperBound, bytes[i] == 0x20 { i += 1 }
            guard i < line.upperBound, bytes[i] != UInt8(ascii: "#"), bytes[i] != 0x0A else { continue }
            var indent = i - line.lowerBound
            if bytes[i] == UInt8(ascii: "-"), i + 1 < line.upperBound, bytes[i + 1] == 0x20 {
                while let last = stack.last, last.indent >= indent { stack.removeLast() }
                let parent = stack.last?.path ?? ""
                let index = items[parent, default: 0]
                items[parent] = index + 1
                stack.append((indent, "\(parent)[\(index)]"))
                i += 2
                indent += 2
            }
            guard let key = Mutator.yamlKey(in: bytes, line: i..<line.upperBound) else { continue }
            while let last = stack.last, last.indent >= indent { stack.removeLast() }
            let parent = stack.last?.path ?? ""
            let name = String(decoding: bytes[key], as: UTF8.self)
            let path = parent.isEmpty ? name : "\(parent).\(name)"
            out.append((key, path))
            stack.append((indent, path))
        }
        return out
    }

    @Test("the config fixtures, unmutated, keep every property, and the valid ones load")
    func seedsLoad() throws {
        #expect(Self.seeds.count >= 7)
        for url in Self.seeds {
            #expect(HostileOracles.config(HostileSeeds.text(url)).isEmpty, "\(url.lastPathComponent)")
        }
        for text in Self.validSeeds {
            _ = try ConfigLoader(environment: [:]).load(yaml: text)
            #expect(HostileOracles.config(text).isEmpty)
        }
        let paths = Self.keyPaths(Self.validSeeds[1]).map(\.path)
        #expect(paths.contains("templates[0].fields.thing3"))
        #expect(paths.contains("digest.profiles.night_shift.min_interval"))
    }

    @Test("mutated YAML never crashes the loader, and every problem it reports names a key path")
    func mutatedYAML() async throws {
        try await HostileLoop.run(
            area: "config-yaml", folder: "config", ext: ".yaml", count: 800,
            generate: { Self.mutator.generate(&$0) }, bytes: { $0 },
            check: { HostileOracles.config(String(decoding: $0, as: UTF8.self)) })
    }

    @Test("a valid config with any one key renamed is refused, and a problem names the renamed key's path")
    func renamedKey() async throws {
        let known = Set(Self.validSeeds.flatMap { Self.keyPaths($0).map { $0.path.split(separator: ".").last.map(String.init) ?? "" } })
        try await HostileLoop.run(
            area: "config-rename", folder: "config", ext: ".yaml", count: 150,
            generate: { rng -> (text: [UInt8], path: String) in
                let text = rng.pick(Self.validSeeds)
                // Profile names are free-form, so renaming one is no mistake.
                let keys = Self.keyPaths(text).filter { !$0.path.hasPrefix("digest.profiles.") || $0.path.split(separator: ".").count > 3 }
                let (range, path) = rng.pick(keys)
                var bytes = Array(text.utf8)
                var name = Array(bytes[range])
                switch rng.below(4) {
                case 0: name += Array(rng.pick(["x", "_old", "Z", "s", "-"]).utf8)
                case 1: name.remove(at: rng.below(name.count))
                case 2:
                    let i = rng.below(max(1, name.count - 1))
                    if i + 1 < name.count { name.swapAt(i, i + 1) } else { name += Array("q".utf8) }
                default: name = Array(String(decoding: name, as: UTF8.self).uppercased().utf8) + Array("_".utf8)
                }
                let newName = String(decoding: name, as: UTF8.self)
                if known.contains(newName) || newName.isEmpty || newName == String(decoding: bytes[range], as: UTF8.self) {
                    name += Array("zz".utf8)
                }
                bytes.replaceSubrange(range, with: name)
                let parent = path.split(separator: ".").dropLast().joined(separator: ".")
                let renamed = String(decoding: name, as: UTF8.self)
                return (bytes, parent.isEmpty ? renamed : "\(parent).\(renamed)")
            },
            bytes: { $0.text },
            check: { input in
                do throws(ConfigError) {
                    _ = try ConfigLoader(environment: [:]).load(yaml: String(decoding: input.text, as: UTF8.self))
                    return ["a config with \(input.path) was accepted"]
                } catch {
                    if error.problems.contains(where: { $0.keyPath == input.path }) { return [] }
                    return ["no problem names \(input.path); got: " + error.problems.map(\.description).joined(separator: " | ")]
                }
            })
    }

    @Test("a hostile ROUNDUP_* value is refused under its key path and names the variable, or loads cleanly")
    func hostileEnvironment() async throws {
        try await HostileLoop.run(
            area: "config-env", folder: "config", ext: ".txt", count: 300,
            generate: { rng -> (key: String, value: String) in
                (rng.pick(ConfigLoader.scalarKeys), rng.pick(Mutator.yamlScalars + Mutator.hostileNumbers + ["", " ", "\u{0}", "\n"]))
            },
            bytes: { Array("\(ConfigLoader.environmentName(for: $0.key))=\($0.value)".utf8) },
            check: { input in
                let env = [ConfigLoader.environmentName(for: input.key): input.value]
                var problems: [String] = []
                do throws(ConfigError) {
                    let loaded = try ConfigLoader(environment: env).load(yaml: Self.validSeeds[2])
                    if !loaded.overriddenKeys.contains(input.key) { problems.append("\(input.key) is not reported as overridden") }
                } catch {
                    if error.problems.contains(where: { $0.keyPath.isEmpty }) { problems.append("a problem names no key path: \(error)") }
                    for p in error.problems where p.keyPath == input.key && !p.message.contains(ConfigLoader.environmentName(for: input.key)) {
                        problems.append("the problem at \(p.keyPath) does not name \(ConfigLoader.environmentName(for: input.key))")
                    }
                    if !error.problems.contains(where: { $0.keyPath.hasPrefix(input.key.split(separator: ".")[0]) }) {
                        problems.append("no problem is under \(input.key)'s section: \(error)")
                    }
                }
                return problems
            })
    }

    @Test("roundup config check on mutated files exits 0 or 2, never crashes, and prints each problem with its key path")
    func cliCheck() async throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var refused = 0
        for seed in HostileLoop.seeds(area: "config-cli", count: 8) {
            var rng = HostileRandom(seed: seed)
            let file = dir.appendingPathComponent("roundup.yaml")
            try Data(Self.mutator.generate(&rng)).write(to: file)
            let r = try await runRoundup(["config", "check", "--config", file.path], in: dir)
            #expect(r.status == 0 || r.status == 2, "case \(HostileSettings.hex(seed)): exit \(r.status)\n\(r.stderr)")
            if r.status == 2 {
                refused += 1
                #expect(r.stdout.isEmpty)
                let lines = r.stderr.split(separator: "\n").filter { $0.hasPrefix("config: ") }
                #expect(!lines.isEmpty, "case \(HostileSettings.hex(seed)): \(r.stderr)")
            }
        }
        #expect(refused > 0)
    }
}
