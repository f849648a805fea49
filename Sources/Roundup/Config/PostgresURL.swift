/// Where a PostgreSQL database is and how to reach it (`storage.url`):
/// `postgres://user:password@host:5432/database?sslmode=prefer`.
///
/// The parser is strict where lenient URL parsers guess: user, password and database are
/// percent-decoded and a malformed escape is an error; a second `@`, an `@` after the host and a
/// `#` are errors, because each means a character of a user name or password was not
/// percent-encoded. No error message repeats any part of the URL except the name of an unknown
/// query parameter, so an error can be printed without leaking the password.
///
/// `description` and `debugDescription` replace the password with `••••`; the URL as a whole is
/// still a secret (it names the host and user), so `roundup config check` prints only a mask.
public struct PostgresURL: Sendable, Equatable {
    /// How the connection is encrypted and how the server is checked (`sslmode`).
    public enum SSLMode: String, Sendable, CaseIterable {
        /// No TLS.
        case disable
        /// TLS when the server offers it, else plain; the certificate is not checked.
        case prefer
        /// TLS or no connection; the certificate is not checked.
        case require
        /// TLS, with the certificate checked against `sslrootcert` (else the system roots) and
        /// the host name checked against the certificate.
        case verifyFull = "verify-full"
    }

    /// The port used when the URL names none.
    public static let defaultPort = 5432

    /// A host name or IPv4 address, or an IPv6 address without its brackets.
    public var host: String
    public var port: Int
    public var user: String
    /// Nil when the URL has none (or an empty one).
    public var password: String?
    public var database: String
    public var sslMode: SSLMode
    /// A file of PEM certificates that `verify-full` trusts instead of the system roots.
    public var sslRootCert: String?

    public init(
        host: String, port: Int = PostgresURL.defaultPort, user: String, password: String? = nil, database: String,
        sslMode: SSLMode = .prefer, sslRootCert: String? = nil
    ) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.database = database
        self.sslMode = sslMode
        self.sslRootCert = sslRootCert
    }

    /// The query parameters the parser accepts; any other is an error.
    public static let parameters = ["sslmode", "sslrootcert"]

    /// Parses `postgres://` or `postgresql://` URLs; throws one sentence saying what is wrong,
    /// which never contains the password.
    public init(parsing text: String) throws(ConfigValueError) {
        guard !text.isEmpty else { throw ConfigValueError("the URL is empty") }
        if text.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.properties.generalCategory == .control }) {
            throw ConfigValueError("the URL contains a space or a control character: percent-encode it (a space is %20)")
        }
        guard let rest = PostgresURL.droppingScheme(text) else {
            throw ConfigValueError("the URL must start with postgres:// or postgresql://")
        }
        if rest.contains("#") {
            throw ConfigValueError("the URL contains #: write a # in a user name, password or database name as %23")
        }

        // The authority ends at the first `/` or `?`, as in libpq: a `/` or `?` in a password
        // must be percent-encoded.
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        let afterAuthority = rest[authorityEnd...]
        if afterAuthority.contains("@") {
            throw ConfigValueError(
                "the URL has an @ after the host: a user name or password containing /, ? or @ must be percent-encoded (%2F, %3F, %40)")
        }

        let at = authority.split(separator: "@", omittingEmptySubsequences: false)
        guard at.count <= 2 else {
            throw ConfigValueError("the URL has more than one @ before the host: write an @ in a user name or password as %40")
        }
        guard at.count == 2 else {
            throw ConfigValueError("the URL names no user: write one before the host, as in postgres://roundup@host/roundup")
        }
        let userInfo = at[0]
        let userText: Substring
        var passwordText: Substring?
        if let colon = userInfo.firstIndex(of: ":") {
            userText = userInfo[..<colon]
            passwordText = userInfo[userInfo.index(after: colon)...]
        } else {
            userText = userInfo
        }
        let user = try PostgresURL.percentDecoded(userText, what: "the user name")
        guard !user.isEmpty else {
            throw ConfigValueError("the URL names no user: write one before the host, as in postgres://roundup@host/roundup")
        }
        var password: String?
        if let passwordText {
            let decoded = try PostgresURL.percentDecoded(passwordText, what: "the password")
            password = decoded.isEmpty ? nil : decoded
        }
        let (host, port) = try PostgresURL.hostAndPort(at[1])

        guard afterAuthority.hasPrefix("/") else {
            throw ConfigValueError("the URL names no database: write it after the host, as in postgres://roundup@host:5432/roundup")
        }
        let pathAndQuery = afterAuthority.dropFirst()
        let queryStart = pathAndQuery.firstIndex(of: "?")
        let path = pathAndQuery[..<(queryStart ?? pathAndQuery.endIndex)]
        if path.contains("/") {
            throw ConfigValueError("the database name contains /: write a / in it as %2F")
        }
        let database = try PostgresURL.percentDecoded(path, what: "the database name")
        guard !database.isEmpty else {
            throw ConfigValueError("the URL names no database: write it after the host, as in postgres://roundup@host:5432/roundup")
        }

        var sslMode = SSLMode.prefer
        var sslRootCert: String?
        if let queryStart {
            let query = pathAndQuery[pathAndQuery.index(after: queryStart)...]
            var seen: Set<String> = []
            for pair in query.split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let name = try PostgresURL.percentDecoded(parts[0], what: "a query parameter name")
                guard PostgresURL.parameters.contains(name) else {
                    throw ConfigValueError(PostgresURL.isShowable(name)
                        ? "the URL has the query parameter \"\(name)\", which Roundup does not use: only sslmode and sslrootcert are accepted"
                        : "the URL has a query parameter Roundup does not use: only sslmode and sslrootcert are accepted")
                }
                guard seen.insert(name).inserted else { throw ConfigValueError("the URL gives \(name) more than once") }
                guard parts.count == 2 else { throw ConfigValueError("\(name) has no value: write \(name)=VALUE") }
                let value = try PostgresURL.percentDecoded(parts[1], what: "the value of \(name)")
                if name == "sslmode" {
                    guard let mode = SSLMode(rawValue: value) else {
                        throw ConfigValueError("sslmode must be one of \(SSLMode.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    sslMode = mode
                } else {
                    guard !value.isEmpty else { throw ConfigValueError("sslrootcert must name a file of PEM certificates") }
                    sslRootCert = value
                }
            }
        }
        // libpq makes `require` with a root certificate check the certificate authority; Roundup
        // has no such mode, so a root certificate anywhere but verify-full would be silently unused.
        if sslRootCert != nil && sslMode != .verifyFull {
            throw ConfigValueError("sslrootcert is used only with sslmode=verify-full: set sslmode=verify-full or remove sslrootcert")
        }
        self.init(
            host: host, port: port, user: user, password: password, database: database,
            sslMode: sslMode, sslRootCert: sslRootCert)
    }

    /// The text after `postgres://` or `postgresql://` (the scheme in any case), or nil.
    private static func droppingScheme(_ text: String) -> Substring? {
        for scheme in ["postgresql://", "postgres://"] {
            let head = text.prefix(scheme.count)
            if head.allSatisfy(\.isASCII) && head.lowercased() == scheme { return text.dropFirst(scheme.count) }
        }
        return nil
    }

    /// The host (IPv6 without brackets) and port of `host`, `host:port`, `[v6]` or `[v6]:port`.
    private static func hostAndPort(_ text: Substring) throws(ConfigValueError) -> (String, Int) {
        let hostText: Substring
        let portText: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw ConfigValueError("the URL's IPv6 host has no closing ]")
            }
            hostText = text[text.index(after: text.startIndex)..<close]
            let after = text[text.index(after: close)...]
            if after.isEmpty {
                portText = nil
            } else if after.hasPrefix(":") {
                portText = after.dropFirst()
            } else {
                throw ConfigValueError("the URL's IPv6 host must be followed by :PORT, /, or nothing")
            }
            guard isIPv6(hostText) else {
                throw ConfigValueError("the URL's host in brackets is not an IPv6 address")
            }
        } else {
            let pieces = text.split(separator: ":", omittingEmptySubsequences: false)
            guard pieces.count <= 2 else {
                throw ConfigValueError("the URL's host has more than one colon: write an IPv6 address in brackets, like [::1]")
            }
            hostText = pieces[0]
            portText = pieces.count == 2 ? pieces[1] : nil
            guard !hostText.isEmpty else { throw ConfigValueError("the URL names no host") }
            guard isHostName(hostText) else {
                throw ConfigValueError(
                    "the URL's host must be a host name, an IPv4 address or an IPv6 address in brackets (letters, digits, - _ and dots)")
            }
        }
        var port = defaultPort
        if let portText {
            guard (1...5).contains(portText.count), portText.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let number = Int(portText), (1...65535).contains(number)
            else {
                throw ConfigValueError("the URL's port must be a number from 1 to 65535")
            }
            port = number
        }
        return (String(hostText), port)
    }

    /// Dot-separated labels of ASCII letters, digits, `-` and `_` (which covers IPv4 addresses).
    private static func isHostName(_ text: Substring) -> Bool {
        text.utf8.count <= 253
            && text.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
                !label.isEmpty && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
            }
    }

    /// Hex groups separated by colons, at least two colons, an optional IPv4 tail; no zone id.
    private static func isIPv6(_ text: Substring) -> Bool {
        text.filter { $0 == ":" }.count >= 2 && text.count <= 45
            && text.allSatisfy { $0.isASCII && ($0.isHexDigit || $0 == ":" || $0 == ".") }
    }

    /// `%XX` escapes decoded to UTF-8 text; a malformed escape, a NUL or invalid UTF-8 is an
    /// error naming `what` (never its text).
    private static func percentDecoded(_ text: Substring, what: String) throws(ConfigValueError) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                throw ConfigValueError("\(what) in the URL has a malformed percent escape: % must be followed by two hex digits")
            }
            bytes.append(high << 4 | low)
        }
        if bytes.contains(0) {
            throw ConfigValueError("\(what) in the URL contains %00, which PostgreSQL cannot take")
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else {
            throw ConfigValueError("\(what) in the URL is not UTF-8 text once percent-decoded")
        }
        return decoded
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// Whether an unknown parameter's name may appear in an error: a plain identifier cannot be
    /// a stray piece of a password, because any text after the host holding an `@` is refused first.
    private static func isShowable(_ name: String) -> Bool {
        (1...64).contains(name.count) && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == ".") }
    }
}

extension PostgresURL: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The mask printed in place of a password.
    public static let passwordMask = "••••"

    /// The URL with the password masked, every part shown: `postgres://user:••••@host:5432/db?sslmode=prefer`.
    public var description: String {
        let credentials = PostgresURL.encoded(user, keeping: "") + (password == nil ? "" : ":" + PostgresURL.passwordMask)
        let shownHost = host.contains(":") ? "[\(host)]" : host
        var query = "sslmode=\(sslMode.rawValue)"
        if let sslRootCert { query += "&sslrootcert=" + PostgresURL.encoded(sslRootCert, keeping: "/") }
        return "postgres://\(credentials)@\(shownHost):\(port)/\(PostgresURL.encoded(database, keeping: ""))?\(query)"
    }

    public var debugDescription: String { description }

    /// Mirrors (`dump`, reflection) show the password masked too.
    public var customMirror: Mirror {
        Mirror(self, children: [
            "host": host, "port": port, "user": user, "password": password.map { _ in PostgresURL.passwordMask } as Any,
            "database": database, "sslMode": sslMode, "sslRootCert": sslRootCert as Any,
        ])
    }

    /// Percent-encodes every byte but unreserved characters and those in `keeping`.
    private static func encoded(_ text: String, keeping: String) -> String {
        var out = ""
        for byte in text.utf8 {
            let c = Character(Unicode.Scalar(byte))
            if byte < 0x80 && (c.isLetter || c.isNumber || "-._~".contains(c) || keeping.contains(c)) {
                out.append(c)
            } else {
                out += "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
            }
        }
        return out
    }
}
