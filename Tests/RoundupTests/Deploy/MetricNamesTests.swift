import Foundation
import HummingbirdTesting
import Testing

@testable import Roundup

/// The dashboard and the alert rules read only metrics the service exports, and aggregate them
/// the right way: counters and histograms are per process (`sum`), while the gauges that describe
/// the database would read the same on every process sharing it (`max`).
@Suite("Metric names in the dashboard and the alert rules")
struct MetricNamesTests {
    /// Series that come from Prometheus or its exporters, not from Roundup: `up` from every scrape,
    /// `probe_success` from the blackbox exporter's probe of `/healthz` (docs/deployment.md).
    static let external: Set<String> = ["up", "probe_success"]

    /// The gauges that describe the database rather than one process.
    static let databaseGauges: Set<String> = [
        "roundup_pending_messages", "roundup_open_digests", "roundup_digests_held", "roundup_credits_outstanding",
        "roundup_oldest_due_age_seconds",
    ]

    /// What a running service exports: metric name → type (counter, gauge, histogram), from the
    /// `# TYPE` lines of a real scrape of `/metrics`.
    static func scrape() async throws -> [String: String] {
        // A one-time template, so that the per-template credits gauge is exported too.
        let h = try ServiceHarness(yaml: """
            templates:
              - id: T1
                fields: { thing1: "{{count}}条新消息" }

            """)
        defer { h.remove() }
        let text = try await h.withClient { c in
            try await c.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status.code == 200)
                return String(buffer: response.body)
            }
        }
        var types: [String: String] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("# TYPE ") {
            let parts = line.split(separator: " ")
            if parts.count >= 4 { types[String(parts[2])] = String(parts[3]) }
        }
        return types
    }

    /// The names a query may use for an exported metric: histograms as `_bucket`, `_sum`, `_count`.
    static func selectable(_ types: [String: String]) -> [String: (base: String, type: String)] {
        var out: [String: (String, String)] = [:]
        for (name, type) in types {
            if type == "histogram" || type == "summary" {
                for suffix in ["_bucket", "_sum", "_count"] { out[name + suffix] = (name, type) }
            } else {
                out[name] = (name, type)
            }
        }
        return out
    }

    /// Every query: (where it is, expr).
    static func queries() throws -> [(place: String, expr: String)] {
        try DeployFiles.dashboardQueries().map { ("dashboard panel \"\($0.panel)\" \($0.refID)", $0.expr) }
            + AlertRulesTests.alerts().map { ("alert \($0.name)", $0.expr) }
    }

    @Test("the scanner tells metric names from functions, keywords and labels")
    func scanner() {
        let uses = PromQLScanner.uses(in: #"""
            histogram_quantile(0.99, sum by (le) (rate(a_seconds_bucket{job="x",le!="+Inf"}[$__rate_interval])))
            > 0.5 unless on () max(b_gauge) > 300 and on (instance) count without (version) (c_info offset 5m)
            or max_over_time((timestamp(sum(increase(d_total[5m])) > 0))[1d:1m]) >= time() - (time() + 28800) % 86400
            or up{job="roundup"} == 0
            """#)
        #expect(uses == [
            .init(metric: "a_seconds_bucket", aggregation: "sum"), .init(metric: "b_gauge", aggregation: "max"),
            .init(metric: "c_info", aggregation: "count"), .init(metric: "d_total", aggregation: "sum"),
            .init(metric: "up", aggregation: nil),
        ])
    }

    @Test("every metric the dashboard and the alert rules read is exported by a running service")
    func namesAreExported() async throws {
        let exported = Self.selectable(try await Self.scrape())
        #expect(exported["roundup_build_info"] != nil && exported["roundup_store_errors_total"] != nil
                && exported["roundup_credits_outstanding"] != nil, "the scrape is missing metrics: \(exported.keys.sorted())")
        let queries = try Self.queries()
        #expect(queries.count > 10)
        for q in queries {
            let names = PromQLScanner.metricNames(in: q.expr)
            #expect(!names.isEmpty, "\(q.place): no metric found in \(q.expr)")
            for name in names where exported[name] == nil && !Self.external.contains(name) {
                Issue.record("\(q.place) reads \(name), which the service does not export")
            }
        }
    }

    @Test("counters and histograms are summed, database gauges take the max")
    func aggregations() async throws {
        let exported = Self.selectable(try await Self.scrape())
        for q in try Self.queries() {
            for use in PromQLScanner.uses(in: q.expr) {
                guard let metric = exported[use.metric] else { continue }
                if metric.type == "counter" || metric.type == "histogram" {
                    #expect(use.aggregation == "sum", "\(q.place): \(use.metric) is a \(metric.type); add it up with sum, not \(use.aggregation ?? "nothing")")
                } else if Self.databaseGauges.contains(metric.base) {
                    #expect(use.aggregation == "max", "\(q.place): \(use.metric) describes the database; take its max, not \(use.aggregation ?? "nothing")")
                }
            }
        }
        for gauge in Self.databaseGauges {
            #expect(exported[gauge]?.type == "gauge", "\(gauge) is not an exported gauge")
        }
    }
}
