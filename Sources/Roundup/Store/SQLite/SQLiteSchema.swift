import Foundation
import GRDB

/// The versioned schema. Invariants live in the schema itself, not only in code: one row per
/// `MsgKey`, one group row per `GroupId`+`MsgSeq`, one `open`/`held` digest per user (a partial
/// unique index), state and reason spellings, and the digest state machine (a trigger).
enum Schema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-initial", migrate: createInitialSchema)
        migrator.registerMigration("v2-housekeeping-indexes", migrate: addHousekeepingIndexes)
        migrator.registerMigration("v3-constraints-without-in-lists", migrate: spellOutInLists)
        return migrator
    }

    /// The digest state-machine trigger's condition, spelled out so that the migration is frozen.
    /// `DigestState.transitions` is the same table in Swift; a test checks that they agree.
    /// Comparisons joined by OR, not `IN` lists: see `spellOutInLists`.
    static let allowedTransitionsSQL = """
        (OLD.state = 'open' AND (NEW.state = 'open' OR NEW.state = 'held' OR NEW.state = 'sending'
            OR NEW.state = 'cancelled' OR NEW.state = 'expired' OR NEW.state = 'dead'))
        OR (OLD.state = 'held' AND (NEW.state = 'held' OR NEW.state = 'open' OR NEW.state = 'sending'
            OR NEW.state = 'cancelled' OR NEW.state = 'expired'))
        OR (OLD.state = 'sending' AND (NEW.state = 'sent' OR NEW.state = 'dry_run' OR NEW.state = 'held'
            OR NEW.state = 'open' OR NEW.state = 'dead' OR NEW.state = 'in_doubt'))
        OR (OLD.state = 'dead' AND (NEW.state = 'open' OR NEW.state = 'cancelled'))
        OR (OLD.state = 'in_doubt' AND (NEW.state = 'sent' OR NEW.state = 'open' OR NEW.state = 'cancelled'))
        """

    /// The trigger's condition as the first migration wrote it.
    private static let allowedTransitionsSQLv1 = """
        (OLD.state = 'open' AND NEW.state IN ('open','held','sending','cancelled','expired','dead'))
        OR (OLD.state = 'held' AND NEW.state IN ('held','open','sending','cancelled','expired'))
        OR (OLD.state = 'sending' AND NEW.state IN ('sent','dry_run','held','open','dead','in_doubt'))
        OR (OLD.state = 'dead' AND NEW.state IN ('open','cancelled'))
        OR (OLD.state = 'in_doubt' AND NEW.state IN ('sent','open','cancelled'))
        """

    /// Housekeeping runs every minute beside ingest, in a write transaction: these partial
    /// indexes let it visit only the rows it changes instead of scanning every message.
    private static func addHousekeepingIndexes(_ db: Database) throws {
        try db.execute(sql: """
            -- Retention: pending messages by receipt time.
            CREATE INDEX messages_pending_by_received ON messages(received_at) WHERE status = 'pending';
            -- The text_retention purge: finished messages whose text is still there.
            CREATE INDEX messages_text_to_purge ON messages(status_at) WHERE summary IS NOT NULL AND status <> 'pending';
            -- The text_retention purge: finished digests whose rendered body is still there.
            CREATE INDEX digests_body_to_purge ON digests(finished_at) WHERE body IS NOT NULL AND finished_at IS NOT NULL;
            """)
    }

    /// SQLite checks `x IN ('a', 'b', 'c')` with a list of more than two constants by building a
    /// temporary b-tree of the list each time a statement runs: for the CHECK constraints, on every
    /// message and digest inserted and every digest state change. That was about 12 % of the
    /// instructions of a stored callback (callgrind). Comparisons joined by OR say the same
    /// and cost a few instructions.
    ///
    /// A CHECK constraint does not change what is stored, so the tables' text is edited in
    /// `sqlite_schema` (the procedure SQLite documents for changing constraints, which leaves
    /// every row and index as it is) rather than rebuilt, which would copy every row and index
    /// of `messages` and `digests`. Each rewritten constraint means the same as the one it
    /// replaces: the rows already stored satisfy it. A table whose text is not the one this
    /// migration expects keeps it (checks that are only slower). The trigger is dropped and
    /// created again.
    private static func spellOutInLists(_ db: Database) throws {
        let rewrites: [(table: String, from: String, to: String)] = [
            ("digests",
             "state IN ('open', 'held', 'sending', 'sent', 'dry_run', 'cancelled', 'expired', 'dead', 'in_doubt')",
             """
             (state = 'open' OR state = 'held' OR state = 'sending' OR state = 'sent' OR state = 'dry_run'
                     OR state = 'cancelled' OR state = 'expired' OR state = 'dead' OR state = 'in_doubt')
             """),
            ("digests", "flush_requested IN (0, 1, 2)", "(flush_requested = 0 OR flush_requested = 1 OR flush_requested = 2)"),
            ("digests", "coalesce(reason, '') IN ('unbound', 'no_credit', 'config_error')",
             "(coalesce(reason, '') = 'unbound' OR coalesce(reason, '') = 'no_credit' OR coalesce(reason, '') = 'config_error')"),
            ("digests", "coalesce(reason, '') IN ('user_online', 'read', 'recalled', 'operator')",
             """
             (coalesce(reason, '') = 'user_online' OR coalesce(reason, '') = 'read'
                         OR coalesce(reason, '') = 'recalled' OR coalesce(reason, '') = 'operator')
             """),
            ("messages", "status IN ('pending', 'delivered', 'seen', 'read', 'recalled', 'expired', 'dropped')",
             """
             (status = 'pending' OR status = 'delivered' OR status = 'seen' OR status = 'read'
                     OR status = 'recalled' OR status = 'expired' OR status = 'dropped')
             """),
            ("group_messages", "fanout_state IN ('pending', 'done', 'skipped')",
             "(fanout_state = 'pending' OR fanout_state = 'done' OR fanout_state = 'skipped')"),
        ]
        var tables: [String: String] = [:]
        for table in Set(rewrites.map(\.table)) {
            tables[table] = try String.fetchOne(db, sql: "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?", arguments: [table])
        }
        var changed: [String: String] = [:]
        for rewrite in rewrites {
            guard let sql = changed[rewrite.table] ?? tables[rewrite.table], let range = sql.onlyRange(ofLoose: rewrite.from) else { continue }
            changed[rewrite.table] = sql.replacingCharacters(in: range, with: rewrite.to)
        }
        if !changed.isEmpty {
            let version = try Int.fetchOne(db, sql: "PRAGMA schema_version") ?? 0
            try db.execute(sql: "PRAGMA writable_schema = ON")
            for (table, sql) in changed.sorted(by: { $0.key < $1.key }) {
                try db.execute(sql: "UPDATE sqlite_schema SET sql = ? WHERE type = 'table' AND name = ?", arguments: [sql, table])
            }
            // A new schema version makes every connection read the edited text again.
            try db.execute(sql: "PRAGMA schema_version = \(version + 1)")
            try db.execute(sql: "PRAGMA writable_schema = OFF")
        }
        try db.execute(sql: """
            DROP TRIGGER digests_state_machine;
            CREATE TRIGGER digests_state_machine BEFORE UPDATE OF state ON digests
            WHEN NOT (\(allowedTransitionsSQL))
            BEGIN SELECT RAISE(ABORT, 'illegal digest state transition'); END;
            """)
    }

    private static func createInitialSchema(_ db: Database) throws {
        try db.execute(sql: """
            -- Users: IM accounts, optionally bound to an openid (unique) and a display name.
            CREATE TABLE users (
                im_user_id TEXT PRIMARY KEY NOT NULL CHECK (length(im_user_id) > 0),
                openid TEXT UNIQUE CHECK (openid IS NULL OR length(openid) > 0),
                name TEXT,
                profile TEXT,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL
            );

            -- Group messages: one row per GroupId+MsgSeq, committed before the callback is
            -- answered; fan-out to members happens afterwards from this row.
            CREATE TABLE group_messages (
                id INTEGER PRIMARY KEY,
                group_id TEXT NOT NULL,
                msg_seq INTEGER NOT NULL,
                group_type TEXT NOT NULL,
                sender TEXT NOT NULL,
                msg_time INTEGER NOT NULL,
                received_at INTEGER NOT NULL,
                summary TEXT,
                at_all INTEGER NOT NULL DEFAULT 0,
                mentions TEXT NOT NULL DEFAULT '[]',
                urgent INTEGER NOT NULL DEFAULT 0,
                fanout_state TEXT NOT NULL DEFAULT 'pending' CHECK (fanout_state IN ('pending', 'done', 'skipped')),
                fanout_cursor TEXT,
                fanout_done_at INTEGER,
                UNIQUE (group_id, msg_seq)
            );
            CREATE INDEX group_messages_fanout_pending ON group_messages(id) WHERE fanout_state = 'pending';

            -- Digests: one user's batch of pending messages, which becomes one subscribe message.
            CREATE TABLE digests (
                id INTEGER PRIMARY KEY,
                im_user_id TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN
                    ('open', 'held', 'sending', 'sent', 'dry_run', 'cancelled', 'expired', 'dead', 'in_doubt')),
                reason TEXT,
                opened_at INTEGER NOT NULL,
                window_start_at INTEGER NOT NULL,
                last_message_at INTEGER,
                due_at INTEGER,
                urgent INTEGER NOT NULL DEFAULT 0,
                flush_requested INTEGER NOT NULL DEFAULT 0 CHECK (flush_requested IN (0, 1, 2)),
                attempts INTEGER NOT NULL DEFAULT 0,
                template_id TEXT,
                errcode TEXT,
                errmsg TEXT,
                msgid TEXT,
                body TEXT,
                held_since INTEGER,
                sending_at INTEGER,
                finished_at INTEGER,
                updated_at INTEGER NOT NULL,
                -- coalesce: a NULL reason must fail the IN tests, not make the CHECK unknown (= pass).
                CHECK (
                    (state = 'held' AND coalesce(reason, '') IN ('unbound', 'no_credit', 'config_error'))
                    OR (state = 'cancelled' AND coalesce(reason, '') IN ('user_online', 'read', 'recalled', 'operator'))
                    OR (state NOT IN ('held', 'cancelled') AND reason IS NULL)
                ),
                CHECK (state <> 'open' OR due_at IS NOT NULL)
            );
            CREATE UNIQUE INDEX digests_one_active_per_user ON digests(im_user_id) WHERE state IN ('open', 'held');
            CREATE INDEX digests_due ON digests(due_at) WHERE state = 'open';
            CREATE INDEX digests_by_user ON digests(im_user_id, id);
            CREATE INDEX digests_by_state ON digests(state, id);
            CREATE INDEX digests_by_msgid ON digests(msgid) WHERE msgid IS NOT NULL;

            CREATE TRIGGER digests_created_open BEFORE INSERT ON digests
            WHEN NEW.state <> 'open'
            BEGIN SELECT RAISE(ABORT, 'a digest is created open'); END;

            CREATE TRIGGER digests_state_machine BEFORE UPDATE OF state ON digests
            WHEN NOT (\(allowedTransitionsSQLv1))
            BEGIN SELECT RAISE(ABORT, 'illegal digest state transition'); END;

            -- Pending messages: C2C rows keyed by MsgKey; group rows are per-member copies of a
            -- group_messages row. Unjoined (digest_id NULL) while the recipient is online.
            CREATE TABLE messages (
                id INTEGER PRIMARY KEY,
                msg_key TEXT UNIQUE,
                group_message_id INTEGER REFERENCES group_messages(id) ON DELETE CASCADE,
                recipient TEXT NOT NULL,
                sender TEXT NOT NULL,
                sender_name_card TEXT,
                msg_time INTEGER NOT NULL,
                received_at INTEGER NOT NULL,
                summary TEXT,
                urgent INTEGER NOT NULL DEFAULT 0,
                digest_id INTEGER REFERENCES digests(id) ON DELETE SET NULL,
                status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN
                    ('pending', 'delivered', 'seen', 'read', 'recalled', 'expired', 'dropped')),
                status_at INTEGER,
                CHECK ((msg_key IS NULL) <> (group_message_id IS NULL)),
                UNIQUE (group_message_id, recipient)
            );
            CREATE INDEX messages_by_digest ON messages(digest_id) WHERE digest_id IS NOT NULL;
            CREATE INDEX messages_unjoined ON messages(recipient, received_at) WHERE status = 'pending' AND digest_id IS NULL;
            CREATE INDEX messages_pending_pair ON messages(recipient, sender, msg_time) WHERE status = 'pending';
            CREATE INDEX messages_by_received ON messages(received_at);

            -- A recall of a message not seen yet, so that its late ingest is skipped.
            CREATE TABLE recall_tombstones (
                msg_key TEXT PRIMARY KEY NOT NULL,
                to_account TEXT NOT NULL,
                expires_at INTEGER NOT NULL
            );

            -- The newest read report applied per (reader, peer): older reports are ignored.
            CREATE TABLE read_marks (
                recipient TEXT NOT NULL,
                peer TEXT NOT NULL,
                last_read_time INTEGER NOT NULL,
                PRIMARY KEY (recipient, peer)
            ) WITHOUT ROWID;

            -- The decision log: every step a digest goes through.
            CREATE TABLE digest_events (
                id INTEGER PRIMARY KEY,
                digest_id INTEGER NOT NULL REFERENCES digests(id) ON DELETE CASCADE,
                at INTEGER NOT NULL,
                kind TEXT NOT NULL,
                detail TEXT NOT NULL DEFAULT ''
            );
            CREATE INDEX digest_events_by_digest ON digest_events(digest_id, id);

            -- Credits per openid and template: one-time counts and long-term subscriptions.
            CREATE TABLE credits (
                openid TEXT NOT NULL,
                template_id TEXT NOT NULL,
                count INTEGER NOT NULL DEFAULT 0 CHECK (count >= 0),
                subscribed INTEGER NOT NULL DEFAULT 0 CHECK (subscribed IN (0, 1)),
                updated_at INTEGER NOT NULL,
                PRIMARY KEY (openid, template_id)
            );

            -- Keys of events already applied: WeChat pushes (re-sent after 5 s) and admin
            -- idempotency keys, so each is applied once.
            CREATE TABLE applied_events (
                key TEXT PRIMARY KEY NOT NULL,
                applied_at INTEGER NOT NULL
            );

            -- subscribe_msg_sent_event results, used to settle in-doubt sends.
            CREATE TABLE wechat_sent_events (
                id INTEGER PRIMARY KEY,
                msgid TEXT NOT NULL,
                openid TEXT NOT NULL,
                template_id TEXT NOT NULL,
                error_code INTEGER NOT NULL,
                error_status TEXT,
                create_time INTEGER NOT NULL,
                received_at INTEGER NOT NULL,
                UNIQUE (msgid, template_id)
            );
            CREATE INDEX wechat_sent_events_by_openid ON wechat_sent_events(openid, template_id, create_time);

            -- The cached WeChat access token.
            CREATE TABLE access_token (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                token TEXT NOT NULL,
                expires_at INTEGER NOT NULL,
                fetched_at INTEGER NOT NULL
            );

            -- The single-writer lease of `roundup serve`.
            CREATE TABLE serve_lease (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                pid INTEGER NOT NULL,
                host TEXT NOT NULL,
                token TEXT NOT NULL,
                acquired_at INTEGER NOT NULL,
                renewed_at INTEGER NOT NULL
            );

            -- Sending pauses: the 45009 quota day, and per-template configuration errors.
            CREATE TABLE send_pauses (
                key TEXT PRIMARY KEY NOT NULL,
                until_at INTEGER,
                reason TEXT NOT NULL,
                since_at INTEGER NOT NULL
            );
            """)
    }
}

extension String {
    /// The range of the one place `fragment` occurs, where a run of white space in `fragment`
    /// matches any run of white space, or none; nil when it occurs nowhere or more than once.
    fileprivate func onlyRange(ofLoose fragment: String) -> Range<String.Index>? {
        let words = fragment.split(whereSeparator: \.isWhitespace).map { NSRegularExpression.escapedPattern(for: String($0)) }
        guard let pattern = try? NSRegularExpression(pattern: words.joined(separator: "\\s*")) else { return nil }
        let matches = pattern.matches(in: self, range: NSRange(startIndex..., in: self))
        guard matches.count == 1 else { return nil }
        return Range(matches[0].range, in: self)
    }
}
