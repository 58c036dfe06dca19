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
}
