import Foundation

@testable import Roundup

/// The properties every decoder keeps on any input, as plain functions that return what they found
/// wrong (empty means fine). The generative suites, the replay of `Fixtures/hostile/` and the
/// libFuzzer harness in `Tests/Fuzz/` all call these, so this file imports nothing but Foundation
/// and Roundup and uses nothing else from the test target.
enum HostileOracles {
    // MARK: - IM callbacks

    /// Line breaks and tabs, which a one-line summary must not keep.
    static let breakScalars: Set<UInt32> = [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x85, 0x2028, 0x2029]

    /// `IMCallback.decode` on any body: the error names the right cause, and a decoded callback has
    /// every field its command cannot do without, the command it came as, and a clean summary.
    static func imCallback(_ bytes: [UInt8], command: String? = nil) -> [String] {
        var problems: [String] = []
        let data = Data(bytes)
        let parsed = try? StrictJSON.parse(data)
        func resolved(_ object: StrictJSONObject) -> String {
            let own = object["CallbackCommand"]?.string ?? ""
            return own.isEmpty ? command ?? "" : own
        }
        let decoded: IMCallback
        do {
            decoded = try IMCallback.decode(command: command, body: data)
        } catch {
            if error.description.isEmpty { problems.append("an IM decoding error has an empty description") }
            switch error {
            case .invalidJSON:
                if parsed != nil { problems.append("refused as invalid JSON, but StrictJSON parses the body") }
            case .notAnObject:
                if parsed == nil { problems.append("refused as not an object, but the body is not JSON at all") }
                if case .object? = parsed { problems.append("refused as not an object, but the body is a JSON object") }
            case .missingField(let name, let field):
                guard case .object(let object)? = parsed else {
                    problems.append("missingField for a body that is not a JSON object")
                    break
                }
                if name != resolved(object) { problems.append("missingField names command \(name), not \(resolved(object))") }
                if IMCallbackCommand(rawValue: name) == nil { problems.append("missingField for the unhandled command \(name)") }
                if field.isEmpty { problems.append("missingField names no field") }
            }
            return problems
        }
        guard case .object(let object)? = parsed else {
            return ["decoded a callback from a body that is not a JSON object"]
        }
        if decoded.command != resolved(object) {
            problems.append("decoded as \(decoded.command), but the body's command is \(resolved(object))")
        }
        switch decoded {
        case .stateChange(let s):
            if s.userID.isEmpty { problems.append("a state change with an empty user") }
        case .c2cBeforeSend(let m), .c2cAfterSend(let m):
            if m.from.isEmpty || m.to.isEmpty || m.msgKey.isEmpty {
                problems.append("a C2C message with an empty From_Account, To_Account or MsgKey")
            }
            let afterSend = decoded.command == IMCallbackCommand.c2cAfterSend.rawValue
            if afterSend != (m.sendMsgResult != nil) { problems.append("SendMsgResult present on the wrong C2C callback") }
            problems += summary(m.summary)
            _ = m.isUrgent
        case .msgReport(let r):
            if r.reportAccount.isEmpty || r.peerAccount.isEmpty { problems.append("a read report with an empty account") }
        case .withdraw(let w):
            if w.to.isEmpty || w.msgKey.isEmpty { problems.append("a recall with an empty To_Account or MsgKey") }
        case .groupAfterSend(let g):
            if g.groupID.isEmpty || g.from.isEmpty { problems.append("a group message with an empty GroupId or From_Account") }
            if g.mentioned.contains("") { problems.append("an empty @-mentioned account") }
            if Set(g.mentioned).count != g.mentioned.count { problems.append("an @-mentioned account listed twice") }
            problems += summary(g.summary)
            _ = g.isUrgent
        case .unknown(let name):
            if IMCallbackCommand(rawValue: name) != nil { problems.append("the handled command \(name) decoded as unknown") }
        }
        return problems
    }

    /// A message summary is one non-empty line, and fitting it to any keyword type respects that
    /// type's length limit and drops control characters.
    static func summary(_ text: String) -> [String] {
        var problems: [String] = []
        if text.isEmpty { problems.append("a message summary is empty") }
        if text.unicodeScalars.contains(where: { breakScalars.contains($0.value) }) {
            problems.append("a summary keeps a line break or tab")
        }
        if text.hasPrefix(" ") || text.hasSuffix(" ") { problems.append("a summary has leading or trailing spaces") }
        for type in KeywordType.allCases where type.isFittable {
            guard let limit = FieldFitter.limit(for: type), let fitted = FieldFitter.fit(text, as: type) else { continue }
            if fitted.unicodeScalars.count > limit {
                problems.append("the summary fitted to \(type.rawValue) has \(fitted.unicodeScalars.count) characters, over \(limit)")
            }
            if fitted.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
                problems.append("the summary fitted to \(type.rawValue) keeps a control character")
            }
        }
        return problems
    }

    /// StrictJSON on any bytes: bounded depth, a parsed value survives a write-and-read round
    /// trip, nothing RFC 8259 forbids is accepted (a byte-order mark, a trailing comma, a lone
    /// surrogate escape, a repeated key, bytes that are not UTF-8), and every document Foundation
    /// reads that RFC 8259 allows (within the depth limit) StrictJSON reads to the same value.
    static func imJSON(_ bytes: [UInt8]) -> [String] {
        var problems: [String] = []
        let data = Data(bytes)
        let raw = rawScan(bytes)
        let validUTF8 = String(validating: bytes, as: UTF8.self) != nil
        let bom = bytes.starts(with: [0xEF, 0xBB, 0xBF])
        var ours: StrictJSON?
        do {
            ours = try StrictJSON.parse(data)
        } catch {
            if error.offset < 0 || error.offset > bytes.count { problems.append("a syntax error offset outside the input") }
        }
        if let ours {
            if depth(ours) > 64 { problems.append("StrictJSON returned a value nested deeper than its limit of 64") }
            if bom { problems.append("StrictJSON accepted a byte-order mark") }
            if raw.trailingComma { problems.append("StrictJSON accepted a trailing comma") }
            if raw.loneSurrogate { problems.append("StrictJSON accepted a lone surrogate escape") }
            if !validUTF8 { problems.append("StrictJSON accepted bytes that are not UTF-8") }
            if hasRepeatedKey(ours) { problems.append("StrictJSON accepted an object with a repeated key") }
            if memberCount(ours) != raw.members { problems.append("StrictJSON's value has another number of members than the text") }
            if let text = serialize(ours) {
                if let again = try? StrictJSON.parse(text) {
                    if again != ours { problems.append("a StrictJSON value changed in a write-and-read round trip") }
                } else {
                    problems.append("StrictJSON cannot read back its own value written as JSON")
                }
            }
        }
        // Foundation guesses UTF-16 or UTF-32 from NUL bytes, and it allows what RFC 8259 does not:
        // a byte-order mark, a comma before `}` or `]`, a lone surrogate escape and a repeated key
        // (the last wins, which shows as fewer members than the text has). Only the rest is compared.
        if !bytes.contains(0), validUTF8, !bom, raw.depth <= 64, !raw.trailingComma, !raw.loneSurrogate,
            let foundation = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]),
            memberCount(foundation) == raw.members
        {
            if let ours {
                if !equivalent(ours, foundation) { problems.append("StrictJSON and Foundation read different values") }
            } else {
                problems.append("Foundation reads this JSON but StrictJSON refuses it")
            }
        }
        return problems
    }

    static func depth(_ value: StrictJSON) -> Int {
        switch value {
        case .array(let items): return 1 + (items.map(depth).max() ?? 0)
        case .object(let object): return 1 + (object.members.map { depth($0.value) }.max() ?? 0)
        default: return 0
        }
    }

    /// Whether any object in the value has a key twice (compared by UTF-8 bytes).
    static func hasRepeatedKey(_ value: StrictJSON) -> Bool {
        switch value {
        case .array(let items): return items.contains(where: hasRepeatedKey)
        case .object(let object):
            let keys = object.members.map { Array($0.key.utf8) }
            return Set(keys).count != keys.count || object.members.contains { hasRepeatedKey($0.value) }
        default: return false
        }
    }

    /// The object members in a StrictJSON value, all levels.
    static func memberCount(_ value: StrictJSON) -> Int {
        switch value {
        case .array(let items): return items.map(memberCount).reduce(0, +)
        case .object(let object): return object.members.map { 1 + memberCount($0.value) }.reduce(0, +)
        default: return 0
        }
    }

    /// The object members in a Foundation value, all levels (a repeated key counts once).
    static func memberCount(_ value: Any) -> Int {
        if let array = value as? [Any] { return array.map { memberCount($0) }.reduce(0, +) }
        if let dictionary = value as? [String: Any] { return dictionary.values.map { 1 + memberCount($0) }.reduce(0, +) }
        return 0
    }

    /// What a scan of JSON text outside strings finds: the deepest nesting of `[` and `{`
    /// (counting members a repeated key later replaces, which a parsed value no longer shows),
    /// whether a comma comes right before a `}` or `]`, how many object members there are (a
    /// `:` outside strings), and whether a string escapes a surrogate without its partner.
    struct RawScan {
        var depth = 0
        var trailingComma = false
        var members = 0
        var loneSurrogate = false
    }

    static func rawScan(_ bytes: [UInt8]) -> RawScan {
        var scan = RawScan()
        var depth = 0, inString = false, afterComma = false
        var i = 0
        /// The value of the `\uXXXX` escape whose `u` is at `at`, or nil.
        func escape(at u: Int) -> UInt32? {
            guard u + 4 < bytes.count, bytes[u] == UInt8(ascii: "u") else { return nil }
            return UInt32(String(decoding: bytes[(u + 1)...(u + 4)], as: UTF8.self), radix: 16)
        }
        while i < bytes.count {
            let byte = bytes[i]
            if inString {
                if byte == UInt8(ascii: "\\"), i + 1 < bytes.count {
                    if let unit = escape(at: i + 1), (0xD800..<0xE000).contains(unit) {
                        if unit < 0xDC00, i + 7 < bytes.count, bytes[i + 6] == UInt8(ascii: "\\"), let low = escape(at: i + 7),
                            (0xDC00..<0xE000).contains(low)
                        {
                            i += 12
                            continue
                        }
                        scan.loneSurrogate = true
                    }
                    i += 2
                    continue
                }
                if byte == UInt8(ascii: "\"") { inString = false }
                i += 1
                continue
            }
            switch byte {
            case 0x20, 0x09, 0x0A, 0x0D:
                i += 1
                continue
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                scan.depth = max(scan.depth, depth)
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                depth -= 1
                if afterComma { scan.trailingComma = true }
            case UInt8(ascii: ":"): scan.members += 1
            default: break
            }
            afterComma = byte == UInt8(ascii: ",")
            i += 1
        }
        return scan
    }

    /// JSON text for a value; nil when a number cannot be written (infinite).
    static func serialize(_ value: StrictJSON) -> String? {
        switch value {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .uint(let u): return String(u)
        case .double(let d): return d.isFinite ? "\(d)" : nil
        case .string(let s): return quote(s)
        case .array(let items):
            var parts: [String] = []
            for item in items {
                guard let text = serialize(item) else { return nil }
                parts.append(text)
            }
            return "[" + parts.joined(separator: ",") + "]"
        case .object(let object):
            var parts: [String] = []
            for (key, item) in object.members {
                guard let text = serialize(item) else { return nil }
                parts.append(quote(key) + ":" + text)
            }
            return "{" + parts.joined(separator: ",") + "}"
        }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            default:
                if scalar.value < 0x20 {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    /// Whether StrictJSON's value and Foundation's are the same document.
    static func equivalent(_ ours: StrictJSON, _ theirs: Any) -> Bool {
        switch ours {
        case .null: return theirs is NSNull
        case .bool(let b): return (theirs as? NSNumber)?.boolValue == b
        case .int(let i):
            guard let n = theirs as? NSNumber else { return false }
            return n.int64Value == i || n.doubleValue == Double(i)
        case .uint(let u):
            guard let n = theirs as? NSNumber else { return false }
            return n.uint64Value == u || n.doubleValue == Double(u)
        case .double(let d):
            guard let n = theirs as? NSNumber else { return false }
            let other = n.doubleValue
            return other == d || abs(other - d) <= abs(d) * 1e-12
        case .string(let s): return (theirs as? String) == foundationString(s)
        case .array(let items):
            guard let array = theirs as? [Any], array.count == items.count else { return false }
            return zip(items, array).allSatisfy { equivalent($0, $1) }
        case .object(let object):
            guard let dictionary = theirs as? [String: Any] else { return false }
            let keys = Set(object.members.map(\.key))
            guard Set(keys.map(foundationString)) == Set(dictionary.keys), keys.count == dictionary.count else { return false }
            return keys.allSatisfy { key in object[key].map { equivalent($0, dictionary[foundationString(key)]!) } ?? false }
        }
    }

    /// A string as Foundation's JSON reader returns it: it drops a leading U+FEFF from every
    /// string (StrictJSON keeps it, as RFC 8259 says).
    static func foundationString(_ s: String) -> String {
        s.unicodeScalars.first == "\u{FEFF}" ? String(String.UnicodeScalarView(s.unicodeScalars.dropFirst())) : s
    }

    // MARK: - WeChat pushes

    /// `PushDocument.parse` and `WeChatEvent.decode` on any body: only their own errors, XML with a
    /// DTD or a non-UTF-8 encoding is never accepted, and a decoded event is complete.
    static func pushDocument(_ bytes: [UInt8]) -> [String] { pushDocumentChecked(bytes).problems }

    /// `pushDocument`, also returning the event when the body decodes to one.
    static func pushDocumentChecked(_ bytes: [UInt8]) -> (problems: [String], event: WeChatEvent?) {
        var problems: [String] = []
        let data = Data(bytes)
        let format: PushFormat
        let value: PushValue
        do {
            (format, value) = try PushDocument.parse(data)
        } catch {
            switch error {
            case .malformed, .doctypeRefused: break
            default: problems.append("parsing a push body threw \(error), which only malformed or doctypeRefused may be")
            }
            return (problems, nil)
        }
        switch format {
        case .json:
            if case .object = value {} else { problems.append("a JSON push that is not an object was accepted") }
        case .xml:
            if declaresDTD(bytes) { problems.append("XML with a DTD declaration was accepted") }
            if let encoding = xmlDeclaredEncoding(bytes), !["utf-8", "utf8"].contains(encoding.lowercased()) {
                problems.append("XML declaring the encoding \(encoding) was accepted")
            }
        }
        do {
            let decoded = try WeChatEvent.decode(value)
            return (problems + event(decoded), decoded)
        } catch {
            if case .malformed = error {} else { problems.append("decoding an event threw \(error), not malformed") }
            return (problems, nil)
        }
    }

    /// A decoded event has what its handler needs.
    static func event(_ event: WeChatEvent) -> [String] {
        var problems: [String] = []
        switch event {
        case .subscribePopup(let e), .subscribeChange(let e):
            if e.openid.isEmpty { problems.append("a subscription event with an empty openid") }
            if e.items.isEmpty { problems.append("a subscription event with no items") }
            if e.items.contains(where: { $0.templateID.isEmpty || $0.status.isEmpty }) {
                problems.append("a subscription item with an empty template or status")
            }
            if e.items.contains(where: { event.eventKey(templateID: $0.templateID) == nil }) {
                problems.append("a subscription item without an idempotency key")
            }
        case .subscribeSent(let e):
            if e.openid.isEmpty { problems.append("a sent event with an empty openid") }
            if e.items.isEmpty { problems.append("a sent event with no items") }
            if e.items.contains(where: { $0.templateID.isEmpty || $0.msgID.isEmpty || !$0.msgID.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) }) {
                problems.append("a sent item with an empty template or a MsgID that is not decimal digits")
            }
        case .other:
            break
        }
        return problems
    }

    /// A correctly signed plaintext push: the answer is an event (the same one the document decodes
    /// to) or a 400 — never 401 or 503, since the signature is good.
    static func plaintextPush(_ bytes: [UInt8], verifier: WeChatPushVerifier, query: PushQuery) -> [String] {
        let checked = pushDocumentChecked(bytes)
        var problems = checked.problems
        let direct = checked.event
        do {
            let verified = try verifier.verify(query: query, body: Data(bytes))
            if direct != verified { problems.append("the verifier's event differs from decoding the document") }
        } catch {
            if error.httpStatus != 400 {
                problems.append("a correctly signed plaintext push was answered \(error.httpStatus) (\(error))")
            }
        }
        return problems
    }

    /// An encrypted push whose body was tampered with, under the original query: refused, or
    /// accepted only with exactly the original event (the signature covers `Encrypt`).
    static func tamperedEncryptedPush(
        _ bytes: [UInt8], verifier: WeChatPushVerifier, query: PushQuery, original: WeChatEvent, originalEncrypt: String
    ) -> [String] {
        var problems: [String] = []
        let data = Data(bytes)
        guard let verified = try? verifier.verify(query: query, body: data) else { return problems }
        if verified != original { problems.append("a tampered encrypted push was accepted with other content") }
        if let encrypt = (try? PushDocument.parse(data))?.1["Encrypt"]?.text, encrypt != originalEncrypt {
            problems.append("an encrypted push was accepted although its Encrypt value changed")
        }
        return problems
    }

    /// A damaged `Encrypt` value, correctly re-signed (as by someone who holds the token but not
    /// the key): decrypting it yields an event or a 400/401 for the ciphertext — never a crash,
    /// and never a signature error, since the signature is right.
    static func resignedEncryptedPush(
        encrypt: String, format: PushFormat, verifier: WeChatPushVerifier, token: String
    ) -> [String] {
        var problems: [String] = []
        let timestamp = "1714112445", nonce = "415670741"
        let body: Data
        switch format {
        case .json:
            guard let json = try? JSONSerialization.data(withJSONObject: ["ToUserName": "gh_x", "Encrypt": encrypt]) else { return [] }
            body = json
        case .xml:
            guard !encrypt.contains("]]>") else { return [] }
            body = Data("<xml><ToUserName><![CDATA[gh_x]]></ToUserName><Encrypt><![CDATA[\(encrypt)]]></Encrypt></xml>".utf8)
        }
        let query = PushQuery(
            signature: PushSignature.compute(token: token, timestamp: timestamp, nonce: nonce), timestamp: timestamp, nonce: nonce,
            encryptType: "aes", msgSignature: PushSignature.compute(token: token, timestamp: timestamp, nonce: nonce, encrypt: encrypt))
        do {
            problems += event(try verifier.verify(query: query, body: body))
        } catch {
            switch error {
            case .undecryptable, .appIDMismatch, .malformed, .doctypeRefused: break
            default: problems.append("a correctly re-signed encrypted push was refused with \(error)")
            }
        }
        if let crypto = verifier.crypto {
            do {
                _ = try crypto.decrypt(encrypt)
            } catch {
                switch error {
                case .undecryptable, .appIDMismatch: break
                default: problems.append("decrypting threw \(error), not undecryptable or appIDMismatch")
                }
            }
        }
        return problems
    }

    /// A server check or push query: it passes only when `signature` is the right one.
    static func serverCheck(_ queryString: String, verifier: WeChatPushVerifier) -> [String] {
        let query = PushQuery(queryString: queryString)
        do {
            try verifier.verifyServerCheck(query)
            guard let timestamp = query.timestamp, let nonce = query.nonce,
                query.signature?.lowercased() == PushSignature.compute(token: verifier.token, timestamp: timestamp, nonce: nonce)
            else { return ["a server check passed without the right signature"] }
            return []
        } catch {
            return error.httpStatus == 401 ? [] : ["a server check failed with \(error.httpStatus), not 401"]
        }
    }

    /// Whether XML text declares a DTD, an entity, an element or an attribute list outside comments,
    /// CDATA sections and processing instructions (where such text is just text).
    static func declaresDTD(_ bytes: [UInt8]) -> Bool {
        var visible: [UInt8] = []
        visible.reserveCapacity(bytes.count)
        var i = 0
        func starts(_ prefix: String, at index: Int) -> Bool {
            var i = index
            for byte in prefix.utf8 {
                guard i < bytes.count, bytes[i] == byte else { return false }
                i += 1
            }
            return true
        }
        func skip(past terminator: String, from index: Int) -> Int {
            find(Array(terminator.utf8), in: bytes, from: index).map { $0 + terminator.utf8.count } ?? bytes.count
        }
        while i < bytes.count {
            if bytes[i] != UInt8(ascii: "<") {
                visible.append(bytes[i] >= 0x41 && bytes[i] <= 0x5A ? bytes[i] | 0x20 : bytes[i])
                i += 1
            } else if starts("<!--", at: i) {
                i = skip(past: "-->", from: i + 4)
            } else if starts("<![CDATA[", at: i) {
                i = skip(past: "]]>", from: i + 9)
            } else if starts("<?", at: i) {
                i = skip(past: "?>", from: i + 2)
            } else {
                visible.append(bytes[i] >= 0x41 && bytes[i] <= 0x5A ? bytes[i] | 0x20 : bytes[i])
                i += 1
            }
        }
        var j = 0
        while let open = find([UInt8(ascii: "<"), UInt8(ascii: "!")], in: visible, from: j) {
            let rest = visible[(open + 2)...]
            if ["doctype", "entity", "element", "attlist"].contains(where: { rest.starts(with: $0.utf8) }) { return true }
            j = open + 1
        }
        return false
    }

    /// The encoding an XML declaration at the very start names, read as XML reads it (any XML
    /// whitespace around `=`), or nil.
    static func xmlDeclaredEncoding(_ bytes: [UInt8]) -> String? {
        var start = 0
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { start = 3 }
        guard bytes.count >= start + 5, bytes[start..<start + 5].elementsEqual(Array("<?xml".utf8)) else { return nil }
        let end = find(Array("?>".utf8), in: bytes, from: start) ?? bytes.count
        let declaration = Array(bytes[start..<end])
        guard var i = find(Array("encoding".utf8), in: declaration).map({ $0 + 8 }) else { return nil }
        let blanks: Set<UInt8> = [0x20, 0x09, 0x0A, 0x0D]
        while i < declaration.count, blanks.contains(declaration[i]) { i += 1 }
        guard i < declaration.count, declaration[i] == UInt8(ascii: "=") else { return nil }
        i += 1
        while i < declaration.count, blanks.contains(declaration[i]) { i += 1 }
        guard i < declaration.count, declaration[i] == UInt8(ascii: "\"") || declaration[i] == UInt8(ascii: "'") else { return nil }
        let quote = declaration[i]
        let valueEnd = declaration[(i + 1)...].firstIndex(of: quote) ?? declaration.count
        return String(decoding: declaration[(i + 1)..<valueEnd], as: UTF8.self)
    }

    /// The first index of `needle` in `haystack` at or after `from`.
    static func find(_ needle: [UInt8], in haystack: [UInt8], from: Int = 0) -> Int? {
        guard !needle.isEmpty, haystack.count >= needle.count, from <= haystack.count - needle.count else { return nil }
        var i = from
        while i <= haystack.count - needle.count {
            if haystack[i] == needle[0], haystack[i..<i + needle.count].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }

    // MARK: - Roster CSV

    /// `RosterCSV.rows` on any text: every problem names a line that exists, and accepted rows are
    /// valid, unique and in file order.
    static func rosterRows(_ text: String, knownProfiles: Set<String>) -> [String] {
        var problems: [String] = []
        let lineCount = text.unicodeScalars.reduce(1) { $0 + ($1 == "\n" ? 1 : 0) }
        let rows: [RosterRow]
        do {
            rows = try RosterCSV.rows(from: text, knownProfiles: knownProfiles)
        } catch {
            problems += lineProblems(error, lineCount: lineCount)
            return problems
        }
        var ids: Set<String> = []
        var openids: Set<String> = []
        var lastLine = 1
        for row in rows {
            let e = row.entry
            if row.line <= lastLine { problems.append("row lines are not increasing after the header (\(row.line) after \(lastLine))") }
            lastLine = row.line
            if row.line > lineCount { problems.append("a row on line \(row.line) of a \(lineCount)-line file") }
            if e.imUserID.isEmpty || BindingRules.problem(userID: e.imUserID) != nil { problems.append("line \(row.line): an invalid im_user_id was accepted") }
            if !ids.insert(e.imUserID).inserted { problems.append("line \(row.line): a repeated im_user_id was accepted") }
            if let openid = e.openid {
                if openid.isEmpty || !BindingRules.isValidOpenid(openid) { problems.append("line \(row.line): an invalid openid was accepted") }
                if !openids.insert(openid).inserted { problems.append("line \(row.line): a repeated openid was accepted") }
            }
            if let profile = e.profile, !knownProfiles.contains(profile) { problems.append("line \(row.line): an unknown profile was accepted") }
            if let name = e.name, name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
                problems.append("line \(row.line): a name with control characters was accepted")
            }
            for field in [e.imUserID, e.openid, e.name, e.profile].compactMap({ $0 })
            where field.isEmpty || field.trimmingCharacters(in: .whitespaces) != field {
                problems.append("line \(row.line): a field kept surrounding blanks or is empty instead of absent")
            }
        }
        return problems
    }

    /// An import error names at least one line, each of which exists.
    static func lineProblems(_ error: RosterImportError, lineCount: Int) -> [String] {
        var problems: [String] = []
        if error.problems.isEmpty { problems.append("a refused roster names no problem") }
        // The lines the error text names ("line N: " starting one of its lines), read once: a header
        // of a thousand unknown columns has as many problems, and building and searching the whole
        // text for each of them was quadratic (a libFuzzer timeout in Tests/Fuzz).
        var named: Set<Substring> = []
        for row in error.description.split(separator: "\n") {
            if let colon = row.firstRange(of: ": ") { named.insert(row[..<colon.lowerBound]) }
        }
        for p in error.problems {
            if p.line < 1 || p.line > lineCount { problems.append("a problem on line \(p.line) of a \(lineCount)-line file") }
            if p.message.isEmpty { problems.append("a problem with no message on line \(p.line)") }
            if !named.contains("line \(p.line)"[...]) { problems.append("the error text does not name line \(p.line)") }
        }
        return problems
    }

    /// `users import` through the store: either every row is applied exactly or nothing changes,
    /// and a refusal names its lines.
    static func rosterImport(_ text: String, operator op: RosterOperator) -> [String] {
        var problems: [String] = []
        let lineCount = text.unicodeScalars.reduce(1) { $0 + ($1 == "\n" ? 1 : 0) }
        let profiles = Set(op.config.digest.profiles.keys)
        func snapshot() -> [String: [String?]] {
            let users = (try? op.store.users()) ?? []
            return Dictionary(users.map { ($0.imUserID, [$0.openid, $0.name, $0.profile]) }, uniquingKeysWith: { a, _ in a })
        }
        let before = snapshot()
        do {
            _ = try op.importRoster(csv: text)
            let after = snapshot()
            let rows = (try? RosterCSV.rows(from: text, knownProfiles: profiles)) ?? []
            for row in rows where after[row.entry.imUserID] != [row.entry.openid, row.entry.name, row.entry.profile] {
                problems.append("line \(row.line): the imported user does not match the row")
            }
            let inFile = Set(rows.map(\.entry.imUserID))
            for (id, fields) in before where !inFile.contains(id) && after[id] != fields {
                problems.append("user \(id), not in the file, was changed by the import")
            }
            if Set(after.keys) != Set(before.keys).union(inFile) { problems.append("the import added or removed users the file does not name") }
        } catch let error as RosterImportError {
            if snapshot() != before { problems.append("a refused roster still changed the users table") }
            problems += lineProblems(error, lineCount: lineCount)
        } catch {
            problems.append("importing a roster threw \(error), not an error naming lines")
            if snapshot() != before { problems.append("a failed import still changed the users table") }
        }
        return problems
    }

    // MARK: - Config

    /// Problems that are about the whole file, so they have no key path.
    static let wholeFileMessages = ["the file is not valid YAML", "expected a mapping with the sections", "expected a mapping of keys to values"]

    /// `ConfigLoader.load(yaml:)` on any text: a refusal lists problems that each name a key path
    /// (or the whole file), and an accepted config is valid and survives being printed and re-read.
    static func config(_ yaml: String, environment: [String: String] = [:]) -> [String] {
        var problems: [String] = []
        let loader = ConfigLoader(environment: environment)
        let loaded: LoadedConfig
        do {
            loaded = try loader.load(yaml: yaml)
        } catch {
            if error.problems.isEmpty { problems.append("a refused config reports no problem") }
            for p in error.problems {
                if p.message.isEmpty { problems.append("a config problem with no message at \(p.keyPath)") }
                if p.keyPath.isEmpty && !wholeFileMessages.contains(where: { p.message.hasPrefix($0) }) {
                    problems.append("a config problem names no key path: \(p.message)")
                }
            }
            return problems
        }
        let c = loaded.config
        if !(0...65535).contains(c.server.port) { problems.append("server.port out of range was accepted") }
        if c.server.host.isEmpty || c.storage.path.isEmpty { problems.append("an empty host or storage path was accepted") }
        if !c.wechat.encodingAESKey.isEmpty && c.wechat.encodingAESKey.count != 43 { problems.append("a bad encoding_aes_key was accepted") }
        if c.digest.policy.window < .seconds(1) || c.digest.policy.retention < .seconds(1) { problems.append("a window or retention under 1s was accepted") }
        if Set(c.templates.map(\.id)).count != c.templates.count || c.templates.contains(where: { $0.id.isEmpty || $0.fields.isEmpty }) {
            problems.append("templates with empty or repeated ids, or without fields, were accepted")
        }
        for t in c.templates {
            for f in t.fields {
                if !f.type.isFittable { problems.append("an \(f.type.rawValue) field was accepted") }
                if let fallback = f.fallback, FieldFitter.fit(fallback, as: f.type) != fallback {
                    problems.append("a fallback that does not fit its \(f.type.rawValue) field was accepted")
                }
            }
        }
        // The printed config (secrets masked) reads back to the same config when it has no secrets.
        var unmasked = c
        unmasked.wechat.appSecret = ""
        unmasked.wechat.pushToken = ""
        unmasked.wechat.encodingAESKey = ""
        unmasked.im.secretKey = ""
        unmasked.im.callbackToken = ""
        unmasked.server.adminToken = ""
        do {
            let reread = try ConfigLoader(environment: [:]).load(yaml: unmasked.effectiveYAML()).config
            if reread != unmasked { problems.append("the printed config reads back to a different config") }
        } catch {
            problems.append("the printed config does not load: \(error)")
        }
        return problems
    }
}
