import Foundation
import Testing

/// `deploy/grafana/roundup.json` is a dashboard an operator imports as is. Grafana cannot run
/// here, so these check what an import needs: the structure, the data source variable, and that
/// every query is PromQL that promtool accepts.
@Suite("Grafana dashboard")
struct DashboardTests {
    @Test("the dashboard has a schema version, a title, a uid and a Prometheus data source variable")
    func structure() throws {
        let d = try DeployFiles.dashboardJSON()
        let schema = try #require(d["schemaVersion"] as? Int, "schemaVersion is missing")
        #expect(schema >= 36, "schemaVersion \(schema) predates the data source variables and panels used here")
        #expect((d["title"] as? String)?.isEmpty == false)
        #expect((d["uid"] as? String)?.isEmpty == false)
        #expect(d["id"] == nil || d["id"] is NSNull, "an exported id would clash on import; leave it out")

        let variables = try #require((d["templating"] as? [String: Any])?["list"] as? [[String: Any]])
        let datasource = try #require(variables.first { $0["type"] as? String == "datasource" }, "no datasource variable")
        #expect(datasource["query"] as? String == "prometheus")
        let name = try #require(datasource["name"] as? String)
        let reference = "${\(name)}"

        let panels = DeployFiles.panels(d)
        #expect(panels.count >= 9)
        let ids = panels.compactMap { $0["id"] as? Int }
        #expect(ids.count == panels.count && Set(ids).count == ids.count, "every panel needs its own id")
        for panel in panels where panel["type"] as? String != "row" {
            let title = panel["title"] as? String ?? "?"
            let grid = try #require(panel["gridPos"] as? [String: Any], "\(title): no gridPos")
            for key in ["x", "y", "w", "h"] { #expect(grid[key] is Int, "\(title): gridPos.\(key)") }
            #expect((panel["datasource"] as? [String: Any])?["uid"] as? String == reference, "\(title): data source must be \(reference)")
            let targets = try #require(panel["targets"] as? [[String: Any]], "\(title): no queries")
            #expect(!targets.isEmpty, "\(title): no queries")
            for target in targets {
                #expect((target["datasource"] as? [String: Any])?["uid"] as? String == reference, "\(title): a query's data source must be \(reference)")
                #expect((target["expr"] as? String)?.isEmpty == false, "\(title): a query without expr")
                #expect(target["refId"] is String, "\(title): a query without refId")
            }
        }
    }

    @Test("the dashboard has the panels operators look for")
    func panels() throws {
        let queries = try DeployFiles.dashboardQueries().map(\.expr).joined(separator: "\n")
        for metric in [
            "roundup_callbacks_total", "roundup_callback_seconds_bucket", "roundup_pending_messages", "roundup_open_digests",
            "roundup_digests_held", "roundup_digests_total", "roundup_wechat_errors_total", "roundup_credits_outstanding",
            "roundup_oldest_due_age_seconds", "roundup_config_reloads_total",
        ] {
            #expect(queries.contains(metric), "no panel shows \(metric)")
        }
        // `shed` is the only way a message is lost: its series is drawn in red.
        let d = try DeployFiles.dashboardJSON()
        let callbacks = try #require(DeployFiles.panels(d).first {
            ($0["targets"] as? [[String: Any]])?.contains { ($0["expr"] as? String)?.contains("roundup_callbacks_total") == true } == true
        })
        let overrides = (callbacks["fieldConfig"] as? [String: Any])?["overrides"] as? [[String: Any]] ?? []
        #expect(overrides.contains { ($0["matcher"] as? [String: Any])?["options"] as? String == "shed" }, "shed is not highlighted")
    }

    @Test("every panel's query is PromQL that promtool accepts", .enabled(if: Promtool.shouldRun, Promtool.skipReason))
    func queriesParse() async throws {
        let queries = try DeployFiles.dashboardQueries()
        #expect(!queries.isEmpty)
        // Each query becomes a recording rule: `promtool check rules` parses every expression.
        var rules = "groups:\n  - name: dashboard\n    rules:\n"
        for (n, q) in queries.enumerated() {
            let expr = DeployFiles.expandGrafanaVariables(q.expr)
            #expect(!expr.contains("$"), "\(q.panel): an unexpanded Grafana variable in \(q.expr)")
            let quoted = String(data: try JSONSerialization.data(withJSONObject: [expr]), encoding: .utf8)!.dropFirst().dropLast()
            rules += "      - record: dashboard:query_\(n)\n        expr: \(quoted)\n"
        }
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try rules.write(to: dir.appendingPathComponent("dashboard.rules.yml"), atomically: true, encoding: .utf8)
        let result = try await Promtool.run(["check", "rules", "dashboard.rules.yml"], in: dir)
        #expect(result.status == 0, "promtool refused a dashboard query:\n\(result.stdout)\(result.stderr)\n\(rules)")
        #expect(result.stdout.contains("SUCCESS: \(queries.count) rules found"), "\(result.stdout)")
    }
}
