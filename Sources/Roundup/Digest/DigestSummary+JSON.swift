extension DigestSummary {
    /// The digest object (docs/cli.md), shared by the CLI's `--json` and the admin API.
    public var json: JSONValue {
        .object([
            ("id", .int(id)), ("im_user_id", .string(imUserID)), ("name", .string(name)), ("openid_bound", .bool(openidBound)),
            ("state", .string(state.rawValue)), ("reason", .string(reason?.rawValue)), ("messages", .int(Int64(messages))),
            ("senders", .array(senders.map(JSONValue.string))), ("first_at", .string(firstAt?.rfc3339)),
            ("due_at", .string(dueAt?.rfc3339)), ("template_id", .string(templateID)), ("errcode", .string(errcode)),
            ("errmsg", .string(errmsg)), ("msgid", .string(msgid)), ("held_since", .string(heldSince?.rfc3339)),
            ("opened_at", .string(openedAt.rfc3339)), ("finished_at", .string(finishedAt?.rfc3339)),
        ])
    }
}
