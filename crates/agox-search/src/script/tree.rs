//! The script's TOML as a plain tree in which every key and value keeps its place in
//! the text, so that each error can point at it. Built once from `toml_edit`'s
//! parse; the section readers only ever see this tree.

use std::ops::Range;

use toml_edit::{ImDocument, Item, Value};

/// A value and where it is written.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// Byte range of the value in the script text.
    pub span: Range<usize>,
    /// The value.
    pub kind: Kind,
}

/// A TOML value.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Datetime,
    Array(Vec<Node>),
    Table(Table),
}

/// A table: its entries in file order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    /// Where the table starts (its header, or its first key for an implicit table).
    pub at: usize,
    /// `(key, where the key is written, value)`.
    pub entries: Vec<(String, usize, Node)>,
}

impl Table {
    /// The entry `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, v)| v)
    }
}

/// Parses `text`; a syntax error comes back as `(offset, message)`.
pub(crate) fn parse(text: &str) -> Result<Table, (usize, String)> {
    let doc = ImDocument::parse(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        let lines: Vec<&str> = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        (offset, lines.join("; "))
    })?;
    Ok(table(doc.as_table(), 0))
}

fn start(span: Option<Range<usize>>, fallback: usize) -> usize {
    span.map_or(fallback, |s| s.start)
}

fn table(t: &toml_edit::Table, fallback: usize) -> Table {
    let at = start(t.span(), fallback);
    let entries = t
        .iter()
        .filter_map(|(k, _)| t.get_key_value(k))
        .filter_map(|(key, item)| {
            let key_at = start(key.span(), at);
            item_node(item, key_at).map(|n| (key.get().to_owned(), key_at, n))
        })
        .collect();
    Table { at, entries }
}

fn item_node(item: &Item, fallback: usize) -> Option<Node> {
    match item {
        Item::None => None,
        Item::Value(v) => Some(value_node(v, fallback)),
        Item::Table(t) => {
            let t = table(t, fallback);
            Some(Node {
                span: t.at..t.at,
                kind: Kind::Table(t),
            })
        }
        Item::ArrayOfTables(a) => {
            let at = start(a.span(), fallback);
            let nodes = a
                .iter()
                .map(|t| {
                    let t = table(t, at);
                    Node {
                        span: t.at..t.at,
                        kind: Kind::Table(t),
                    }
                })
                .collect();
            Some(Node {
                span: at..at,
                kind: Kind::Array(nodes),
            })
        }
    }
}

fn value_node(v: &Value, fallback: usize) -> Node {
    let span = v.span().unwrap_or(fallback..fallback);
    let kind = match v {
        Value::String(s) => Kind::Str(s.value().clone()),
        Value::Integer(i) => Kind::Int(*i.value()),
        Value::Float(f) => Kind::Float(*f.value()),
        Value::Boolean(b) => Kind::Bool(*b.value()),
        Value::Datetime(_) => Kind::Datetime,
        Value::Array(a) => Kind::Array(a.iter().map(|x| value_node(x, span.start)).collect()),
        Value::InlineTable(t) => {
            let entries = t
                .iter()
                .filter_map(|(k, _)| t.get_key_value(k))
                .filter_map(|(key, item)| {
                    let key_at = start(key.span(), span.start);
                    item_node(item, key_at).map(|n| (key.get().to_owned(), key_at, n))
                })
                .collect();
            Kind::Table(Table {
                at: span.start,
                entries,
            })
        }
    };
    Node { span, kind }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_every_place() {
        let text = "[a]\nx = 1\ny = { z = [1.5, inf] }\n[[g]]\nk = 'v'\n[[g]]\n";
        let t = parse(text).expect("valid");
        let Kind::Table(a) = &t.get("a").expect("a").kind else {
            panic!()
        };
        assert_eq!(&text[a.at..a.at + 3], "[a]");
        let x = a.get("x").expect("x");
        assert_eq!(&text[x.span.clone()], "1");
        let Kind::Table(y) = &a.get("y").expect("y").kind else {
            panic!()
        };
        let z = y.get("z").expect("z");
        assert_eq!(&text[z.span.clone()], "[1.5, inf]");
        let Kind::Array(g) = &t.get("g").expect("g").kind else {
            panic!()
        };
        assert_eq!(g.len(), 2);
        assert_eq!(&text[g[1].span.start..g[1].span.start + 5], "[[g]]");
        assert!(parse("a = \n").is_err());
    }
}
