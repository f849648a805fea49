import Foundation
import Testing

@testable import Roundup

@Suite("Roster CSV")
struct RosterCSVTests {
    /// The problems reported for a roster that must be rejected.
    func problems(_ text: String, profiles: Set<String> = []) -> [RosterImportError.Problem] {
        do {
            _ = try RosterCSV.rows(from: text, knownProfiles: profiles)
            Issue.record("expected the roster to be rejected")
            return []
        } catch {
            return error.problems
        }
    }

    @Test("the class roster fixture parses: teachers without openids, quoted names")
    func fixture() throws {
        let rows = try RosterCSV.rows(from: try TestSupport.fixtureText("roster/parents.csv"), knownProfiles: [])
        #expect(rows.count == 28)
        #expect(rows.first?.entry == RosterEntry(imUserID: "teacher_zhang", openid: nil, name: "张老师", profile: nil))
        #expect(rows.first?.line == 2)
        #expect(rows.contains { $0.entry.name == "Emily Chen" })
        #expect(rows.filter { $0.entry.openid == nil }.count == 4)
    }

    @Test("every bad row is reported by its line number (header = line 1)")
    func badRows() throws {
        let p = problems(try TestSupport.fixtureText("roster/bad-rows.csv"), profiles: ["clinic"])
        #expect(p.map(\.line) == [3, 4, 5, 6, 7, 8])
        guard p.count == 6 else { return }
        #expect(p[0].message.contains("im_user_id is empty"))
        #expect(p[1].message.contains("not an openid"))
        #expect(p[2].message.contains("already appears on line 2"))
        #expect(p[3].message.contains("already used on line 2"))
        #expect(p[4].message.contains("\"vip\""))
        #expect(p[5].message.contains("2 fields"))
    }

    @Test("quotes, doubled quotes, CRLF, a BOM, blank lines and column order are handled")
    func csvDialect() throws {
        let good = "\u{FEFF}openid,im_user_id,name\r\n\r\n\"o_1\",p1,\"say \"\"hi\"\"\"\r\no_2,p2,\"二年级, 三班\"\r\no_3,p3,x\n"
        let rows = try RosterCSV.rows(from: good, knownProfiles: [])
        #expect(rows.map(\.entry.imUserID) == ["p1", "p2", "p3"])
        #expect(rows.map(\.line) == [3, 4, 5])
        #expect(rows[0].entry.name == "say \"hi\"")
        #expect(rows[0].entry.openid == "o_1")
        #expect(rows[0].entry.profile == nil)
        #expect(rows[1].entry.name == "二年级, 三班")
    }

    @Test("a quoted field over two lines is refused as a name, and later rows keep their file line numbers")
    func multiLineField() {
        let p = problems("im_user_id,name\np1,\"two\nlines\"\np2,ok\n\"bad id\",x\n")
        #expect(p.map(\.line) == [2, 5])
    }

    @Test("a bad header is reported on line 1", arguments: ["", "openid,name\n", "im_user_id,email\n", "im_user_id,im_user_id\n"])
    func badHeader(text: String) {
        #expect(problems(text).first?.line == 1)
    }

    @Test("an unclosed quote names the line it opened on")
    func unclosedQuote() {
        #expect(problems("im_user_id,name\np1,\"oops\np2,x\n") == [.init(line: 2, message: "a quoted field is never closed")])
    }
}

@Suite("Text tables")
struct TextTableTests {
    @Test("CJK characters count two columns and columns stay aligned")
    func cjkWidth() {
        #expect(displayWidth("王芳") == 4)
        #expect(displayWidth("abc") == 3)
        #expect(displayWidth("e\u{301}") == 1)
        let table = TextTable(headers: ["USER", "NAME"], rows: [["p1", "王芳"], ["parent_2", "Amy"]]).render()
        let lines = table.split(separator: "\n").map(String.init)
        for (line, second) in zip(lines, ["NAME", "王芳", "Amy"]) {
            let prefix = String(line[..<line.range(of: second)!.lowerBound])
            #expect(displayWidth(prefix) == displayWidth("parent_2") + 2)
        }
    }

    @Test("a wide table is cut to 80 columns at the shrinkable columns, on grapheme boundaries")
    func fitsTerminal() {
        let long = String(repeating: "很长的名字", count: 10)
        let table = TextTable(headers: ["USER", "NAME", "OPENID"], rows: [["p1", long, "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"]], shrinkable: [1]).render()
        for line in table.split(separator: "\n") { #expect(displayWidth(String(line)) <= 80) }
        #expect(table.contains("…"))
        #expect(truncate("王芳芳", toWidth: 4) == "王…")
    }
}
