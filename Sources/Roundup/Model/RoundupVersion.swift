/// The version this build reports in `roundup --version` and `roundup_build_info`.
public enum RoundupVersion {
    public static let current = "0.4.0"
}
