import Foundation
import Synchronization
import Yams

// The YAML as written, before validation: strict `Decodable` types that accept only known keys
// and record every problem instead of stopping at the first (all are printed).
// Scalars are kept as text here; `ConfigBuilder` parses them so that each message can say
// exactly what was expected.

/// Collects problems while the decoder walks the document.
final class ProblemLog: Sendable {
    private let problems = Mutex<[ConfigProblem]>([])

    func add(_ keyPath: String, _ message: String) {
        problems.withLock { $0.append(ConfigProblem(keyPath, message)) }
    }

    var all: [ConfigProblem] { problems.withLock { $0 } }
}

extension CodingUserInfoKey {
    static let roundupProblemLog = CodingUserInfoKey(rawValue: "roundup.problemLog")!
}

/// A coding key for any mapping key, so unknown keys can be seen and reported.
struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(_ string: String) { self.stringValue = string }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) {
        self.stringValue = String(intValue)
        self.intValue = intValue
    }
}

/// `templates[0].fields.thing1` for a decoder's coding path.
func keyPath(_ codingPath: [any CodingKey], appending key: String? = nil) -> String {
    var out = ""
    for k in codingPath {
        if let i = k.intValue { out += "[\(i)]" } else { out += (out.isEmpty ? "" : ".") + k.stringValue }
    }
    if let key { out += (out.isEmpty ? "" : ".") + key }
    return out
}

/// A mapping key as a key path shows it: an empty or null key as `""`, so that a problem with
/// it still says where it is (a bare "unknown key" at the top level named nothing; Tests/Fuzz).
func shownKey(_ key: String) -> String { key.isEmpty ? "\"\"" : key }

/// A YAML mapping read strictly: unknown keys are problems, values of the wrong shape are
/// problems, and reading never throws.
struct StrictMapping {
    let container: KeyedDecodingContainer<AnyKey>?
    let log: ProblemLog
    let path: String

    init(_ decoder: any Decoder) {
        self.log = decoder.userInfo[.roundupProblemLog] as? ProblemLog ?? ProblemLog()
        self.path = keyPath(decoder.codingPath)
        do {
            self.container = try decoder.container(keyedBy: AnyKey.self)
        } catch {
            // A null section (`digest:` with nothing under it) means "all defaults".
            if let single = try? decoder.singleValueContainer(), single.decodeNil() {
                self.container = nil
            } else {
                self.container = nil
                log.add(path, "expected a mapping of keys to values")
            }
        }
    }

    /// Reports every key not in `known`, suggesting the nearest known key.
    func rejectUnknown(_ known: [String], explain: [String: String] = [:]) {
        guard let container else { return }
        for key in container.allKeys where !known.contains(key.stringValue) {
            let where_ = keyPath([], appending: path.isEmpty ? shownKey(key.stringValue) : "\(path).\(shownKey(key.stringValue))")
            if let why = explain[key.stringValue] {
                log.add(where_, why)
            } else if let guess = nearest(key.stringValue, in: known) {
                log.add(where_, "unknown key (did you mean \"\(guess)\"?)")
            } else {
                log.add(where_, "unknown key")
            }
        }
    }

    /// Whether the key is present with a non-null value.
    func has(_ key: String) -> Bool {
        guard let container, container.contains(AnyKey(key)) else { return false }
        return (try? container.decodeNil(forKey: AnyKey(key))) == false
    }

    /// A scalar as its text; nil (and a problem) when it is a list or mapping.
    func scalar(_ key: String) -> String? {
        guard has(key), let container else { return nil }
        do {
            return try container.decode(String.self, forKey: AnyKey(key))
        } catch {
            log.add(childPath(key), "expected a single value, not a list or mapping")
            return nil
        }
    }

    /// A list of scalars; nil (and a problem) for anything else.
    func stringList(_ key: String) -> [String]? {
        guard has(key), let container else { return nil }
        do {
            return try container.decode([String].self, forKey: AnyKey(key))
        } catch {
            log.add(childPath(key), "expected a list of strings, like [\"a\", \"b\"]")
            return nil
        }
    }

    /// A nested value decoded as `T`, which does its own strict reading.
    func nested<T: Decodable>(_ key: String, as type: T.Type) -> T? {
        guard has(key), let container else { return nil }
        do {
            return try container.decode(T.self, forKey: AnyKey(key))
        } catch {
            log.add(childPath(key), describe(error))
            return nil
        }
    }

    /// Every key of the mapping in document order.
    var keys: [String] { container?.allKeys.map(\.stringValue) ?? [] }

    func childPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
}

/// A one-sentence description of a decoding failure for an operator.
func describe(_ error: any Error) -> String {
    switch error {
    case DecodingError.typeMismatch(let type, _):
        if type is [Any].Type || "\(type)".hasPrefix("Array") { return "expected a list" }
        if "\(type)".hasPrefix("Dictionary") { return "expected a mapping of keys to values" }
        return "has the wrong type"
    case DecodingError.dataCorrupted(let context):
        return context.debugDescription
    default:
        return "could not be read (\(error))"
    }
}

/// The known key closest to a misspelt one, if it is close enough to be a typo.
func nearest(_ word: String, in candidates: [String]) -> String? {
    func distance(_ a: [Character], _ b: [Character]) -> Int {
        var prev = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var cur = [i] + Array(repeating: 0, count: b.count)
            for j in 1...max(b.count, 1) where !b.isEmpty {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            prev = cur
        }
        return a.isEmpty ? b.count : (b.isEmpty ? a.count : prev[b.count])
    }
    let w = Array(word.lowercased())
    let best = candidates.map { ($0, distance(w, Array($0))) }.min { $0.1 < $1.1 }
    guard let best, best.1 <= max(2, w.count / 3) else { return nil }
    return best.0
}

/// The top level of the file.
struct RawConfig: Decodable {
    static let sections = ["server", "storage", "wechat", "im", "templates", "digest"]

    var server: RawScalars?
    var storage: RawScalars?
    var wechat: RawScalars?
    var im: RawScalars?
    var templates: [RawTemplate]?
    var digest: RawDigest?

    init(from decoder: any Decoder) throws {
        let m = StrictMapping(decoder)
        m.rejectUnknown(RawConfig.sections)
        server = m.nested("server", as: RawScalars.self)
        storage = m.nested("storage", as: RawScalars.self)
        wechat = m.nested("wechat", as: RawScalars.self)
        im = m.nested("im", as: RawScalars.self)
        if m.has("templates") {
            templates = m.nested("templates", as: [RawTemplate].self)
        }
        digest = m.nested("digest", as: RawDigest.self)
    }
}

/// A section of scalar keys (`server`, `storage`, `wechat`, `im`); which keys are known is
/// checked by the builder, which knows the section.
struct RawScalars: Decodable {
    var values: [String: String] = [:]
    var keys: [String] = []
    var path: String
    var log: ProblemLog

    init(from decoder: any Decoder) throws {
        let m = StrictMapping(decoder)
        path = m.path
        log = m.log
        keys = m.keys
        for key in m.keys {
            if let v = m.scalar(key) { values[key] = v }
        }
    }

    func rejectUnknown(_ known: [String]) {
        for key in keys where !known.contains(key) {
            if let guess = nearest(key, in: known) {
                log.add("\(path).\(shownKey(key))", "unknown key (did you mean \"\(guess)\"?)")
            } else {
                log.add("\(path).\(shownKey(key))", "unknown key")
            }
        }
    }
}

/// One entry of `templates:`.
struct RawTemplate: Decodable {
    static let keys = ["id", "kind", "page", "miniprogram_state", "lang", "fields"]

    var path: String
    var id: String?
    var kind: String?
    var page: String?
    var miniprogramState: String?
    var lang: String?
    var fields: [(keyword: String, field: RawField)] = []
    var hasFields = false

    init(from decoder: any Decoder) throws {
        let m = StrictMapping(decoder)
        path = m.path
        m.rejectUnknown(RawTemplate.keys)
        id = m.scalar("id")
        kind = m.scalar("kind")
        page = m.scalar("page")
        miniprogramState = m.scalar("miniprogram_state")
        lang = m.scalar("lang")
        if m.has("fields") {
            hasFields = true
            if let fieldMap = m.nested("fields", as: RawFields.self) { fields = fieldMap.fields }
        }
    }
}

/// `fields:` in document order.
struct RawFields: Decodable {
    var fields: [(keyword: String, field: RawField)] = []

    init(from decoder: any Decoder) throws {
        let m = StrictMapping(decoder)
        for key in m.keys {
            if let f = m.nested(key, as: RawField.self) { fields.append((key, f)) }
        }
    }
}

/// A field: a text, or `{value, fallback}`.
struct RawField: Decodable {
    var value: String?
    var fallback: String?

    init(from decoder: any Decoder) throws {
        if let single = try? decoder.singleValueContainer(), let text = try? single.decode(String.self) {
            value = text
            return
        }
        let m = StrictMapping(decoder)
        m.rejectUnknown(["value", "fallback"])
        value = m.scalar("value")
        fallback = m.scalar("fallback")
        if m.container != nil && value == nil {
            m.log.add(m.childPath("value"), "is required")
        }
    }
}

/// `digest:` or one of its profiles.
struct RawDigest: Decodable {
    static let policyScalars = [
        "window", "mode", "max_wait", "max_messages", "min_interval", "quiet_hours", "cancel_on_online",
        "offline_lookback", "group_messages", "retention",
    ]
    static let lists = ["urgent_senders", "ignore_senders"]
    static let topOnly = ["timezone", "send_concurrency", "profiles"]

    var path: String
    var scalars: [String: String] = [:]
    var lists: [String: [String]] = [:]
    var profiles: [(name: String, profile: RawDigest)] = []
    var isProfile: Bool

    init(from decoder: any Decoder) throws {
        let m = StrictMapping(decoder)
        path = m.path
        // A profile sits at digest.profiles.NAME: three keys deep.
        isProfile = decoder.codingPath.count >= 3
        var known = RawDigest.policyScalars + RawDigest.lists
        if isProfile {
            m.rejectUnknown(known, explain: [
                "timezone": "cannot be set in a profile (one time zone for all users)",
                "send_concurrency": "cannot be set in a profile (one limit for the whole service)",
                "profiles": "profiles cannot be nested",
            ])
        } else {
            known += RawDigest.topOnly
            m.rejectUnknown(known)
        }
        for key in RawDigest.policyScalars + (isProfile ? [] : ["timezone", "send_concurrency"]) {
            if let v = m.scalar(key) { scalars[key] = v }
        }
        for key in RawDigest.lists {
            if let v = m.stringList(key) { lists[key] = v }
        }
        if !isProfile, m.has("profiles"), let p = m.nested("profiles", as: RawProfiles.self) {
            profiles = p.profiles
        }
    }
}

/// `digest.profiles:` in document order.
struct RawProfiles: Decodable {
    var profiles: [(name: String, profile: RawDigest)] = []

    init(from decoder: any Decoder) throws {
        let m = StrictMapping(decoder)
        for key in m.keys {
            if let p = m.nested(key, as: RawDigest.self) {
                profiles.append((key, p))
            } else if !m.has(key) {
                m.log.add(m.childPath(key), "is empty; a profile needs at least one key")
            }
        }
    }
}
