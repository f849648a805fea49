import Foundation
import Testing

/// README.md and docs/ hold together: every page is reachable from README, every relative link
/// (and its `#anchor`) points at something that exists, and nothing cites a document that is not
/// in the repository.
@Suite("README and docs/ links")
struct DocsLinksTests {
    static var root: URL { TestSupport.packageRoot }

    static func markdownFiles() throws -> [URL] {
        let docs = root.appendingPathComponent("docs")
        let pages = try FileManager.default.contentsOfDirectory(at: docs, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "md" }
        return [root.appendingPathComponent("README.md")] + pages.sorted { $0.path < $1.path }
    }

    /// `[text](target)` links outside code spans and fenced blocks.
    static func links(in text: String) -> [String] {
        var out: [String] = []
        var fenced = false
        for line in text.components(separatedBy: "\n") {
            if line.trimmingCharacters(in: .whitespaces).hasPrefix("```") { fenced.toggle(); continue }
            if fenced { continue }
            let plain = line.replacingOccurrences(of: "`[^`]*`", with: "", options: .regularExpression)
            var rest = Substring(plain)
            while let open = rest.range(of: "](") {
                let after = rest[open.upperBound...]
                guard let close = after.firstIndex(of: ")") else { break }
                out.append(String(after[..<close]))
                rest = after[close...]
            }
        }
        return out
    }

    /// The anchors GitHub gives a page's headings.
    static func anchors(in text: String) -> Set<String> {
        var out: Set<String> = []
        var fenced = false
        for line in text.components(separatedBy: "\n") {
            if line.hasPrefix("```") { fenced.toggle(); continue }
            guard !fenced, line.hasPrefix("#") else { continue }
            let title = line.drop { $0 == "#" }.trimmingCharacters(in: .whitespaces).lowercased()
            let kept = title.unicodeScalars.filter {
                CharacterSet.alphanumerics.contains($0) || $0 == " " || $0 == "-" || $0 == "_"
            }
            out.insert(String(String.UnicodeScalarView(kept)).replacingOccurrences(of: " ", with: "-"))
        }
        return out
    }

    @Test("README is short, starts with the two commands, and links every docs/ page")
    func readme() throws {
        let text = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
        let lines = text.components(separatedBy: "\n")
        #expect(lines.count <= 200, "README.md has \(lines.count) lines")
        let firstScreen = lines.prefix(50).joined(separator: "\n")
        #expect(firstScreen.contains("swift run roundup demo") && firstScreen.contains("swift test"))
        let linked = Set(Self.links(in: text).map { String($0.prefix { $0 != "#" }) })
        let pages = try FileManager.default.contentsOfDirectory(atPath: Self.root.appendingPathComponent("docs").path)
        for page in pages.sorted() where !page.hasPrefix(".") {
            #expect(linked.contains("docs/\(page)"), "README.md does not link docs/\(page)")
        }
    }

    @Test("every relative link and anchor in README and docs/ resolves")
    func linksResolve() throws {
        for file in try Self.markdownFiles() {
            let text = try String(contentsOf: file, encoding: .utf8)
            for link in Self.links(in: text) where !link.contains("://") && !link.hasPrefix("mailto:") {
                let parts = link.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
                let target = parts[0].isEmpty ? file : file.deletingLastPathComponent().appendingPathComponent(parts[0])
                guard FileManager.default.fileExists(atPath: target.path) else {
                    Issue.record("\(file.lastPathComponent): \(link) points at a missing file")
                    continue
                }
                if parts.count == 2, target.pathExtension == "md" {
                    let anchors = Self.anchors(in: try String(contentsOf: target, encoding: .utf8))
                    #expect(anchors.contains(parts[1]), "\(file.lastPathComponent): \(link) has no such heading")
                }
            }
        }
    }

    @Test("nothing cites documents that are not in the repository")
    func noOutsideCitations() throws {
        var files = try Self.markdownFiles()
        files += ["docs/openapi.yaml", "deploy/prometheus/alerts.yml", "deploy/prometheus/alerts.test.yml",
                  "deploy/grafana/roundup.json", "Dockerfile"].map { Self.root.appendingPathComponent($0) }
        for file in files {
            let text = try String(contentsOf: file, encoding: .utf8)
            for citation in ["SPEC", "§", "wechat.md", "tencent-im.md", "STYLE.md", "protocols/"] {
                #expect(!text.contains(citation), "\(file.lastPathComponent) cites \(citation)")
            }
        }
    }
}
