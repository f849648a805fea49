import Foundation
import GRDB
import Testing

@testable import Roundup

/// `serve`'s SQLite writer keeps users and active digests in memory; the CLI writes the same file
/// from another process. While callbacks keep arriving, `roundup cancel` and `roundup users bind`
/// run beside it: nothing acknowledged is lost or stored twice, and no message joins a digest the
/// CLI cancelled (the writer sees the other process's commit and reads the database again).
@Suite("The CLI writing beside ingest", .serialized)
struct CLIBesideIngestTests {
    static let users = 6
    static let rounds = 12

    @Test("cancel and users bind from the CLI during ingest: nothing lost or duplicated, nothing joined to a cancelled digest")
    func cancelAndBindDuringIngest() async throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let database = dir.appendingPathComponent("roundup.sqlite").path
        let serve = try await ServeProcess.startSigned(
            in: dir, callbackToken: OverloadTests.token, storage: "  path: \"\(database)\"", extra: "digest:\n  window: 10m")
        let config = dir.appendingPathComponent("roundup.yaml")
        defer { Task { await serve.terminate() } }
        let port = try await serve.waitUntilListening()
        let client = SignedCallbackClient(port: port, token: OverloadTests.token, connections: Self.users)
        defer { client.close() }

        // Callbacks to every user, round after round, while the CLI cancels digests and binds users.
        async let acknowledged: [String] = {
            var keys: [String] = []
            for round in 0..<Self.rounds {
                let acks = await withTaskGroup(of: String?.self) { group in
                    for u in 0..<Self.users {
                        let key = "r\(round)-p\(u)"
                        group.addTask { await client.c2c(from: "t", to: "p\(u)", key: key, text: "x") ? key : nil }
                    }
                    return await group.reduce(into: [String]()) { if let k = $1 { $0.append(k) } }
                }
                keys += acks
                try? await Task.sleep(for: .milliseconds(40))
            }
            return keys
        }()
        var cancels = 0
        for round in 0..<4 {
            for u in 0..<Self.users {
                let cancel = try await runRoundup(["cancel", "p\(u)", "--config", config.path], in: dir, timeout: 60)
                if cancel.status == 0 { cancels += 1 }
                if round == 1 {
                    let bind = try await runRoundup(["users", "bind", "p\(u)", "o_p\(u)", "--config", config.path], in: dir, timeout: 60)
                    #expect(bind.status == 0, "users bind p\(u): \(bind.stderr)")
                }
            }
        }
        let keys = await acknowledged
        // One more message each, after the CLI is done: it must join a digest that is open.
        for u in 0..<Self.users {
            #expect(await client.c2c(from: "t", to: "p\(u)", key: "last-p\(u)", text: "x"), "the last callback for p\(u) was not acknowledged")
        }
        print("CLI beside ingest: \(keys.count) callbacks acknowledged during \(cancels) successful cancels")
        #expect(cancels > 0, "no cancel found a digest to cancel: the test exercised nothing")

        let db = try DatabaseQueue(path: database)
        try await db.read { db in
            for key in keys + (0..<Self.users).map({ "last-p\($0)" }) {
                let n = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM messages WHERE msg_key = ?", arguments: [key]) ?? 0
                #expect(n == 1, "acknowledged \(key) is stored \(n) times")
            }
            let misjoined = try Int.fetchOne(db, sql: """
                SELECT COUNT(*) FROM messages m JOIN digests d ON d.id = m.digest_id
                WHERE m.status = 'pending' AND d.state NOT IN ('open', 'held', 'sending')
                """) ?? -1
            #expect(misjoined == 0, "\(misjoined) pending message(s) joined a digest that was already finished")
            for u in 0..<Self.users {
                let state = try String.fetchOne(db, sql: """
                    SELECT d.state FROM messages m JOIN digests d ON d.id = m.digest_id WHERE m.msg_key = ?
                    """, arguments: ["last-p\(u)"])
                #expect(state == "open", "p\(u)'s last message is in a digest that is \(state ?? "missing")")
                let openid = try String.fetchOne(db, sql: "SELECT openid FROM users WHERE im_user_id = ?", arguments: ["p\(u)"])
                #expect(openid == "o_p\(u)")
            }
        }
    }
}
