import Foundation

/// The version this build reports in `roundup --version` and `roundup_build_info`.
public enum RoundupVersion {
    public static let current = "0.5.0"

    /// Compares two dotted versions number by number (`0.10.0` is newer than `0.9.2`); a missing
    /// or non-numeric part counts as 0.
    public static func compare(_ a: String, _ b: String) -> ComparisonResult {
        let x = a.split(separator: ".").map { Int($0) ?? 0 }, y = b.split(separator: ".").map { Int($0) ?? 0 }
        for i in 0..<max(x.count, y.count) {
            let l = i < x.count ? x[i] : 0, r = i < y.count ? y[i] : 0
            if l != r { return l < r ? .orderedAscending : .orderedDescending }
        }
        return .orderedSame
    }
}
