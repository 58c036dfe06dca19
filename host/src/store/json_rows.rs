//! Many rows in one PostgreSQL statement, whatever their number: the rows travel as one JSON
//! array (a text parameter) that `json_populate_recordset` reads back as rows of the table's own
//! row type, columns matched by name. So a table's bulk insert has one statement shape, prepared
//! once and reused for every batch size, where `VALUES` lists take a statement per run of rows
//! ([`super::runs_of_powers_of_two`]) — and several tables' inserts fit in one statement (`WITH`),
//! one round trip. SQLite keeps the `VALUES` lists: its statements cost no round trip.
//!
//! (sqlx's `Any` driver binds no arrays, so `UNNEST` of typed arrays is not open to us.)

use serde::Serialize;

use super::StoreError;

/// `INSERT INTO {table} ({columns}) SELECT {columns} FROM json_populate_recordset(…, ${parameter})`:
/// inserts the rows of the JSON array bound at `${parameter}` (see [`encode`]).
pub(crate) fn insert_sql(table: &str, columns: &str, parameter: usize) -> String {
    format!(
        "INSERT INTO {table} ({columns}) SELECT {columns} FROM json_populate_recordset(NULL::{table}, ${parameter}::json)"
    )
}

/// `ARRAY(…)` of the `key` field of each object of the JSON array bound at `${parameter}` (each
/// string of it, with `key` `None`), for `column = ANY (…)`: how an `UPDATE` or `DELETE` names
/// its rows. PostgreSQL's planner estimates a JSON set function at 100 rows whatever it holds, so
/// a table joined to it alone (`… FROM json_populate_recordset(…) r WHERE t.id = r.id`, or
/// `id IN (SELECT json_array_elements_text(…))`) is read whole for a hash join; `= ANY` of an
/// array is planned as index lookups.
pub(crate) fn keys_sql(parameter: usize, key: Option<&str>) -> String {
    match key {
        Some(key) => format!("ARRAY(SELECT row ->> '{key}' FROM json_array_elements(${parameter}::json) row)"),
        None => format!("ARRAY(SELECT json_array_elements_text(${parameter}::json))"),
    }
}

/// The JSON array of `rows`, each an object whose keys are its table's column names.
pub(crate) fn encode<T: Serialize>(rows: &[T]) -> Result<String, StoreError> {
    serde_json::to_string(rows).map_err(|error| StoreError::Database(sqlx::Error::Encode(Box::new(error))))
}

/// `sql` with each parameter `$n` replaced by `parameters[n - 1]` as a literal ([`literal`]), for
/// a statement sent without parameters ([`super::Tx::run_at_commit`]). Every `$` of `sql` must
/// begin a parameter (as in the statements of this module).
pub(crate) fn inline(sql: &str, parameters: &[String]) -> Result<String, StoreError> {
    let unbound = |what: &str| StoreError::Database(sqlx::Error::Protocol(format!("cannot inline {what} in: {sql}")));
    let mut inlined = String::with_capacity(sql.len() + parameters.iter().map(|p| p.len() + 8).sum::<usize>());
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        inlined.push_str(&rest[..at]);
        let digits = rest[at + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len() - at - 1);
        let number: usize = rest[at + 1..at + 1 + digits]
            .parse()
            .map_err(|_| unbound("a bare `$`"))?;
        let value = number
            .checked_sub(1)
            .and_then(|n| parameters.get(n))
            .ok_or_else(|| unbound(&format!("${number}")))?;
        inlined.push_str(&literal(value));
        rest = &rest[at + 1 + digits..];
    }
    inlined.push_str(rest);
    Ok(inlined)
}

/// `text` as a PostgreSQL string literal, for a statement sent without parameters
/// ([`inline`]): dollar-quoted with a tag `text` does not contain, so nothing in
/// it can end the literal, whatever the server's `standard_conforming_strings`.
pub(crate) fn literal(text: &str) -> String {
    let mut tag = String::from("$l$");
    let mut n = 0u32;
    // The closing tag must be the first in what follows the opening one (`x$l` then `$l$` holds
    // `$l$` early).
    while format!("{text}{tag}").find(&tag) != Some(text.len()) {
        n += 1;
        tag = format!("$l{n}$");
    }
    format!("{tag}{text}{tag}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Row<'a> {
        id: &'a str,
        note: Option<&'a str>,
        at: i64,
    }

    #[test]
    fn rows_are_objects_keyed_by_column_and_text_is_escaped() {
        let rows = [
            Row {
                id: "a",
                note: Some("say \"hi\"\n\\"),
                at: 1,
            },
            Row {
                id: "b",
                note: None,
                at: -2,
            },
        ];
        assert_eq!(
            encode(&rows).unwrap(),
            r#"[{"id":"a","note":"say \"hi\"\n\\","at":1},{"id":"b","note":null,"at":-2}]"#
        );
        assert_eq!(encode::<Row>(&[]).unwrap(), "[]");
    }

    #[test]
    fn the_insert_reads_the_named_columns_from_the_parameter() {
        assert_eq!(
            insert_sql("jobs", "id, kind", 3),
            "INSERT INTO jobs (id, kind) SELECT id, kind FROM json_populate_recordset(NULL::jobs, $3::json)"
        );
    }

    #[test]
    fn inlining_replaces_every_parameter_by_its_literal() {
        let sql = "WITH a AS (SELECT $1::json), b AS (SELECT $10::json) SELECT $2";
        let parameters: Vec<String> = (1..=10).map(|n| format!("p{n} $1")).collect();
        assert_eq!(
            inline(sql, &parameters).unwrap(),
            "WITH a AS (SELECT $l$p1 $1$l$::json), b AS (SELECT $l$p10 $1$l$::json) SELECT $l$p2 $1$l$"
        );
        assert!(inline("SELECT $3", &parameters[..2]).is_err());
        assert!(inline("SELECT $0", &parameters).is_err());
        assert!(inline("SELECT $", &parameters).is_err());
    }

    #[test]
    fn a_literal_cannot_be_ended_by_its_text() {
        assert_eq!(literal("it's"), "$l$it's$l$");
        assert_eq!(literal(""), "$l$$l$");
        // A text holding the tag gets another one, and the one after that if needed.
        assert_eq!(literal("a $l$ b"), "$l1$a $l$ b$l1$");
        assert_eq!(literal("$l$$l1$"), "$l2$$l$$l1$$l2$");
        // A text ending in a beginning of the tag would end early with the closing tag after it.
        assert_eq!(literal("x$l"), "$l1$x$l$l1$");
    }
}
