import Foundation
import GRDB

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why `serve` may not own the database.
public enum LeaseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Another live process holds the lock.
    case held(pid: Int?, path: String)
    case cannotLock(String)

    public var description: String {
        switch self {
        case .held(let pid, let path): return "another roundup serve (pid \(pid.map(String.init) ?? "unknown")) owns \(path)"
        case .cannotLock(let why): return "cannot lock the database: \(why)"
        }
    }
}

/// The single-writer lease of `roundup serve`: an exclusive `flock` on `PATH.lock` (released by the
/// kernel when the process dies, so a SIGKILLed owner never blocks its successor) plus a lease
/// row naming the owner's pid for the refusal message. CLI commands do not take it.
public final class ServeLease: Sendable {
    private let fd: Int32
    public let lockPath: String

    private init(fd: Int32, lockPath: String) {
        self.fd = fd
        self.lockPath = lockPath
    }

    deinit { posixClose(fd) }

    /// Takes the lease for the store's database or throws `held` naming the owner.
    public static func acquire(store: RoundupStore, now: Timestamp) throws(LeaseError) -> ServeLease {
        guard let path = store.path else { throw .cannotLock("an in-memory database has no lock file") }
        let lockPath = path + ".lock"
        let fd = posixOpen(lockPath, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .cannotLock("\(lockPath): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            posixClose(fd)
            let pid = try? store.sqlite!.writer.read { db in try Int.fetchOne(db, sql: "SELECT pid FROM serve_lease WHERE id = 1") }
            throw .held(pid: pid ?? nil, path: path)
        }
        let pid = Int(getpid())
        let host = ProcessInfo.processInfo.hostName
        do {
            try store.sqlite!.writer.write { db in
                try db.execute(
                    sql: """
                        INSERT INTO serve_lease (id, pid, host, token, acquired_at, renewed_at) VALUES (1, ?, ?, ?, ?, ?)
                        ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, host = excluded.host, token = excluded.token,
                            acquired_at = excluded.acquired_at, renewed_at = excluded.renewed_at
                        """,
                    arguments: [pid, host, UUID().uuidString, now.milliseconds, now.milliseconds])
            }
        } catch {
            posixClose(fd)
            throw .cannotLock(RoundupStore.explain(error))
        }
        return ServeLease(fd: fd, lockPath: lockPath)
    }
}

/// The `serve` that owns an SQLite database right now (`roundup instances`).
public struct LeaseHolder: Sendable, Equatable {
    public var pid: Int
    public var host: String
    public var acquiredAt: Timestamp
    public var renewedAt: Timestamp
}

extension ServeLease {
    /// The live owner of the store's database, or nil when no `serve` holds its lock (a lease row
    /// left by a process that died does not count: the kernel released its lock).
    public static func holder(of store: RoundupStore) throws -> LeaseHolder? {
        guard let path = store.path else { return nil }
        let fd = posixOpen(path + ".lock", O_RDWR | O_CLOEXEC, 0)
        guard fd >= 0 else { return nil }  // never locked: no serve has run here
        defer { posixClose(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return nil
        }
        return try store.sqlite!.writer.read { db in
            try Row.fetchOne(db, sql: "SELECT pid, host, acquired_at, renewed_at FROM serve_lease WHERE id = 1").map {
                LeaseHolder(pid: $0["pid"], host: $0["host"], acquiredAt: Timestamp(milliseconds: $0["acquired_at"]),
                            renewedAt: Timestamp(milliseconds: $0["renewed_at"]))
            }
        }
    }
}
