//! AGOX's database schema (AGOX 3.11.1, `agox/databases/database.py`) and its check.
//!
//! The `CREATE TABLE` statements are kept character for character as AGOX issues them,
//! so that `sqlite_master` of a database we create is identical to one AGOX creates
//! (the test `tests/db.rs` compares against a dump of an AGOX-written file).

use rusqlite::{Connection, TransactionBehavior};

use super::DbError;

/// The statements AGOX runs on a file without a `structures` table, in its order.
pub const CREATE_STATEMENTS: [&str; 6] = [
    "create table structures (
    id integer primary key autoincrement,
    ctime real,
    positions blob,
    energy real,
    type blob,
    cell blob,
    forces blob, 
    pbc blob,
    template_indices blob,
    iteration int,
    cache_key text
    )",
    "CREATE TABLE text_key_values (
    key TEXT,
    value TEXT,
    id INTEGER,
    FOREIGN KEY (id) REFERENCES systems(id))",
    "CREATE TABLE float_key_values (
    key TEXT,
    value REAL,
    id INTEGER,
    FOREIGN KEY (id) REFERENCES systems(id))",
    "CREATE TABLE int_key_values (
    key TEXT,
    value INTEGER,
    id INTEGER,
    FOREIGN KEY (id) REFERENCES systems(id))",
    "CREATE TABLE boolean_key_values (
    key TEXT,
    value INTEGER,
    id INTEGER,
    FOREIGN KEY (id) REFERENCES systems(id))",
    "CREATE TABLE other_key_values (
    key TEXT,
    value BLOB,
    id INTEGER,
    FOREIGN KEY (id) REFERENCES systems(id))",
];

/// Tables and their columns (name, declared type) as AGOX defines them.
pub const TABLES: [(&str, &[(&str, &str)]); 6] = [
    (
        "structures",
        &[
            ("id", "integer"),
            ("ctime", "real"),
            ("positions", "blob"),
            ("energy", "real"),
            ("type", "blob"),
            ("cell", "blob"),
            ("forces", "blob"),
            ("pbc", "blob"),
            ("template_indices", "blob"),
            ("iteration", "int"),
            ("cache_key", "text"),
        ],
    ),
    ("text_key_values", KV_TEXT),
    ("float_key_values", KV_REAL),
    ("int_key_values", KV_INT),
    ("boolean_key_values", KV_INT),
    ("other_key_values", KV_BLOB),
];

const KV_TEXT: &[(&str, &str)] = &[("key", "TEXT"), ("value", "TEXT"), ("id", "INTEGER")];
const KV_REAL: &[(&str, &str)] = &[("key", "TEXT"), ("value", "REAL"), ("id", "INTEGER")];
const KV_INT: &[(&str, &str)] = &[("key", "TEXT"), ("value", "INTEGER"), ("id", "INTEGER")];
const KV_BLOB: &[(&str, &str)] = &[("key", "TEXT"), ("value", "BLOB"), ("id", "INTEGER")];

/// Names of the user tables present in the file (SQLite's own `sqlite_*` excluded).
fn user_tables(conn: &Connection) -> Result<Vec<String>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )?;
    let names = stmt
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(names)
}

/// Create AGOX's tables if the file has none, otherwise check that every table and
/// column is exactly AGOX's. Returns `true` when the schema was created.
///
/// The look and the creation are one write transaction: two processes opening a
/// new file at once (a run creating its database, another process opening it)
/// cannot both find it empty, so neither fails with "table structures already
/// exists".
pub fn ensure(conn: &mut Connection) -> Result<bool, DbError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let present = user_tables(&tx)?;
    let created = present.is_empty();
    if created {
        for statement in CREATE_STATEMENTS {
            tx.execute(statement, [])?;
        }
    } else {
        check(&tx, &present)?;
    }
    tx.commit()?;
    Ok(created)
}

/// Checks, creating nothing, that the file holds exactly AGOX's tables and columns (a
/// file without tables is not an AGOX database).
pub fn verify(conn: &Connection) -> Result<(), DbError> {
    check(conn, &user_tables(conn)?)
}

fn check(conn: &Connection, present: &[String]) -> Result<(), DbError> {
    for (table, columns) in TABLES {
        if !present.iter().any(|p| p == table) {
            return Err(DbError::Schema {
                table: table.to_owned(),
                problem: "table is missing (this is not an AGOX database)".to_owned(),
            });
        }
        let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
        let found = stmt
            .query_map([], |row| {
                Ok((row.get::<_, String>(1)?, row.get::<_, String>(2)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        for (i, (name, ty)) in columns.iter().enumerate() {
            match found.get(i) {
                Some((fname, fty)) if fname == name && fty.eq_ignore_ascii_case(ty) => {}
                Some((fname, fty)) => {
                    return Err(DbError::Schema {
                        table: table.to_owned(),
                        problem: format!(
                            "column {} is `{fname} {fty}`, AGOX's schema has `{name} {ty}`",
                            i + 1
                        ),
                    })
                }
                None => {
                    return Err(DbError::Schema {
                        table: table.to_owned(),
                        problem: format!("column `{name} {ty}` is missing"),
                    })
                }
            }
        }
        if let Some((extra, ty)) = found.get(columns.len()) {
            return Err(DbError::Schema {
                table: table.to_owned(),
                problem: format!("has an extra column `{extra} {ty}` not in AGOX's schema"),
            });
        }
    }
    Ok(())
}
