import Foundation

/// A roster that cannot be imported, with every bad row named by its line number in the file
/// (the header is line 1). Nothing is imported when there is any.
public struct RosterImportError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Problem: Sendable, Equatable {
        public let line: Int
        public let message: String
    }

    public let problems: [Problem]

    public var description: String {
        problems.map { "line \($0.line): \($0.message)" }.joined(separator: "\n")
    }
}

/// One valid roster row and the file line it came from.
public struct RosterRow: Sendable, Equatable {
    public let line: Int
    public let entry: RosterEntry
}

/// Reads `im_user_id,openid,name,profile` CSV files (RFC 4180: quotes, `""`, CRLF, a UTF-8 BOM)
/// into roster entries checked by `BindingRules`, the rules every way of binding shares.
public enum RosterCSV {
    public static let columns = ["im_user_id", "openid", "name", "profile"]

    /// Parses and validates the whole file; throws with every bad row.
    public static func rows(from text: String, knownProfiles: Set<String>) throws(RosterImportError) -> [RosterRow] {
        let records = try parseRecords(text)
        guard let header = records.first else {
            throw RosterImportError(problems: [.init(line: 1, message: "the file is empty; it needs the header im_user_id,openid,name,profile")])
        }
        var problems: [RosterImportError.Problem] = []
        let names = header.fields.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        for name in names where !columns.contains(name) {
            problems.append(.init(line: header.line, message: "unknown column \"\(name)\" (columns: \(columns.joined(separator: ",")))"))
        }
        for name in Set(names) where names.filter({ $0 == name }).count > 1 {
            problems.append(.init(line: header.line, message: "column \"\(name)\" appears twice"))
        }
        guard names.contains("im_user_id") else {
            problems.append(.init(line: header.line, message: "the header must name the im_user_id column"))
            throw RosterImportError(problems: problems)
        }
        func index(_ column: String) -> Int? { names.firstIndex(of: column) }

        var entries: [RosterRow] = []
        var userLines: [String: Int] = [:]
        var openidLines: [String: Int] = [:]
        for record in records.dropFirst() {
            if record.fields.allSatisfy({ $0.trimmingCharacters(in: .whitespaces).isEmpty }) { continue }
            let line = record.line
            guard record.fields.count == names.count else {
                problems.append(.init(line: line, message: "has \(record.fields.count) fields, the header has \(names.count)"))
                continue
            }
            func value(_ column: String) -> String? {
                guard let i = index(column) else { return nil }
                let v = record.fields[i].trimmingCharacters(in: .whitespaces)
                return v.isEmpty ? nil : v
            }
            var rowProblems: [String] = []
            let id = value("im_user_id") ?? ""
            if let why = BindingRules.problem(userID: id) {
                rowProblems.append(why)
            } else if let first = userLines[id] {
                rowProblems.append("user \(id) already appears on line \(first)")
            }
            let openid = value("openid")
            if let openid {
                if let why = BindingRules.problem(openid: openid) {
                    rowProblems.append(why)
                } else if let first = openidLines[openid] {
                    rowProblems.append("openid \(openid) is already used on line \(first)")
                }
            }
            let name = value("name")
            if let name, let why = BindingRules.problem(name: name) { rowProblems.append(why) }
            let profile = value("profile")
            if let profile, let why = BindingRules.problem(profile: profile, known: knownProfiles) { rowProblems.append(why) }
            if rowProblems.isEmpty {
                userLines[id] = line
                if let openid { openidLines[openid] = line }
                entries.append(RosterRow(line: line, entry: RosterEntry(imUserID: id, openid: openid, name: name, profile: profile)))
            } else {
                problems.append(.init(line: line, message: rowProblems.joined(separator: "; ")))
            }
        }
        guard problems.isEmpty else { throw RosterImportError(problems: problems.sorted { $0.line < $1.line }) }
        return entries
    }

    /// Splits CSV text into records with the line each starts on.
    static func parseRecords(_ text: String) throws(RosterImportError) -> [(line: Int, fields: [String])] {
        var records: [(line: Int, fields: [String])] = []
        var fields: [String] = []
        var field = ""
        var inQuotes = false
        var line = 1
        var recordLine = 1
        var quoteOpenedLine = 1
        var fieldStarted = false
        // Whether the field so far is blank, kept up to date per character: trimming the field at
        // every quote made a long field full of quotes quadratic (hostile-input tests).
        var fieldBlank = true
        var scalars = Array(text.unicodeScalars)
        if scalars.first == "\u{FEFF}" { scalars.removeFirst() }
        var i = 0
        func endField() {
            fields.append(field)
            field = ""
            fieldStarted = false
            fieldBlank = true
        }
        func endRecord() {
            endField()
            records.append((recordLine, fields))
            fields = []
        }
        while i < scalars.count {
            let c = scalars[i]
            if inQuotes {
                if c == "\"" {
                    if i + 1 < scalars.count && scalars[i + 1] == "\"" {
                        field.unicodeScalars.append("\"")
                        fieldBlank = false
                        i += 1
                    } else {
                        inQuotes = false
                    }
                } else {
                    if c == "\n" { line += 1 }
                    field.unicodeScalars.append(c)
                    if fieldBlank && !CharacterSet.whitespaces.contains(c) { fieldBlank = false }
                }
            } else {
                switch c {
                case "\"" where !fieldStarted || fieldBlank:
                    field = ""
                    fieldBlank = true
                    inQuotes = true
                    fieldStarted = true
                    quoteOpenedLine = line
                case ",":
                    endField()
                case "\r":
                    break
                case "\n":
                    endRecord()
                    line += 1
                    recordLine = line
                default:
                    field.unicodeScalars.append(c)
                    fieldStarted = true
                    if fieldBlank && !CharacterSet.whitespaces.contains(c) { fieldBlank = false }
                }
            }
            i += 1
        }
        if inQuotes {
            throw RosterImportError(problems: [.init(line: quoteOpenedLine, message: "a quoted field is never closed")])
        }
        if !field.isEmpty || !fields.isEmpty { endRecord() }
        return records
    }
}
