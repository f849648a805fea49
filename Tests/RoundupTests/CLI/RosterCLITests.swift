import Foundation
import Testing

@testable import Roundup

/// The built `roundup` binary run as a subprocess in a temporary folder, where the default
/// database path `./roundup-data/roundup.sqlite` lands.
@Suite("roundup CLI: config and roster")
struct RosterCLITests {
    let dir: URL

    init() throws { dir = try TestSupport.temporaryDirectory() }

    func run(_ args: String...) async throws -> ProcessResult { try await runRoundup(args, in: dir) }

    @Test("config check prints the effective config with secrets masked and warnings on stderr")
    func configCheck() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try await runRoundup(
            ["config", "check", "--config", TestSupport.fixture("config/roundup.example.yaml").path], in: dir,
            environment: ["ROUNDUP_WECHAT_APP_SECRET": "very-secret-app-secret", "ROUNDUP_SERVER_ADMIN_TOKEN": "admintoken123"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("window: 10m"))
        #expect(r.stdout.contains("app_secret: \"********\"") || r.stdout.contains("app_secret: '********'"))
        #expect(!r.stdout.contains("very-secret-app-secret"))
        #expect(!r.stderr.contains("very-secret-app-secret"))
        #expect(!r.stdout.contains("admintoken123"))
        #expect(r.stdout.contains("wechat.app_secret from ROUNDUP_WECHAT_APP_SECRET"))
        #expect(r.stderr.contains("warning: wechat.push_token"))
        #expect(r.stderr.contains("warning: im.callback_token"))
    }

    @Test("config check with no file uses the defaults and exits 0")
    func configDefaults() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try await run("config", "check")
        #expect(r.status == 0)
        #expect(r.stdout.contains("built-in defaults"))
        #expect(r.stdout.contains("path: ./roundup-data/roundup.sqlite"))
        #expect(r.stderr.contains("dry-run"))
    }

    @Test("config check reports every problem with its key path and exits 2 with nothing on stdout")
    func configInvalid() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try await run("config", "check", "--config", TestSupport.fixture("config/invalid/bad-values.yaml").path)
        #expect(r.status == 2)
        #expect(r.stdout.isEmpty)
        for key in ["server.port", "storage.synchronous", "wechat.encoding_aes_key", "im.ingest_from", "digest.window",
                    "digest.max_messages", "digest.quiet_hours", "digest.timezone", "digest.group_messages"] {
            #expect(r.stderr.contains("config: \(key):"), "missing \(key)")
        }
    }

    @Test("./roundup.yaml is used when present, and commands other than config check refuse a bad one")
    func defaultFile() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        try "digest:\n  windw: 5m\n".write(to: dir.appendingPathComponent("roundup.yaml"), atomically: true, encoding: .utf8)
        let r = try await run("users", "list")
        #expect(r.status == 2)
        #expect(r.stderr.contains("digest.windw"))
    }

    @Test("users import binds a class roster; list --json shows it with every key present")
    func importAndList() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let imported = try await run("users", "import", TestSupport.fixture("roster/parents.csv").path)
        #expect(imported.status == 0)
        #expect(imported.stdout.contains("imported 28 users: 28 new"))
        let again = try await run("users", "import", TestSupport.fixture("roster/parents.csv").path, "--json")
        let importJSON = try parseJSON(again.stdout)
        #expect(importJSON["schema"] as? Int == 1)
        let counts = try #require(importJSON["import"] as? [String: Any])
        #expect(counts["unchanged"] as? Int == 28)

        let list = try await run("users", "list", "--json")
        #expect(list.status == 0)
        let json = try parseJSON(list.stdout)
        let users = try #require(json["users"] as? [[String: Any]])
        #expect(users.count == 28)
        let teacher = try #require(users.first { $0["im_user_id"] as? String == "teacher_li" })
        #expect(teacher["name"] as? String == "李老师")
        #expect(teacher["openid"] is NSNull)
        #expect(teacher["profile"] is NSNull)
        #expect(Set(teacher.keys) == ["im_user_id", "openid", "name", "profile", "created_at", "updated_at"])
        #expect((teacher["created_at"] as? String)?.hasSuffix("Z") == true)

        let table = try await run("users", "list")
        #expect(table.stdout.hasPrefix("USER"))
        #expect(table.stdout.contains("王芳"))
        for line in table.stdout.split(separator: "\n") { #expect(displayWidth(String(line)) <= 80) }
    }

    @Test("a roster with bad rows imports nothing, names every bad line and exits 1")
    func importBadRows() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try await run("users", "import", TestSupport.fixture("roster/bad-rows.csv").path)
        #expect(r.status == 1)
        #expect(r.stdout.isEmpty)
        for line in [3, 4, 5, 6, 7, 8] { #expect(r.stderr.contains("line \(line):")) }
        #expect(!r.stderr.contains("line 2:"))
        #expect(!r.stderr.contains("line 9:"))
        let list = try await run("users", "list", "--json")
        #expect(try parseJSON(list.stdout)["users"] as? [Any] == nil || (try parseJSON(list.stdout)["users"] as? [Any])?.isEmpty == true)
    }

    @Test("an import that would take an openid from a user outside the file names the row")
    func importOpenidHeldElsewhere() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(try await run("users", "bind", "old_parent", "o6_bmjrPTlm6_2sgVt7hMZOPfL2M").status == 0)
        let r = try await run("users", "import", TestSupport.fixture("roster/parents.csv").path)
        #expect(r.status == 1)
        #expect(r.stderr.contains("line 5:"))
        #expect(r.stderr.contains("old_parent"))
    }

    @Test("bind merges, refuses an openid bound elsewhere, and unbind keeps the user")
    func bindAndUnbind() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(try await run("users", "bind", "parent_1", "oA_1", "--name", "王芳").status == 0)
        let merged = try await run("users", "bind", "parent_1", "--profile", "", "--json")
        #expect(merged.status == 0)
        let user = try #require(try parseJSON(merged.stdout)["user"] as? [String: Any])
        #expect(user["openid"] as? String == "oA_1")
        #expect(user["name"] as? String == "王芳")

        let conflict = try await run("users", "bind", "parent_2", "oA_1")
        #expect(conflict.status == 1)
        #expect(conflict.stdout.isEmpty)
        #expect(conflict.stderr.contains("already bound to user parent_1"))
        #expect(conflict.stderr.split(separator: "\n").count == 1)

        let badProfile = try await run("users", "bind", "parent_1", "--profile", "vip")
        #expect(badProfile.status == 1)

        let unbound = try await run("users", "unbind", "parent_1", "--json")
        #expect(unbound.status == 0)
        let after = try #require(try parseJSON(unbound.stdout)["user"] as? [String: Any])
        #expect(after["openid"] is NSNull)
        #expect(after["name"] as? String == "王芳")

        let unknown = try await run("users", "unbind", "nobody")
        #expect(unknown.status == 1)
        #expect(unknown.stderr.contains("No user nobody"))
    }

    @Test("users bind refuses the openids the admin API refuses, exits 1 and binds nothing", arguments: OpenidCases.refused)
    func bindRefusesOpenid(_ bad: OpenidCases.Refused) async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try await run("users", "bind", "parent_1", bad.openid, "--name", "王芳")
        #expect(r.status == 1)
        #expect(r.stdout.isEmpty)
        #expect(r.stderr.contains("is not an openid"))
        let users = try parseJSON(try await run("users", "list", "--json").stdout)["users"] as? [Any]
        #expect(users?.isEmpty != false)
    }

    @Test("users import refuses the same openids, naming each line, and imports nothing")
    func importRefusesOpenids() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let rows = OpenidCases.refused.enumerated().map { "parent_\($0.offset),\"\($0.element.openid)\",," }
        let csv = dir.appendingPathComponent("roster.csv")
        try (["im_user_id,openid,name,profile"] + rows + ["parent_9,\(OpenidCases.longest),王芳,"]).joined(separator: "\n")
            .write(to: csv, atomically: true, encoding: .utf8)
        let r = try await run("users", "import", csv.path)
        #expect(r.status == 1)
        for line in 2...4 { #expect(r.stderr.contains("line \(line): openid"), "line \(line)") }
        #expect(!r.stderr.contains("line 5:"))
        let users = try parseJSON(try await run("users", "list", "--json").stdout)["users"] as? [Any]
        #expect(users?.isEmpty != false)
    }

    @Test("a 64-character openid of every allowed kind binds through users bind and users import")
    func longestOpenid() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let bound = try await run("users", "bind", "parent_1", OpenidCases.longest, "--json")
        #expect(bound.status == 0)
        #expect((try parseJSON(bound.stdout)["user"] as? [String: Any])?["openid"] as? String == OpenidCases.longest)
        let csv = dir.appendingPathComponent("roster.csv")
        try "im_user_id,openid,name,profile\nparent_2,\(OpenidCases.longest.reversed().map(String.init).joined()),王芳,\n"
            .write(to: csv, atomically: true, encoding: .utf8)
        let imported = try await run("users", "import", csv.path)
        #expect(imported.status == 0, "\(imported.stderr)")
        #expect(imported.stdout.contains("imported 1 user: 1 new"))
    }

    @Test("credits lists nothing as an empty list; an unknown user exits 1")
    func credits() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let all = try await run("credits", "--json")
        #expect(all.status == 0)
        #expect((try parseJSON(all.stdout)["credits"] as? [Any])?.isEmpty == true)
        #expect(try await run("credits").stdout == "no credits\n")
        #expect(try await run("credits", "nobody").status == 1)
        #expect(try await run("users", "bind", "t1", "--name", "张老师").status == 0)
        #expect((try parseJSON(try await run("credits", "t1", "--json").stdout)["credits"] as? [Any])?.isEmpty == true)
    }

    @Test("bad usage exits 2")
    func badUsage() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(try await run("users", "bind").status == 2)
        #expect(try await run("frobnicate").status == 2)
        #expect(try await run("users", "list", "--jsn").status == 2)
        let help = try await run("--help")
        #expect(help.status == 0)
        #expect(help.stdout.contains("users"))
    }

    @Test("commands work while another process holds the database open")
    func besideAnotherProcess() async throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try RoundupStore.open(path: dir.appendingPathComponent("roundup-data/roundup.sqlite").path)
        try store.updateUser("held_open", UserUpdate(name: .set("x")), now: t0)
        #expect(try await run("users", "bind", "p9", "o_p9").status == 0)
        let list = try await run("users", "list", "--json")
        let ids = (try parseJSON(list.stdout)["users"] as? [[String: Any]])?.compactMap { $0["im_user_id"] as? String }
        #expect(ids == ["held_open", "p9"])
        #expect(try store.user("p9")?.openid == "o_p9")
    }
}

@Suite("roundup usersig")
struct UserSigCLITests {
    @Test("usersig prints a UserSig that verifies for the admin (or given) identifier, and refuses without a secret key")
    func usersig() async throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let env = ["ROUNDUP_IM_SDK_APP_ID": "1400000000", "ROUNDUP_IM_SECRET_KEY": "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"]
        let admin = try await runRoundup(["usersig"], in: dir, environment: env)
        #expect(admin.status == 0)
        let now = Int64(Date().timeIntervalSince1970)
        let sig = admin.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let verified = try UserSig.verify(sig, sdkAppID: 1_400_000_000, key: env["ROUNDUP_IM_SECRET_KEY"]!, identifier: "administrator", now: now)
        #expect(verified.expire == 86_400)
        let other = try await runRoundup(["usersig", "parent_001", "--expire", "600"], in: dir, environment: env)
        let sig2 = other.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try UserSig.verify(sig2, sdkAppID: 1_400_000_000, key: env["ROUNDUP_IM_SECRET_KEY"]!, identifier: "parent_001", now: now).expire == 600)
        let missing = try await runRoundup(["usersig"], in: dir)
        #expect(missing.status == 1)
        #expect(missing.stdout.isEmpty)
    }
}

@Suite("roundup backup and check")
struct MaintenanceCLITests {
    @Test("backup copies the database online into a new 0600 file, refuses to overwrite, and check says it is sound")
    func backupAndCheck() async throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // Another process keeps the database open and writing while the backup runs.
        let store = try RoundupStore.open(path: dir.appendingPathComponent("roundup-data/roundup.sqlite").path)
        try store.updateUser("p1", UserUpdate(openid: .set("o1"), name: .set("王芳")), now: t0)
        let copy = dir.appendingPathComponent("copy.sqlite").path
        let r = try await runRoundup(["backup", copy], in: dir)
        #expect(r.status == 0)
        let mode = try #require(FileManager.default.attributesOfItem(atPath: copy)[.posixPermissions] as? Int)
        #expect(mode & 0o777 == 0o600)
        let restored = try RoundupStore.open(path: copy)
        #expect(try restored.user("p1")?.name == "王芳")
        #expect(try await runRoundup(["backup", copy], in: dir).status == 1)
        let check = try await runRoundup(["check"], in: dir)
        #expect(check.status == 0)
        #expect(check.stdout.contains("is sound"))
        #expect(try store.sqlite!.quickCheck().isEmpty)
    }
}
