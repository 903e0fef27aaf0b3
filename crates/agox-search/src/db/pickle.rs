//! The few Python pickles AGOX's database needs, written and read by hand.
//!
//! AGOX stores meta information that is neither text, float, int nor bool in the
//! `other_key_values` table as a pickle (`pickle.dumps(value, HIGHEST_PROTOCOL)`), and
//! reads it back with `pickle.loads`. We write lists of integers or floats there (parent
//! ids, fixed atoms, float-list info values) as protocol-2 pickles that Python reads as
//! plain `list`s, and we read back that subset plus the shapes AGOX itself writes for
//! lists of strings (protocol 5 with framing and memo opcodes). Anything else decodes to
//! `None` and is skipped by the reader.

/// A value in the pickle subset we understand.
#[derive(Debug, Clone, PartialEq)]
pub enum PickleValue {
    /// A Python `int` that fits in an `i64`.
    Int(i64),
    /// A Python `float`.
    Float(f64),
    /// A Python `bool`.
    Bool(bool),
    /// A Python `str`.
    Str(String),
    /// A Python `list` of values.
    List(Vec<PickleValue>),
}

// Opcodes (names as in CPython's `pickletools`).
const PROTO: u8 = 0x80;
const FRAME: u8 = 0x95;
const STOP: u8 = b'.';
const MARK: u8 = b'(';
const EMPTY_LIST: u8 = b']';
const APPEND: u8 = b'a';
const APPENDS: u8 = b'e';
const BININT: u8 = b'J';
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const LONG1: u8 = 0x8a;
const BINFLOAT: u8 = b'G';
const BINUNICODE: u8 = b'X';
const SHORT_BINUNICODE: u8 = 0x8c;
const MEMOIZE: u8 = 0x94;
const NEWTRUE: u8 = 0x88;
const NEWFALSE: u8 = 0x89;
const BINPUT: u8 = b'q';
const LONG_BINPUT: u8 = b'r';

fn push_int(out: &mut Vec<u8>, v: i64) {
    if let Ok(small) = i32::try_from(v) {
        out.push(BININT);
        out.extend_from_slice(&small.to_le_bytes());
    } else {
        // LONG1: a length byte, then little-endian two's complement.
        out.push(LONG1);
        out.push(8);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn list(items: impl ExactSizeIterator<Item = impl FnOnce(&mut Vec<u8>)>) -> Vec<u8> {
    let mut out = vec![PROTO, 2, EMPTY_LIST];
    if items.len() > 0 {
        out.push(MARK);
        for item in items {
            item(&mut out);
        }
        out.push(APPENDS);
    }
    out.push(STOP);
    out
}

/// A pickle of a Python `list` of `int`s.
pub fn dumps_ints(values: &[i64]) -> Vec<u8> {
    list(
        values
            .iter()
            .map(|&v| move |out: &mut Vec<u8>| push_int(out, v)),
    )
}

/// A pickle of a Python `list` of `float`s (bit-exact: BINFLOAT is a big-endian double).
pub fn dumps_floats(values: &[f64]) -> Vec<u8> {
    list(values.iter().map(|&v| {
        move |out: &mut Vec<u8>| {
            out.push(BINFLOAT);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }))
}

/// A pickle of a Python `list` of `bool`s.
pub fn dumps_bools(values: &[bool]) -> Vec<u8> {
    list(
        values
            .iter()
            .map(|&v| move |out: &mut Vec<u8>| out.push(if v { NEWTRUE } else { NEWFALSE })),
    )
}

/// A pickle of a single Python `float` (bit-exact, NaN payloads included).
pub fn dumps_float(value: f64) -> Vec<u8> {
    let mut out = vec![PROTO, 2, BINFLOAT];
    out.extend_from_slice(&value.to_be_bytes());
    out.push(STOP);
    out
}

enum Slot {
    Mark,
    Value(PickleValue),
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

/// Decode a pickle of the supported subset; `None` for anything else (or corrupt data).
pub fn loads(data: &[u8]) -> Option<PickleValue> {
    let mut r = Reader { data, pos: 0 };
    let mut stack: Vec<Slot> = Vec::new();
    loop {
        match r.byte()? {
            PROTO => {
                r.byte()?;
            }
            FRAME => {
                r.take(8)?;
            }
            MEMOIZE => {}
            BINPUT => {
                r.byte()?;
            }
            LONG_BINPUT => {
                r.take(4)?;
            }
            MARK => stack.push(Slot::Mark),
            NEWTRUE => stack.push(Slot::Value(PickleValue::Bool(true))),
            NEWFALSE => stack.push(Slot::Value(PickleValue::Bool(false))),
            EMPTY_LIST => stack.push(Slot::Value(PickleValue::List(Vec::new()))),
            BININT => stack.push(Slot::Value(PickleValue::Int(i64::from(
                i32::from_le_bytes(r.array()?),
            )))),
            BININT1 => stack.push(Slot::Value(PickleValue::Int(i64::from(r.byte()?)))),
            BININT2 => stack.push(Slot::Value(PickleValue::Int(i64::from(
                u16::from_le_bytes(r.array()?),
            )))),
            LONG1 => {
                let n = usize::from(r.byte()?);
                let bytes = r.take(n)?;
                if n > 8 {
                    return None;
                }
                if n == 0 {
                    stack.push(Slot::Value(PickleValue::Int(0)));
                    continue;
                }
                // Sign-extend the little-endian two's complement value.
                let fill = if bytes[n - 1] & 0x80 != 0 { 0xff } else { 0 };
                let mut full = [fill; 8];
                full[..n].copy_from_slice(bytes);
                stack.push(Slot::Value(PickleValue::Int(i64::from_le_bytes(full))));
            }
            BINFLOAT => stack.push(Slot::Value(PickleValue::Float(f64::from_be_bytes(
                r.array()?,
            )))),
            BINUNICODE => {
                let n = usize::try_from(u32::from_le_bytes(r.array()?)).ok()?;
                let s = std::str::from_utf8(r.take(n)?).ok()?;
                stack.push(Slot::Value(PickleValue::Str(s.to_owned())));
            }
            SHORT_BINUNICODE => {
                let n = usize::from(r.byte()?);
                let s = std::str::from_utf8(r.take(n)?).ok()?;
                stack.push(Slot::Value(PickleValue::Str(s.to_owned())));
            }
            APPEND => {
                let Slot::Value(v) = stack.pop()? else {
                    return None;
                };
                match stack.last_mut()? {
                    Slot::Value(PickleValue::List(items)) => items.push(v),
                    _ => return None,
                }
            }
            APPENDS => {
                let mark = stack.iter().rposition(|s| matches!(s, Slot::Mark))?;
                let mut items = Vec::new();
                for slot in stack.drain(mark + 1..) {
                    match slot {
                        Slot::Value(v) => items.push(v),
                        Slot::Mark => return None,
                    }
                }
                stack.pop(); // the mark
                match stack.last_mut()? {
                    Slot::Value(PickleValue::List(list)) => list.extend(items),
                    _ => return None,
                }
            }
            STOP => {
                return match (stack.pop()?, stack.is_empty()) {
                    (Slot::Value(v), true) => Some(v),
                    _ => None,
                };
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_ints_and_floats() {
        let ints = [
            0,
            1,
            -1,
            255,
            70_000,
            i64::from(i32::MIN),
            i64::MAX,
            i64::MIN,
        ];
        let v = loads(&dumps_ints(&ints)).expect("decodes");
        assert_eq!(
            v,
            PickleValue::List(ints.iter().map(|&i| PickleValue::Int(i)).collect())
        );
        let floats = [0.0, -0.0, 1.5, f64::MIN_POSITIVE, 1e300, f64::NAN];
        let PickleValue::List(back) = loads(&dumps_floats(&floats)).expect("decodes") else {
            panic!("not a list")
        };
        for (a, b) in floats.iter().zip(&back) {
            let PickleValue::Float(b) = b else {
                panic!("not a float")
            };
            assert_eq!(a.to_bits(), b.to_bits());
        }
        assert_eq!(loads(&dumps_ints(&[])), Some(PickleValue::List(vec![])));
        assert_eq!(
            loads(&dumps_bools(&[true, false])),
            Some(PickleValue::List(vec![
                PickleValue::Bool(true),
                PickleValue::Bool(false)
            ]))
        );
        let Some(PickleValue::Float(nan)) = loads(&dumps_float(f64::NAN)) else {
            panic!("not a float")
        };
        assert_eq!(nan.to_bits(), f64::NAN.to_bits());
    }

    #[test]
    fn reads_what_python_writes() {
        // pickle.dumps([], 5) and pickle.dumps(['ab', 'c'], 5) from CPython 3.11.
        assert_eq!(loads(b"\x80\x05]\x94."), Some(PickleValue::List(vec![])));
        let two =
            b"\x80\x05\x95\x0e\x00\x00\x00\x00\x00\x00\x00]\x94(\x8c\x02ab\x94\x8c\x01c\x94e.";
        assert_eq!(
            loads(two),
            Some(PickleValue::List(vec![
                PickleValue::Str("ab".into()),
                PickleValue::Str("c".into())
            ]))
        );
        // pickle.dumps([3], 5): a single APPEND.
        assert_eq!(
            loads(b"\x80\x05\x95\x06\x00\x00\x00\x00\x00\x00\x00]\x94K\x03a."),
            Some(PickleValue::List(vec![PickleValue::Int(3)]))
        );
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(loads(b""), None);
        assert_eq!(loads(b"\x80\x05}\x94."), None); // a dict: unsupported
        assert_eq!(loads(&[0u8; 16]), None);
        assert_eq!(loads(b"\x80\x02](J\x01\x00"), None); // truncated
    }
}
