import Foundation
import Testing

@testable import Roundup

/// How the operator's views show times (human output).
@Suite("Operator times")
struct OperatorTimeTests {
    /// 2025-03-04 08:00:00 UTC = 16:00 in Shanghai.
    let t = OperatorTime(now: Timestamp(seconds: 1_741_075_200), timeZone: TimeZone(identifier: "Asia/Shanghai")!)

    @Test("today is shown as a clock time, other days with their date, other years with the year")
    func clock() {
        #expect(t.clock(Timestamp(seconds: 1_741_075_200 + 300)) == "16:05")
        #expect(t.clock(Timestamp(seconds: 1_741_075_200 - 86_400)) == "3月3日 16:00")
        #expect(t.clock(Timestamp(seconds: 1_741_075_200 - 400 * 86_400)) == "2024年1月29日 16:00")
        // 23:59 in Shanghai is still today although it is 15:59 UTC.
        #expect(t.clock(Timestamp(seconds: 1_741_075_200 + 7 * 3600 + 59 * 60)) == "23:59")
    }

    @Test("due times are relative to now", arguments: [
        (300, "in 5m"), (-120, "2m ago"), (0, "now"), (45, "in 45s"), (3900, "in 1h5m"), (7200, "in 2h"), (-90_000, "1d1h ago"),
    ])
    func relative(offset: Int64, expected: String) {
        #expect(t.relative(Timestamp(seconds: 1_741_075_200 + offset)) == expected)
    }

    @Test("names are listed as a sentence would")
    func names() {
        #expect(spokenList(["张老师"]) == "张老师")
        #expect(spokenList(["张老师", "李老师"]) == "张老师 and 李老师")
        #expect(spokenList(["A", "B", "C"]) == "A, B and C")
        #expect(spokenList(["A", "B", "C", "D", "E"]) == "A, B, C and 2 others")
    }
}
