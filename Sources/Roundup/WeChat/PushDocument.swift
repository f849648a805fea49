import Foundation

#if canImport(FoundationXML)
import FoundationXML
#endif

/// A push body as a loose tree, the same for JSON and XML: scalars keep their text (JSON numbers
/// keep their exact digits, so a 64-bit MsgID never passes through a Double),
/// objects keep repeated keys (XML repeats `<List>`).
indirect enum PushValue: Sendable, Equatable {
    case scalar(String)
    case object([(String, PushValue)])
    case array([PushValue])
    case null

    static func == (lhs: PushValue, rhs: PushValue) -> Bool {
        switch (lhs, rhs) {
        case (.scalar(let a), .scalar(let b)): return a == b
        case (.array(let a), .array(let b)): return a == b
        case (.null, .null): return true
        case (.object(let a), .object(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    /// Every value under `key` of an object, in document order (XML may repeat a key).
    func values(_ key: String) -> [PushValue] {
        guard case .object(let pairs) = self else { return [] }
        return pairs.filter { $0.0 == key }.map(\.1)
    }

    /// The first value under `key`, or nil.
    subscript(key: String) -> PushValue? { values(key).first }

    /// The scalar text, or nil for objects, arrays and null.
    var text: String? {
        if case .scalar(let text) = self { return text }
        return nil
    }
}

/// The two body formats a push can use; everything inside `Encrypt` uses the outer one.
enum PushFormat: Sendable, Equatable {
    case json
    case xml
}

/// Parses push bodies. The format is sniffed from the first non-blank byte, since which
/// Content-Type WeChat sends is unverified.
enum PushDocument {
    /// The format of `body`: `{` is JSON, `<` is XML, anything else is malformed.
    static func sniff(_ body: Data) throws(WeChatPushError) -> PushFormat {
        var bytes = body[...]
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes = bytes.dropFirst(3) }
        switch bytes.first(where: { !isBlank($0) }) {
        case UInt8(ascii: "{"): return .json
        case UInt8(ascii: "<"): return .xml
        case UInt8(ascii: "["): throw .malformed("the JSON body is not an object")
        case nil: throw .malformed("the body is empty")
        default: throw .malformed("the body is neither JSON nor XML")
        }
    }

    /// Parses a body in whichever format it is, returning the format too (the inner document must match it).
    static func parse(_ body: Data) throws(WeChatPushError) -> (PushFormat, PushValue) {
        let format = try sniff(body)
        switch format {
        case .json: return (format, try parseJSON(body))
        case .xml: return (format, try parseXML(body))
        }
    }

    /// Parses a body that must be in `format` (the plaintext inside `Encrypt`).
    static func parse(_ body: Data, as format: PushFormat) throws(WeChatPushError) -> PushValue {
        let (found, value) = try parse(body)
        guard found == format else { throw .malformed("the encrypted document is not in the outer body's format") }
        return value
    }

    // MARK: JSON

    /// A JSON object body, read strictly (the one JSON reader every endpoint uses); integers
    /// keep their exact decimal text, object members their document order.
    static func parseJSON(_ body: Data) throws(WeChatPushError) -> PushValue {
        let json: StrictJSON
        do {
            json = try StrictJSON.parse(body)
        } catch {
            throw .malformed("invalid JSON: \(error)")
        }
        guard case .object = json else { throw .malformed("the JSON body is not an object") }
        return pushValue(json)
    }

    /// A parsed JSON value as a push tree: strings, numbers and booleans become their text.
    private static func pushValue(_ json: StrictJSON) -> PushValue {
        switch json {
        case .null: return .null
        case .bool(let flag): return .scalar(flag ? "true" : "false")
        case .int(let number): return .scalar(String(number))
        case .uint(let number): return .scalar(String(number))
        case .double(let number): return .scalar(numberText(number))
        case .string(let text): return .scalar(text)
        case .array(let items): return .array(items.map(pushValue))
        case .object(let object): return .object(object.members.map { ($0.key, pushValue($0.value)) })
        }
    }

    /// Exact text of a JSON number Foundation read: integers as their digits (JSONSerialization
    /// keeps 64-bit integers exact), doubles as `numberText(_: Double)` writes them.
    static func numberText(_ number: NSNumber) -> String {
        let kind = String(cString: number.objCType)
        if kind == "d" || kind == "f" { return numberText(number.doubleValue) }
        if type(of: number) != NSNumber.self, kind == "c" {
            return number.boolValue ? "true" : "false"
        }
        return number.stringValue
    }

    /// Text of a non-integer JSON number: integral values below 2^53 without a fraction, others
    /// as Swift writes them.
    static func numberText(_ double: Double) -> String {
        if double.rounded() == double, abs(double) < 9_007_199_254_740_992 { return String(Int64(double)) }
        return String(double)
    }

    // MARK: XML

    /// An XML body, refusing any DOCTYPE before the parser sees it and never
    /// resolving external entities.
    static func parseXML(_ body: Data) throws(WeChatPushError) -> PushValue {
        try refuseDoctype(body)
        try refuseBareInstructions(body)
        // FoundationXML traps on an element name that is not UTF-8 (`<\xC3/x>`), and a safe-mode
        // body is parsed before its signature can be checked: refuse such bytes before the parser.
        guard String(validating: body, as: UTF8.self) != nil else { throw .malformed("the XML body is not UTF-8") }
        let builder = XMLTreeBuilder()
        let parser = XMLParser(data: body)
        parser.shouldResolveExternalEntities = false
        parser.shouldProcessNamespaces = false
        parser.delegate = builder
        let ok = parser.parse()
        if builder.sawDTD { throw .doctypeRefused }
        if builder.tooDeep { throw .malformed("the XML body nests more than \(XMLTreeBuilder.maximumDepth) elements deep") }
        guard ok, let root = builder.root else { throw .malformed("invalid XML") }
        return root
    }

    /// Walks the prolog (XML declaration, processing instructions, comments, blanks) up to the root
    /// element and refuses any `<!DOCTYPE`, in any letter case, or any other encoding than UTF-8;
    /// then refuses any markup declaration in the rest of the body.
    static func refuseDoctype(_ body: Data) throws(WeChatPushError) {
        let bytes = Array(body)
        var index = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        func hasPrefix(_ prefix: String, at position: Int) -> Bool {
            var i = position
            for byte in prefix.utf8 {
                guard i < bytes.count, bytes[i] | 0x20 == byte | 0x20 else { return false }
                i += 1
            }
            return true
        }
        func skip(past terminator: String, from position: Int) -> Int? {
            let t = Array(terminator.utf8)
            var i = position
            while i + t.count <= bytes.count {
                if bytes[i..<i + t.count].elementsEqual(t) { return i + t.count }
                i += 1
            }
            return nil
        }
        // Another encoding could hide a DOCTYPE from this byte scan (UTF-16, UTF-7), so only UTF-8 is read.
        guard !bytes.contains(0) else { throw .malformed("the XML body is not UTF-8") }
        while index < bytes.count {
            if isBlank(bytes[index]) {
                index += 1
            } else if hasPrefix("<?", at: index) {
                guard let next = skip(past: "?>", from: index + 2) else { throw .malformed("unterminated XML declaration") }
                if hasPrefix("<?xml", at: index), let encoding = declaredEncoding(String(decoding: bytes[index..<next], as: UTF8.self)),
                    !["utf-8", "utf8"].contains(encoding.lowercased())
                {
                    throw .malformed("the XML body declares the encoding \(encoding); only UTF-8 is accepted")
                }
                index = next
            } else if hasPrefix("<!--", at: index) {
                guard let next = skip(past: "-->", from: index + 4) else { throw .malformed("unterminated XML comment") }
                index = next
            } else if hasPrefix("<!doctype", at: index) {
                throw .doctypeRefused
            } else if hasPrefix("<!", at: index) {
                throw .malformed("unexpected markup before the root element")
            } else {
                break  // The root element starts here (or garbage the parser will reject).
            }
        }
        // libxml2 tolerates some markup after the root (an unterminated `<!DOCTYPE` there parsed as
        // a success in the hostile-input tests), so no declaration may appear anywhere outside
        // comments, CDATA sections and processing instructions.
        while index < bytes.count {
            if bytes[index] != UInt8(ascii: "<") {
                index += 1
            } else if hasPrefix("<!--", at: index) {
                index = skip(past: "-->", from: index + 4) ?? bytes.count
            } else if hasPrefix("<![CDATA[", at: index) {
                index = skip(past: "]]>", from: index + 9) ?? bytes.count
            } else if hasPrefix("<?", at: index) {
                index = skip(past: "?>", from: index + 2) ?? bytes.count
            } else if ["<!doctype", "<!entity", "<!element", "<!attlist", "<!notation"].contains(where: { hasPrefix($0, at: index) }) {
                throw .doctypeRefused
            } else {
                index += 1
            }
        }
    }

    /// libxml2 hands a processing instruction with nothing after its target (`<?x?>`) to XMLParser
    /// with NULL data, which FoundationXML reads as a C string: the process crashes (found by
    /// Tests/Fuzz). libxml2 reads on after errors, so where it starts a processing instruction
    /// cannot be told by walking the markup as `refuseDoctype` does (`<? <?xml?>` crashed past
    /// such a walk). So any `<?` followed by `?>` with no blank in between is refused, wherever it
    /// is: a push has no processing instruction but the XML declaration, which has blanks.
    static func refuseBareInstructions(_ body: Data) throws(WeChatPushError) {
        let bytes = Array(body)
        var openSinceBlank = false
        var i = 0
        while i + 1 < bytes.count {
            if isBlank(bytes[i]) {
                openSinceBlank = false
            } else if bytes[i] == UInt8(ascii: "<"), bytes[i + 1] == UInt8(ascii: "?") {
                openSinceBlank = true
                i += 1
            } else if openSinceBlank, bytes[i] == UInt8(ascii: "?"), bytes[i + 1] == UInt8(ascii: ">") {
                throw .malformed("an XML processing instruction without data")
            }
            i += 1
        }
    }

    /// The `encoding="…"` pseudo-attribute of an XML declaration, if any. XML allows any of its
    /// blanks (newlines too) around the `=`; skipping only spaces and tabs once let
    /// `encoding\n="UTF-7"` through, and libxml2 then read a UTF-7 DOCTYPE (hostile-input tests).
    /// A declaration that names an encoding this cannot read is answered with one that is refused.
    private static func declaredEncoding(_ declaration: String) -> String? {
        guard let range = declaration.range(of: "encoding") else { return nil }
        let blanks: Set<Character> = [" ", "\t", "\n", "\r", "\r\n"]
        var rest = declaration[range.upperBound...].drop { blanks.contains($0) }
        guard rest.first == "=" else { return "(unreadable)" }
        rest = rest.dropFirst().drop { blanks.contains($0) }
        guard let quote = rest.first, quote == "\"" || quote == "'" else { return "(unreadable)" }
        rest = rest.dropFirst()
        return String(rest.prefix { $0 != quote })
    }

    private static func isBlank(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }
}

/// Builds a `PushValue` from `XMLParser` events: an element with child elements becomes an object
/// (repeated names kept), a leaf becomes its text (CDATA and entity references joined).
private final class XMLTreeBuilder: NSObject, XMLParserDelegate {
    private struct Frame {
        var name: String
        var children: [(String, PushValue)] = []
        var text = ""
    }

    /// Pushes nest four elements deep; a limit keeps a hostile body from building a tree so deep
    /// that releasing it overflows the stack (libxml2 sets no depth limit here).
    static let maximumDepth = 64

    private var stack: [Frame] = []
    var root: PushValue?
    var sawDTD = false
    var tooDeep = false

    func parser(
        _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?,
        attributes: [String: String] = [:]
    ) {
        guard stack.count < Self.maximumDepth else {
            tooDeep = true
            parser.abortParsing()
            return
        }
        stack.append(Frame(name: elementName))
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
        guard let frame = stack.popLast() else { return }
        let value: PushValue = frame.children.isEmpty ? .scalar(frame.text) : .object(frame.children)
        if stack.isEmpty {
            root = value
        } else {
            stack[stack.count - 1].children.append((frame.name, value))
        }
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        guard !stack.isEmpty else { return }
        stack[stack.count - 1].text += string
    }

    func parser(_ parser: XMLParser, foundCDATA CDATABlock: Data) {
        guard !stack.isEmpty else { return }
        stack[stack.count - 1].text += String(decoding: CDATABlock, as: UTF8.self)
    }

    // Belt and braces behind `refuseDoctype`: any DTD content aborts the parse.
    func parser(_ parser: XMLParser, foundInternalEntityDeclarationWithName name: String, value: String?) {
        sawDTD = true
        parser.abortParsing()
    }

    func parser(_ parser: XMLParser, foundExternalEntityDeclarationWithName name: String, publicID: String?, systemID: String?) {
        sawDTD = true
        parser.abortParsing()
    }

    func parser(_ parser: XMLParser, foundElementDeclarationWithName elementName: String, model: String) {
        sawDTD = true
        parser.abortParsing()
    }

    func parser(_ parser: XMLParser, resolveExternalEntityName name: String, systemID: String?) -> Data? {
        sawDTD = true
        parser.abortParsing()
        return nil
    }
}
