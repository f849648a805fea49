import Foundation
import Testing
import Yams

@testable import Roundup

/// `docs/configuration.md` cannot drift from the config code: its key tables are read here and
/// checked against what the loader accepts, its defaults and what `roundup config check` prints.
@Suite("docs/configuration.md matches the config loader")
struct ConfigurationDocTests {
    /// One row of a key table: `| key | default | [profile |] meaning |`.
    struct Row {
        let key: String
        /// The default as written in backticks, or nil for "required", "none" or an empty cell.
        let defaultValue: String?
        let profile: String?
        let meaning: String
        var section: String { String(key.prefix { $0 != "." && $0 != "[" }) }
    }

    static var docURL: URL { TestSupport.packageRoot.appendingPathComponent("docs/configuration.md") }

    /// Splits a table line into cells, ignoring `|` inside backticks.
    static func cells(_ line: String) -> [String] {
        var cells: [String] = []
        var current = ""
        var code = false
        for c in line.dropFirst() {
            if c == "`" { code.toggle() }
            if c == "|" && !code {
                cells.append(current.trimmingCharacters(in: .whitespaces))
                current = ""
            } else {
                current.append(c)
            }
        }
        return cells
    }

    static func unquote(_ cell: String) -> String? {
        guard cell.count >= 2, cell.hasPrefix("`"), cell.hasSuffix("`") else { return nil }
        return String(cell.dropFirst().dropLast())
    }

    /// Every row of every table whose first column is `key`.
    static func rows() throws -> [Row] {
        let lines = try String(contentsOf: docURL, encoding: .utf8).components(separatedBy: "\n")
        var rows: [Row] = []
        var header: [String]?
        for line in lines {
            guard line.hasPrefix("|") else { header = nil; continue }
            let c = cells(line)
            if header == nil {
                header = c
                continue
            }
            guard let h = header, h.first == "key", !line.hasPrefix("|---") else { continue }
            func column(_ name: String) -> String? { h.firstIndex(of: name).flatMap { $0 < c.count ? c[$0] : nil } }
            guard let key = unquote(c[0]) else {
                Issue.record("a key in docs/configuration.md is not in backticks: \(line)")
                continue
            }
            rows.append(Row(key: key, defaultValue: column("default").flatMap(unquote), profile: column("profile"),
                            meaning: column("meaning") ?? ""))
        }
        return rows
    }

    /// Key paths of a YAML document, with list indices as `[]`, template keywords as
    /// `<keyword>` and profile names as `<name>`.
    static func keyPaths(_ node: Any, prefix: String = "") -> Set<String> {
        var out: Set<String> = []
        if let map = node as? [String: Any] {
            for (k, v) in map {
                var name = k
                if prefix.hasSuffix(".fields") { name = "<keyword>" }
                if prefix == "digest.profiles" { name = "<name>" }
                let path = prefix.isEmpty ? name : "\(prefix).\(name)"
                out.insert(path)
                out.formUnion(keyPaths(v, prefix: path))
            }
        } else if let list = node as? [Any], let first = list.first, first is [String: Any] {
            out.formUnion(keyPaths(first, prefix: prefix + "[]"))
        }
        return out
    }

    /// Loads YAML; nil and the problems when it is refused.
    static func load(_ yaml: String, env: [String: String] = [:]) -> (RoundupConfig?, [ConfigProblem]) {
        do {
            return (try ConfigLoader(environment: env).load(yaml: yaml).config, [])
        } catch {
            return (nil, error.problems)
        }
    }

    @Test("every key the loader accepts, and every key config check prints, is documented")
    func codeKeysAreDocumented() throws {
        let rows = try Self.rows()
        let documented = Set(rows.map(\.key))
        #expect(rows.count >= 40)

        // The keys the decoder knows, section by section.
        var known: Set<String> = Set(ConfigLoader.scalarKeys)
        known.formUnion(ConfigBuilder.serverKeys.map { "server.\($0)" })
        known.formUnion(ConfigBuilder.storageKeys.map { "storage.\($0)" })
        known.formUnion(ConfigBuilder.wechatKeys.map { "wechat.\($0)" })
        known.formUnion(ConfigBuilder.imKeys.map { "im.\($0)" })
        known.formUnion((RawDigest.policyScalars + RawDigest.lists + RawDigest.topOnly).map { "digest.\($0)" })
        known.formUnion(RawTemplate.keys.map { "templates[].\($0)" })

        // And what `roundup config check` prints: the defaults, and the example with a template,
        // a {value, fallback} field and profiles.
        let example = try TestSupport.loader().load(path: TestSupport.fixture("config/roundup.example.yaml").path).config
        for config in [RoundupConfig.defaults, example] {
            let printed = try #require(try Yams.load(yaml: config.effectiveYAML()))
            known.formUnion(Self.keyPaths(printed).filter { $0.contains(".") || $0.contains("[") })
        }

        for key in known.sorted() {
            if key.hasPrefix("digest.profiles.<name>.") {
                // A profile's keys are documented by the "profile" column of the digest table.
                let base = "digest." + key.dropFirst("digest.profiles.<name>.".count)
                #expect(rows.first { $0.key == base }?.profile == "yes", "\(key) is accepted in a profile but \(base) is not marked so")
            } else if key != "digest.profiles.<name>" {
                #expect(documented.contains(key), "\(key) is accepted by the loader but not in docs/configuration.md")
            }
        }
        for section in RawConfig.sections {
            #expect(documented.contains { $0.hasPrefix(section + ".") || $0.hasPrefix(section + "[]") }, "section \(section) is not documented")
        }
    }

    @Test("every documented scalar, list and mapping key is accepted, and its documented default is the built-in one")
    func defaults() throws {
        for row in try Self.rows() where row.section != "templates" {
            let value = try #require(row.defaultValue, "\(row.key) has no default in backticks")
            let parts = row.key.split(separator: ".")
            try #require(parts.count == 2, "\(row.key) is not section.key")
            let (config, problems) = Self.load("\(parts[0]):\n  \(parts[1]): \(value)\n")
            #expect(problems.isEmpty, "\(row.key): \(value) is refused: \(problems)")
            #expect(config == RoundupConfig.defaults, "\(row.key): \(value) is not the built-in default")
        }
    }

    @Test("documented template keys are accepted, with the documented defaults and required keys")
    func templateKeys() throws {
        let minimal = "templates:\n  - id: T1\n    fields:\n      thing1: \"{{count}}\"\n"
        let (baseline, baseProblems) = Self.load(minimal)
        #expect(baseProblems.isEmpty)
        for row in try Self.rows() where row.section == "templates" {
            let key = row.key.replacingOccurrences(of: "templates[].", with: "")
            switch key {
            case "id", "fields":
                #expect(row.defaultValue == nil)
                let without = key == "id" ? "templates:\n  - fields:\n      thing1: \"{{count}}\"\n" : "templates:\n  - id: T1\n"
                let (_, problems) = Self.load(without)
                #expect(problems.contains { $0.keyPath == "templates[0].\(key)" }, "\(row.key) is documented as required: \(problems)")
            case "fields.<keyword>":
                break  // the minimal template has one
            case "fields.<keyword>.value":
                let (_, problems) = Self.load("templates:\n  - id: T1\n    fields:\n      thing1: { fallback: \"新消息\" }\n")
                #expect(problems.contains { $0.keyPath == "templates[0].fields.thing1.value" }, "\(row.key) is documented as required")
            case "fields.<keyword>.fallback":
                let (config, problems) = Self.load("templates:\n  - id: T1\n    fields:\n      thing1: { value: \"{{count}}\", fallback: \"新消息\" }\n")
                #expect(problems.isEmpty, "\(row.key) is refused: \(problems)")
                #expect(config?.templates.first?.fields.first?.fallback == "新消息")
            default:
                let value = try #require(row.defaultValue, "\(row.key) has no default in backticks")
                let (config, problems) = Self.load(minimal + "    \(key): \(value)\n")
                #expect(problems.isEmpty, "\(row.key): \(value) is refused: \(problems)")
                #expect(config == baseline, "\(row.key): \(value) is not the built-in default")
            }
        }
    }

    @Test("the profile column says which digest keys a profile may set")
    func profileColumn() throws {
        let digestRows = try Self.rows().filter { $0.section == "digest" }
        #expect(!digestRows.isEmpty)
        for row in digestRows {
            let name = row.key.replacingOccurrences(of: "digest.", with: "")
            let value = try #require(row.defaultValue)
            let (_, problems) = Self.load("digest:\n  profiles:\n    p:\n      \(name): \(value)\n")
            switch row.profile {
            case "yes": #expect(problems.isEmpty, "\(row.key) is marked for profiles but refused there: \(problems)")
            case "no": #expect(problems.contains { $0.keyPath == "digest.profiles.p.\(name)" }, "\(row.key) is marked not for profiles but accepted there")
            default: Issue.record("\(row.key): the profile column must say yes or no")
            }
        }
    }

    @Test("the scalar keys are exactly those a ROUNDUP_* variable overrides, and each override is accepted")
    func environment() throws {
        let scalars = try Self.rows().filter {
            $0.section != "templates" && !["[]", "{}"].contains($0.defaultValue ?? "")
        }
        #expect(Set(scalars.map(\.key)) == Set(ConfigLoader.scalarKeys))
        for row in scalars {
            let value = try #require(row.defaultValue)
            let env = [ConfigLoader.environmentName(for: row.key): value == "\"\"" ? "" : value]
            let (config, problems) = Self.load("", env: env)
            #expect(problems.isEmpty, "\(env): \(problems)")
            #expect(config == RoundupConfig.defaults, "\(env) does not give the default")
        }
    }

    @Test("the keys marked secret are the ones printed masked")
    func secrets() throws {
        let marked = try Self.rows().filter { $0.meaning.contains("**secret**") }.map(\.key)
        #expect(Set(marked) == ConfigLoader.secretKeys)
    }
}
