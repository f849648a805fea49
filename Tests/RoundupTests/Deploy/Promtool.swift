import Foundation
import Synchronization
import Testing

/// Prometheus's `promtool` (Debian's `prometheus` package), which checks rule files and runs
/// their unit tests. Tests that need it are skipped on a developer's machine without it, and fail
/// under CI (`CI=true`), where `.ci/run` installs it.
enum Promtool {
    /// The executable on `PATH` (or in the usual folders), if installed.
    static let path: URL? = {
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
            + ["/usr/bin", "/usr/local/bin", "/bin"]
        return dirs.map { URL(fileURLWithPath: $0).appendingPathComponent("promtool") }
            .first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }()

    static var underCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    /// Whether a test that needs promtool runs: always under CI (where a missing promtool fails
    /// the test), elsewhere only when it is installed.
    static var shouldRun: Bool { path != nil || underCI }

    static let skipReason: Comment = "promtool is not installed (apt-get install prometheus); under CI=true this test fails instead"

    /// The executable, or a recorded failure explaining that CI must install it.
    static func require() throws -> URL {
        try #require(path, "promtool is missing: .ci/run must install Debian's prometheus package")
    }

    /// Runs promtool with arguments in a folder.
    static func run(_ arguments: [String], in directory: URL) async throws -> ProcessResult {
        try await runTool(try require(), arguments, in: directory)
    }
}

/// The monitoring files under `deploy/`.
enum DeployFiles {
    static var dashboard: URL { TestSupport.packageRoot.appendingPathComponent("deploy/grafana/roundup.json") }
    static var alerts: URL { TestSupport.packageRoot.appendingPathComponent("deploy/prometheus/alerts.yml") }
    static var alertTests: URL { TestSupport.packageRoot.appendingPathComponent("deploy/prometheus/alerts.test.yml") }

    /// The dashboard as a JSON object.
    static func dashboardJSON() throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: dashboard))
        return try #require(object as? [String: Any])
    }

    /// Every panel, including those nested in collapsed rows.
    static func panels(_ dashboard: [String: Any]) -> [[String: Any]] {
        let top = dashboard["panels"] as? [[String: Any]] ?? []
        return top.flatMap { [$0] + ($0["panels"] as? [[String: Any]] ?? []) }
    }

    /// Every query of the dashboard: (panel title, refId, expr).
    static func dashboardQueries() throws -> [(panel: String, refID: String, expr: String)] {
        try panels(dashboardJSON()).flatMap { panel in
            (panel["targets"] as? [[String: Any]] ?? []).map {
                (panel["title"] as? String ?? "?", $0["refId"] as? String ?? "?", $0["expr"] as? String ?? "")
            }
        }
    }

    /// Grafana's built-in interval variables replaced by durations, so the query is plain PromQL.
    static func expandGrafanaVariables(_ expr: String) -> String {
        expr.replacingOccurrences(of: "$__rate_interval", with: "5m")
            .replacingOccurrences(of: "${__rate_interval}", with: "5m")
            .replacingOccurrences(of: "$__interval", with: "1m")
            .replacingOccurrences(of: "${__interval}", with: "1m")
            .replacingOccurrences(of: "$__range", with: "1h")
            .replacingOccurrences(of: "${__range}", with: "1h")
    }
}
