/// How a subscribe-message template is paid for.
public enum TemplateKind: String, Sendable, CaseIterable, Codable, Hashable {
    /// One send per accept of the popup.
    case oneTime = "one_time"
    /// Usable from the first accept until a reject or a 43101.
    case longTerm = "long_term"
}

/// The type of a template keyword, named by the keyword's prefix (`thing1` → `thing`);
/// `FieldFitter` applies each type's length and charset limits.
public enum KeywordType: String, Sendable, CaseIterable, Codable, Hashable {
    case thing
    case number
    case letter
    case symbol
    case characterString = "character_string"
    case time
    case date
    case amount
    case phoneNumber = "phone_number"
    case carNumber = "car_number"
    case name
    case phrase
    case `enum`

    /// Types whose values Roundup can fit from free text. `amount` needs a currency value and
    /// `enum` one of the template's enumerated values; a digest has neither.
    public var isFittable: Bool { self != .amount && self != .enum }

    /// Splits a WeChat keyword (`character_string12`) into its type; nil when the prefix is not a
    /// WeChat keyword type or the numeric suffix is missing.
    public static func of(keyword: String) -> KeywordType? {
        let scalars = Array(keyword.unicodeScalars)
        guard let firstDigit = scalars.firstIndex(where: { ("0"..."9").contains($0) }), firstDigit > 0 else {
            return nil
        }
        guard scalars[firstDigit...].allSatisfy({ ("0"..."9").contains($0) }) else { return nil }
        let prefix = String(String.UnicodeScalarView(scalars[..<firstDigit]))
        return KeywordType(rawValue: prefix)
    }
}
