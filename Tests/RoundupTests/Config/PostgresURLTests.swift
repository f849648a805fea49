import Foundation
import Testing

@testable import Roundup

@Suite("PostgreSQL URLs (storage.url)")
struct PostgresURLTests {
    /// The message of the error parsing `text` throws; nil (and a recorded issue) when it parses.
    func message(_ text: String) -> String? {
        do {
            _ = try PostgresURL(parsing: text)
            Issue.record("expected \(text) to be refused")
            return nil
        } catch {
            return error.message
        }
    }

    @Test("a URL with every part: percent-decoded user, password and database, port, sslmode and sslrootcert")
    func everyPart() throws {
        let url = try PostgresURL(parsing:
            "postgresql://ro%40undup:p%40ss%3Aw%2Fo%3Frd%25@db.example.com:6543/my%20db%2F%E4%B8%AD?sslmode=verify-full&sslrootcert=%2Fetc%2Froundup%2Fca.pem")
        #expect(url.user == "ro@undup")
        #expect(url.password == "p@ss:w/o?rd%")
        #expect(url.host == "db.example.com")
        #expect(url.port == 6543)
        #expect(url.database == "my db/中")
        #expect(url.sslMode == .verifyFull)
        #expect(url.sslRootCert == "/etc/roundup/ca.pem")
    }

    @Test("port 5432 and sslmode prefer are the defaults; no password is nil")
    func defaults() throws {
        let url = try PostgresURL(parsing: "postgres://roundup@localhost/roundup")
        #expect(url == PostgresURL(host: "localhost", port: 5432, user: "roundup", password: nil, database: "roundup", sslMode: .prefer))
        #expect(url.sslRootCert == nil)
        #expect(try PostgresURL(parsing: "postgres://roundup:@localhost/roundup").password == nil)
    }

    @Test("the scheme may be postgres or postgresql, in any case")
    func schemes() throws {
        for text in ["postgres://u@h/d", "postgresql://u@h/d", "POSTGRES://u@h/d", "PostgreSQL://u@h/d"] {
            #expect(try PostgresURL(parsing: text).host == "h", "\(text)")
        }
    }

    @Test("a password keeps an unencoded colon after the first; an IPv4 host is a host name")
    func colonsInPassword() throws {
        let url = try PostgresURL(parsing: "postgres://u:a:b:c@10.0.0.7:5433/d")
        #expect(url.user == "u")
        #expect(url.password == "a:b:c")
        #expect(url.host == "10.0.0.7")
        #expect(url.port == 5433)
    }

    @Test("an IPv6 host in brackets, with and without a port")
    func ipv6() throws {
        let withPort = try PostgresURL(parsing: "postgres://u:pw@[2001:db8::5]:5433/d")
        #expect(withPort.host == "2001:db8::5")
        #expect(withPort.port == 5433)
        let bare = try PostgresURL(parsing: "postgres://u@[::1]/d?sslmode=disable")
        #expect(bare.host == "::1")
        #expect(bare.port == 5432)
        #expect(bare.sslMode == .disable)
    }

    @Test("each sslmode is accepted", arguments: PostgresURL.SSLMode.allCases)
    func sslModes(mode: PostgresURL.SSLMode) throws {
        #expect(try PostgresURL(parsing: "postgres://u@h/d?sslmode=\(mode.rawValue)").sslMode == mode)
    }

    @Test("sslrootcert is accepted with verify-full, before or after sslmode")
    func rootCert() throws {
        let after = try PostgresURL(parsing: "postgres://u@h/d?sslmode=verify-full&sslrootcert=/etc/ca.pem")
        let before = try PostgresURL(parsing: "postgres://u@h/d?sslrootcert=/etc/ca.pem&sslmode=verify-full")
        #expect(after.sslRootCert == "/etc/ca.pem")
        #expect(before == after)
    }

    @Test("description masks the password and shows every other part; without a password it parses back")
    func description() throws {
        let url = try PostgresURL(parsing: "postgres://roundup:S3cr3tPw@db:5432/roundup?sslmode=require")
        #expect(url.description == "postgres://roundup:••••@db:5432/roundup?sslmode=require")
        #expect(String(reflecting: url) == url.description)
        var dumped = ""
        dump(url, to: &dumped)
        #expect(!dumped.contains("S3cr3tPw"))
        #expect(dumped.contains("db"))

        var noPassword = try PostgresURL(parsing:
            "postgres://ro%40undup@[2001:db8::5]:6543/my%20db%3F?sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20file.pem")
        #expect(try PostgresURL(parsing: noPassword.description) == noPassword)
        noPassword.password = "hunter2!"
        #expect(noPassword.description.hasPrefix("postgres://ro%40undup:••••@[2001:db8::5]:6543/my%20db%3F?"))
        #expect(!noPassword.description.contains("hunter2"))
    }

    /// Malformed URLs, each with a word its message must contain. Every one carries the password
    /// `S3cr3tPw` where a password could be, sometimes split by an unencoded character.
    static let refused: [(url: String, says: String)] = [
        ("mysql://u:S3cr3tPw@h/d", "postgres://"),
        ("postgres:/u:S3cr3tPw@h/d", "postgres://"),
        ("S3cr3tPw", "postgres://"),
        ("postgres://u:S3cr3tPw@/d", "no host"),
        ("postgres://u:S3cr3tPw@:5432/d", "no host"),
        ("postgres://u:S3cr3tPw@h:0/d", "port"),
        ("postgres://u:S3cr3tPw@h:70000/d", "port"),
        ("postgres://u:S3cr3tPw@h:abc/d", "port"),
        ("postgres://u:S3cr3tPw@h:/d", "port"),
        ("postgres://u:S3cr3tPw@h:-1/d", "port"),
        ("postgres://u:S3cr3tPw@h", "no database"),
        ("postgres://u:S3cr3tPw@h:5432/", "no database"),
        ("postgres://u:S3cr3tPw@h?sslmode=require", "no database"),
        ("postgres://u:S3cr3tPw@h/d/x", "%2F"),
        ("postgres://u:S3cr3tPw%zz@h/d", "password"),
        ("postgres://u:S3cr3tPw%4@h/d", "malformed percent escape"),
        ("postgres://u%zz:S3cr3tPw@h/d", "user name"),
        ("postgres://u:S3cr3tPw@h/d%zz", "database name"),
        ("postgres://u:S3cr3tPw@h/d%", "malformed percent escape"),
        ("postgres://u:S3cr3tPw@h/d?sslmode=%zz", "malformed percent escape"),
        ("postgres://u:S3cr3tPw@h/d%00", "%00"),
        ("postgres://%FF:S3cr3tPw@h/d", "UTF-8"),
        ("postgres://u:S3cr3tPw@h/d?connect_timeout=5", "\"connect_timeout\""),
        ("postgres://u:S3cr3tPw@h/d?sslmode=require&application_name=x", "\"application_name\""),
        ("postgres://u:S3cr3tPw@h/d?a%20b=1", "query parameter"),
        ("postgres://u:S3cr3tPw@h/d?sslmode=verify-ca", "sslmode must be one of disable, prefer, require, verify-full"),
        ("postgres://u:S3cr3tPw@h/d?sslmode=REQUIRE", "sslmode must be one of"),
        ("postgres://u:S3cr3tPw@h/d?sslmode=", "sslmode must be one of"),
        ("postgres://u:S3cr3tPw@h/d?sslmode", "no value"),
        ("postgres://u:S3cr3tPw@h/d?sslmode=require&sslmode=disable", "more than once"),
        ("postgres://u:S3cr3tPw@h/d?sslrootcert=/etc/ca.pem", "verify-full"),
        ("postgres://u:S3cr3tPw@h/d?sslmode=require&sslrootcert=/etc/ca.pem", "verify-full"),
        ("postgres://u:S3cr3tPw@h/d?sslmode=verify-full&sslrootcert=", "sslrootcert must name a file"),
        ("postgres://h/d", "no user"),
        ("postgres://:S3cr3tPw@h/d", "no user"),
        ("postgres://u:S3c@r3tPw@h/d", "more than one @"),
        ("postgres://u:S3c/r3tPw@h/d", "@ after the host"),
        ("postgres://u:S3c?r3tPw@h/d", "@ after the host"),
        ("postgres://u:S3cr3tPw@h/d?sslmode=require&x=S3cr3tPw@h", "@ after the host"),
        ("postgres://u:S3c#r3tPw@h/d", "#"),
        ("postgres://u:S3c r3tPw@h/d", "space"),
        ("postgres://u:S3cr3tPw@h/d\n", "control character"),
        ("postgres://u:S3cr3tPw@::1/d", "brackets"),
        ("postgres://u:S3cr3tPw@[::1/d", "]"),
        ("postgres://u:S3cr3tPw@[::1]x/d", ":PORT"),
        ("postgres://u:S3cr3tPw@[not:v6:zz]/d", "IPv6"),
        ("postgres://u:S3cr3tPw@ho!st/d", "host name"),
        ("postgres://u:S3cr3tPw@h..x/d", "host name"),
        ("", "empty"),
    ]

    @Test("a malformed URL is refused with one sentence that names the problem and never repeats the password or the URL",
          arguments: refused)
    func refusedURLs(url: String, says: String) throws {
        let text = try #require(message(url))
        #expect(text.contains(says), "\(url): \(text)")
        // Neither the password nor any piece of it an unencoded character split off.
        for piece in ["S3cr3tPw", "S3c", "r3tPw", "S3cr", "3tPw"] { #expect(!text.contains(piece), "\(url): \(text)") }
        if !url.isEmpty { #expect(!text.contains(url)) }
        #expect(!text.contains("\n"))
        #expect(!text.isEmpty)
    }
}
