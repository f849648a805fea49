import Foundation
import Testing
import Yams

/// `deploy/prometheus/alerts.yml` and its unit tests `alerts.test.yml`.
@Suite("Prometheus alert rules")
struct AlertRulesTests {
    /// The alerting rules: (name, expr).
    static func alerts() throws -> [(name: String, expr: String)] {
        let text = try String(contentsOf: DeployFiles.alerts, encoding: .utf8)
        let root = try #require(try Yams.load(yaml: text) as? [String: Any])
        let groups = try #require(root["groups"] as? [[String: Any]])
        return groups.flatMap { group in
            (group["rules"] as? [[String: Any]] ?? []).compactMap { rule in
                guard let name = rule["alert"] as? String else { return nil }
                return (name, rule["expr"] as? String ?? "")
            }
        }
    }

    @Test("the rules cover what operators must hear about")
    func coverage() throws {
        let alerts = try Self.alerts()
        let all = alerts.map(\.expr).joined(separator: "\n")
        #expect(alerts.count >= 9)
        #expect(all.contains(#"outcome="shed""#))
        #expect(all.contains("roundup_oldest_due_age_seconds"))
        #expect(all.contains(#"errcode="45009""#))
        #expect(all.contains(#"reason="config_error""#))
        #expect(all.contains("in_doubt") && all.contains("dead"))
        #expect(all.contains("roundup_store_errors_total"))
        #expect(all.contains("roundup_access_token_refreshes_total"))
        #expect(all.contains("probe_success"))
        #expect(all.contains("up{"))
        // The overdue alert stays silent while the quota pause holds.
        let overdue = try #require(alerts.first { $0.expr.contains("roundup_oldest_due_age_seconds") })
        #expect(overdue.expr.contains("unless") && overdue.expr.contains("45009"))
    }

    @Test("every alert has a unit test in alerts.test.yml that fires it")
    func everyAlertFires() throws {
        let text = try String(contentsOf: DeployFiles.alertTests, encoding: .utf8)
        let root = try #require(try Yams.load(yaml: text) as? [String: Any])
        #expect((root["rule_files"] as? [String]) == ["alerts.yml"])
        let cases = (root["tests"] as? [[String: Any]] ?? []).flatMap { $0["alert_rule_test"] as? [[String: Any]] ?? [] }
        let fired = Set(cases.compactMap { c -> String? in
            guard let expected = c["exp_alerts"] as? [Any], !expected.isEmpty else { return nil }
            return c["alertname"] as? String
        })
        for alert in try Self.alerts() {
            #expect(fired.contains(alert.name), "no test in alerts.test.yml fires \(alert.name)")
        }
    }

    @Test("promtool check rules accepts alerts.yml and promtool test rules passes", .enabled(if: Promtool.shouldRun, Promtool.skipReason))
    func promtool() async throws {
        let dir = DeployFiles.alerts.deletingLastPathComponent()
        let check = try await Promtool.run(["check", "rules", "alerts.yml"], in: dir)
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        let test = try await Promtool.run(["test", "rules", "alerts.test.yml"], in: dir)
        #expect(test.status == 0, "\(test.stdout)\(test.stderr)")
    }
}
