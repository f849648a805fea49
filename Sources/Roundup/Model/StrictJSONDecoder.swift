import Foundation

/// Decodes `Decodable` types from a strictly read JSON value without coercing types: a string
/// is only a JSON string, a boolean only `true`/`false`, an integer only a number with no
/// fraction that fits. Errors are `DecodingError`s whose `sentence` names the field.
struct StrictJSONDecoder {
    /// Whether an object member the type has no coding key for is refused (else ignored).
    var refusesUnknownKeys = false

    /// Reads `data` strictly, then decodes `type` from it.
    func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        try decode(type, from: StrictJSON.parse(data))
    }

    /// Decodes `type` from an already parsed value.
    func decode<T: Decodable>(_ type: T.Type, from value: StrictJSON) throws -> T {
        try T(from: StrictJSONValueDecoder(value: value, codingPath: [], refusesUnknownKeys: refusesUnknownKeys))
    }
}

extension DecodingError {
    /// One sentence naming the field and what is wrong with it, for an error body.
    var sentence: String {
        func path(_ context: Context, _ key: (any CodingKey)? = nil) -> String {
            let keys = context.codingPath + (key.map { [$0] } ?? [])
            guard !keys.isEmpty else { return "the body" }
            return keys.enumerated().map { offset, key in
                key.intValue.map { "[\($0)]" } ?? (offset == 0 ? key.stringValue : ".\(key.stringValue)")
            }.joined()
        }
        switch self {
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            return "\(path(context)) \(context.debugDescription)"
        case .keyNotFound(let key, let context):
            return "\(path(context, key)) is required"
        @unknown default:
            return "the body does not have the expected fields"
        }
    }
}

/// A coding key for any member name or array position.
private struct AnyCodingKey: CodingKey {
    let stringValue: String
    let intValue: Int?

    init(stringValue: String) {
        self.stringValue = stringValue
        intValue = nil
    }

    init(intValue: Int) {
        stringValue = String(intValue)
        self.intValue = intValue
    }
}

/// What a Swift type is called in an error sentence ("must be a string").
private func expected(_ type: Any.Type) -> String {
    switch type {
    case is String.Type: return "a string"
    case is Bool.Type: return "true or false"
    case is Double.Type, is Float.Type: return "a number"
    case is any FixedWidthInteger.Type: return "a whole number in range"
    default: return "a JSON value of another type"
    }
}

/// The `Decoder` over one `StrictJSON` value.
private struct StrictJSONValueDecoder: Decoder {
    let value: StrictJSON
    let codingPath: [any CodingKey]
    let refusesUnknownKeys: Bool
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    /// The error for a value that is not `description` (`valueNotFound` when it is `null`).
    func mismatch(_ type: Any.Type, _ description: String) -> DecodingError {
        if value == .null { return DecodingError.valueNotFound(type, .init(codingPath: codingPath, debugDescription: "must not be null")) }
        return DecodingError.typeMismatch(type, .init(codingPath: codingPath, debugDescription: "must be \(description)"))
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let object) = value else { throw mismatch([String: Any].self, "an object") }
        if refusesUnknownKeys, let member = object.members.first(where: { Key(stringValue: $0.key) == nil }) {
            var known = ""
            if let iterable = Key.self as? any (CodingKey & CaseIterable).Type { known = " (fields: \(fieldNames(iterable)))" }
            throw DecodingError.dataCorrupted(.init(
                codingPath: codingPath + [AnyCodingKey(stringValue: member.key)], debugDescription: "is not a known field\(known)"))
        }
        return KeyedDecodingContainer(KeyedContainer<Key>(object: object, codingPath: codingPath, refusesUnknownKeys: refusesUnknownKeys))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let elements) = value else { throw mismatch([Any].self, "an array") }
        return UnkeyedContainer(elements: elements, codingPath: codingPath, refusesUnknownKeys: refusesUnknownKeys)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { self }
}

/// The names of a case-iterable coding key type, for an error sentence.
private func fieldNames<Key: CodingKey & CaseIterable>(_ type: Key.Type) -> String {
    Key.allCases.map(\.stringValue).joined(separator: ", ")
}

extension StrictJSONValueDecoder: SingleValueDecodingContainer {
    func decodeNil() -> Bool { value == .null }

    func decode(_ type: Bool.Type) throws -> Bool {
        guard case .bool(let flag) = value else { throw mismatch(type, expected(type)) }
        return flag
    }

    func decode(_ type: String.Type) throws -> String {
        guard case .string(let text) = value else { throw mismatch(type, expected(type)) }
        return text
    }

    func decode(_ type: Double.Type) throws -> Double {
        switch value {
        case .int(let number): return Double(number)
        case .uint(let number): return Double(number)
        case .double(let number): return number
        default: throw mismatch(type, expected(type))
        }
    }

    func decode(_ type: Float.Type) throws -> Float { Float(try decode(Double.self)) }

    /// An integer of any width from a number with no fraction that fits it (`2` or `2.0`).
    func integer<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
        let result: T?
        switch value {
        case .int(let number): result = T(exactly: number)
        case .uint(let number): result = T(exactly: number)
        case .double(let number): result = number.isFinite ? T(exactly: number) : nil
        default: throw mismatch(type, "a whole number")
        }
        guard let result else {
            if case .double(let number) = value, number.rounded() != number { throw mismatch(type, "a whole number") }
            throw mismatch(type, "a whole number from \(T.min) to \(T.max)")
        }
        return result
    }

    func decode(_ type: Int.Type) throws -> Int { try integer(type) }
    func decode(_ type: Int8.Type) throws -> Int8 { try integer(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try integer(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try integer(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try integer(type) }
    func decode(_ type: UInt.Type) throws -> UInt { try integer(type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try integer(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try integer(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try integer(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try integer(type) }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        if value == .null, !(T.self is any ExpressibleByNilLiteral.Type) {
            throw DecodingError.valueNotFound(type, .init(codingPath: codingPath, debugDescription: "must not be null"))
        }
        return try T(from: self)
    }
}

/// The members of one JSON object, by coding key.
private struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let object: StrictJSONObject
    let codingPath: [any CodingKey]
    let refusesUnknownKeys: Bool

    var allKeys: [Key] { object.members.compactMap { Key(stringValue: $0.key) } }

    func contains(_ key: Key) -> Bool { object[key.stringValue] != nil }

    /// The decoder for the member under `key`; a missing member is `keyNotFound`.
    func decoder(for key: Key) throws -> StrictJSONValueDecoder {
        guard let member = object[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "is required"))
        }
        return StrictJSONValueDecoder(value: member, codingPath: codingPath + [key], refusesUnknownKeys: refusesUnknownKeys)
    }

    func decodeNil(forKey key: Key) throws -> Bool { try decoder(for: key).decodeNil() }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try decoder(for: key).decode(type) }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try decoder(for: key).decode(type) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try decoder(for: key).decode(type) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try decoder(for: key).decode(type) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try decoder(for: key).decode(type) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try decoder(for: key).decode(type) }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try decoder(for: key).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try decoder(for: key).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        StrictJSONValueDecoder(value: .object(object), codingPath: codingPath, refusesUnknownKeys: refusesUnknownKeys)
    }

    func superDecoder(forKey key: Key) throws -> any Decoder { try decoder(for: key) }
}

/// The elements of one JSON array, in order.
private struct UnkeyedContainer: UnkeyedDecodingContainer {
    let elements: [StrictJSON]
    let codingPath: [any CodingKey]
    let refusesUnknownKeys: Bool
    var currentIndex = 0

    init(elements: [StrictJSON], codingPath: [any CodingKey], refusesUnknownKeys: Bool) {
        self.elements = elements
        self.codingPath = codingPath
        self.refusesUnknownKeys = refusesUnknownKeys
    }

    var count: Int? { elements.count }
    var isAtEnd: Bool { currentIndex >= elements.count }

    /// The decoder for the next element; past the end is `valueNotFound`.
    mutating func next(_ type: Any.Type) throws -> StrictJSONValueDecoder {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(type, .init(codingPath: codingPath, debugDescription: "has fewer elements than expected"))
        }
        defer { currentIndex += 1 }
        return StrictJSONValueDecoder(
            value: elements[currentIndex], codingPath: codingPath + [AnyCodingKey(intValue: currentIndex)], refusesUnknownKeys: refusesUnknownKeys)
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd, elements[currentIndex] == .null else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try next(type).decode(type) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try next(type).container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try next([Any].self).unkeyedContainer()
    }

    mutating func superDecoder() throws -> any Decoder { try next(Any.self) }
}
