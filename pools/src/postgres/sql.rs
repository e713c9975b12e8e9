//! The SQL verb and a statement summary, read from the statement text without allocating.

use std::fmt;

/// The SQL verbs with their own `operation` label; anything else is `_OTHER`.
pub(crate) const OPERATIONS: &[&str] = &[
    "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "WITH", "BEGIN", "COMMIT", "ROLLBACK",
    "CREATE", "DROP", "ALTER", "TRUNCATE", "COPY", "CALL", "SET", "SHOW", "LOCK", "VALUES",
    "EXPLAIN", "_OTHER",
];

/// Index into [`OPERATIONS`] of `_OTHER`.
pub(crate) const OTHER: usize = OPERATIONS.len() - 1;

/// The first keyword of a statement, skipping whitespace, `--` comments and `(`.
fn first_word(sql: &str) -> &str {
    let mut rest = sql;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
        if let Some(comment) = rest.strip_prefix("--") {
            rest = comment.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(comment) = rest.strip_prefix("/*") {
            rest = comment.split_once("*/").map_or("", |(_, after)| after);
        } else {
            break;
        }
    }
    let end = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The index into [`OPERATIONS`] of the statement's verb.
pub(crate) fn operation(sql: &str) -> usize {
    let word = first_word(sql);
    if word.eq_ignore_ascii_case("START") {
        return 6; // START TRANSACTION = BEGIN
    }
    if word.eq_ignore_ascii_case("END") {
        return 7; // END = COMMIT
    }
    OPERATIONS[..OTHER]
        .iter()
        .position(|op| op.eq_ignore_ascii_case(word))
        .unwrap_or(OTHER)
}

/// A low-cardinality summary of a statement, `{operation} {table}` in the manner of OTel's
/// `db.query.summary` (`SELECT users`, `INSERT orders`), or just the operation. Never contains
/// literals or parameters: only the verb and the identifier that follows `FROM`, `INTO`,
/// `UPDATE`, `TABLE` or `JOIN`-free target position.
#[derive(Clone, Copy)]
pub(crate) struct Summary<'a> {
    pub(crate) operation: usize,
    pub(crate) sql: &'a str,
}

impl Summary<'_> {
    fn target(&self) -> Option<&str> {
        let marker: &[&str] = match OPERATIONS[self.operation] {
            "SELECT" | "DELETE" => &["FROM"],
            "INSERT" | "MERGE" => &["INTO"],
            "UPDATE" => &["UPDATE"],
            "TRUNCATE" | "LOCK" => &["TABLE", "TRUNCATE", "LOCK"],
            "COPY" => &["COPY"],
            _ => return None,
        };
        let mut words = self
            .sql
            .split(|c: char| c.is_whitespace() || c == '(' || c == ',');
        while let Some(word) = words.next() {
            if marker.iter().any(|m| m.eq_ignore_ascii_case(word)) {
                let mut next = words.by_ref().find(|w| !w.is_empty())?;
                if next.eq_ignore_ascii_case("ONLY") || next.eq_ignore_ascii_case("TABLE") {
                    next = words.by_ref().find(|w| !w.is_empty())?;
                }
                let end = next
                    .find(|c: char| {
                        !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '"')
                    })
                    .unwrap_or(next.len())
                    .min(64);
                let name = next.get(..end)?;
                // An identifier, not a literal or placeholder.
                let first = name.chars().next()?;
                return (first.is_ascii_alphabetic() || first == '_' || first == '"')
                    .then_some(name);
            }
        }
        None
    }
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(OPERATIONS[self.operation])?;
        if let Some(target) = self.target() {
            f.write_str(" ")?;
            f.write_str(target)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(sql: &str) -> String {
        Summary {
            operation: operation(sql),
            sql,
        }
        .to_string()
    }

    #[test]
    fn operations_are_the_verb_or_other() {
        assert_eq!(OPERATIONS[operation("  select 1")], "SELECT");
        assert_eq!(
            OPERATIONS[operation("-- hi\nINSERT INTO t VALUES (1)")],
            "INSERT"
        );
        assert_eq!(
            OPERATIONS[operation("/* x */ update t set a = 1")],
            "UPDATE"
        );
        assert_eq!(OPERATIONS[operation("(SELECT 1)")], "SELECT");
        assert_eq!(OPERATIONS[operation("start transaction")], "BEGIN");
        assert_eq!(OPERATIONS[operation("VACUUM")], "_OTHER");
        assert_eq!(OPERATIONS[operation("")], "_OTHER");
    }

    #[test]
    fn summaries_name_the_table_never_literals() {
        assert_eq!(
            summary("SELECT id FROM users WHERE id = $1"),
            "SELECT users"
        );
        assert_eq!(
            summary("insert into public.orders (a) values ('secret')"),
            "INSERT public.orders"
        );
        assert_eq!(summary("UPDATE accounts SET b = 'x'"), "UPDATE accounts");
        assert_eq!(summary("DELETE FROM t WHERE a = 'secret'"), "DELETE t");
        assert_eq!(summary("SELECT pg_sleep(0.2), $1::text"), "SELECT");
        assert_eq!(summary("SELECT * FROM 'secret'"), "SELECT");
        assert_eq!(summary("TRUNCATE TABLE logs"), "TRUNCATE logs");
    }
}
