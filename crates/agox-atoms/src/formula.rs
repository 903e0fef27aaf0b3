//! Chemical formulas: parse `"Au8Cu4"`, `"H2O"`, `"CuAu"`, `"(CO2)3"` into element
//! counts in the order written, and expand them into a list of atomic numbers.
//!
//! This is what turns a search setting such as `symbols = "Au8Cu4"` into the atoms
//! to place. The grammar is the one ASE accepts for `Atoms("...")`:
//!
//! ```text
//! formula := [count] part*          a leading count multiplies everything ("2H2O")
//! part    := Symbol [count] | "(" formula ")" [count]
//! Symbol  := uppercase letter followed by at most one lowercase letter (an element)
//! count   := decimal digits, ≥ 1 (absent means 1)
//! ```
//!
//! Symbols are case-sensitive, exactly as in ASE (`"CO"` is carbon + oxygen, `"Co"`
//! is cobalt). Whitespace is not allowed. Counts are kept in the order written and
//! are not merged: `"H2OH"` gives `[(H, 2), (O, 1), (H, 1)]` and expands to
//! `[1, 1, 8, 1]`, the atom order ASE produces.

use crate::elements;

/// Largest total number of atoms a formula may expand to. Guards against a typo
/// such as `"Au80000000000"` allocating gigabytes.
pub const MAX_ATOMS: usize = 10_000_000;

/// Why a formula could not be parsed. Positions are 0-based byte offsets into the
/// formula string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormulaError {
    /// The formula has no atoms at all.
    #[error("empty chemical formula")]
    Empty,
    /// An element-like symbol that is not an element (`"Xx"`, `"Qq"`).
    #[error("formula {formula:?}: unknown element symbol {symbol:?} at position {position}")]
    UnknownSymbol {
        /// The whole formula.
        formula: String,
        /// The offending symbol.
        symbol: String,
        /// Where it starts.
        position: usize,
    },
    /// A character that cannot start a symbol, count or group (`"au"`, `"H-2"`, `"H 2"`).
    #[error(
        "formula {formula:?}: unexpected character {found:?} at position {position} \
         (expected an element symbol starting with a capital letter, a count or a parenthesis)"
    )]
    UnexpectedChar {
        /// The whole formula.
        formula: String,
        /// The offending character.
        found: char,
        /// Where it is.
        position: usize,
    },
    /// A count of zero (`"Au0"`), almost certainly a typo.
    #[error("formula {formula:?}: count at position {position} must be at least 1")]
    ZeroCount {
        /// The whole formula.
        formula: String,
        /// Where the count starts.
        position: usize,
    },
    /// A count too large, or a formula expanding to more than [`MAX_ATOMS`] atoms.
    #[error(
        "formula {formula:?}: too many atoms (count at position {position}; limit {MAX_ATOMS})"
    )]
    TooLarge {
        /// The whole formula.
        formula: String,
        /// Where the count that overflowed starts.
        position: usize,
    },
    /// A `(` without its `)` or a `)` without its `(`.
    #[error("formula {formula:?}: unbalanced parenthesis at position {position}")]
    UnbalancedParen {
        /// The whole formula.
        formula: String,
        /// Where the unmatched parenthesis is.
        position: usize,
    },
}

/// A parsed chemical formula: (atomic number, count) in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formula {
    /// The runs of atoms: element `Z` repeated `count` times, in order.
    pub parts: Vec<(u8, usize)>,
}

impl Formula {
    /// Parse a formula (see the module docs for the grammar).
    pub fn parse(formula: &str) -> Result<Self, FormulaError> {
        let mut parser = Parser {
            text: formula,
            bytes: formula.as_bytes(),
            pos: 0,
        };
        let parts = parser.sequence(0)?;
        if parser.pos < parser.bytes.len() {
            // Only a stray ')' stops the top-level sequence early.
            return Err(FormulaError::UnbalancedParen {
                formula: formula.to_string(),
                position: parser.pos,
            });
        }
        let total = parts
            .iter()
            .try_fold(0usize, |acc, (_, n)| acc.checked_add(*n));
        match total {
            Some(0) => Err(FormulaError::Empty),
            Some(t) if t <= MAX_ATOMS => Ok(Formula { parts }),
            _ => Err(FormulaError::TooLarge {
                formula: formula.to_string(),
                position: 0,
            }),
        }
    }

    /// Total number of atoms.
    pub fn n_atoms(&self) -> usize {
        self.parts.iter().map(|(_, n)| n).sum()
    }

    /// The atomic numbers, one per atom, in order: `"Au2Cu"` → `[79, 79, 29]`.
    pub fn numbers(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.n_atoms());
        for &(z, n) in &self.parts {
            out.resize(out.len() + n, z);
        }
        out
    }

    /// Counts per element, merged, in order of first appearance: `"H2OH"` → `[(1, 3), (8, 1)]`.
    pub fn counts(&self) -> Vec<(u8, usize)> {
        let mut out: Vec<(u8, usize)> = Vec::new();
        for &(z, n) in &self.parts {
            match out.iter_mut().find(|(zz, _)| *zz == z) {
                Some(entry) => entry.1 += n,
                None => out.push((z, n)),
            }
        }
        out
    }
}

impl std::str::FromStr for Formula {
    type Err = FormulaError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Formula::parse(s)
    }
}

/// Parse `formula` and return its atomic numbers in order (`"H2O"` → `[1, 1, 8]`).
pub fn parse_numbers(formula: &str) -> Result<Vec<u8>, FormulaError> {
    Ok(Formula::parse(formula)?.numbers())
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn unexpected(&self) -> FormulaError {
        // `pos` is always on a char boundary: we only ever step over ASCII bytes.
        let found = self.text[self.pos..].chars().next().unwrap_or('\u{fffd}');
        FormulaError::UnexpectedChar {
            formula: self.text.to_string(),
            found,
            position: self.pos,
        }
    }

    /// Optional decimal count; `None` if there are no digits here.
    fn count(&mut self) -> Result<Option<usize>, FormulaError> {
        let start = self.pos;
        let mut value: usize = 0;
        while let Some(b) = self.peek().filter(u8::is_ascii_digit) {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(usize::from(b - b'0')))
                .filter(|v| *v <= MAX_ATOMS)
                .ok_or_else(|| FormulaError::TooLarge {
                    formula: self.text.to_string(),
                    position: start,
                })?;
            self.pos += 1;
        }
        if self.pos == start {
            return Ok(None);
        }
        if value == 0 {
            return Err(FormulaError::ZeroCount {
                formula: self.text.to_string(),
                position: start,
            });
        }
        Ok(Some(value))
    }

    /// A sequence of parts up to the end of input or a `)` (not consumed).
    fn sequence(&mut self, depth: usize) -> Result<Vec<(u8, usize)>, FormulaError> {
        let multiplier = self.count()?.unwrap_or(1);
        let mut parts: Vec<(u8, usize)> = Vec::new();
        while let Some(b) = self.peek() {
            match b {
                b'A'..=b'Z' => {
                    let start = self.pos;
                    self.pos += 1;
                    if self.peek().is_some_and(|c| c.is_ascii_lowercase()) {
                        self.pos += 1;
                    }
                    let sym = &self.text[start..self.pos];
                    let z = elements::number(sym).ok_or_else(|| FormulaError::UnknownSymbol {
                        formula: self.text.to_string(),
                        symbol: sym.to_string(),
                        position: start,
                    })?;
                    let n = self.count()?.unwrap_or(1);
                    parts.push((z, n));
                }
                b'(' => {
                    let open = self.pos;
                    self.pos += 1;
                    let inner = self.sequence(depth + 1)?;
                    if self.peek() != Some(b')') {
                        return Err(FormulaError::UnbalancedParen {
                            formula: self.text.to_string(),
                            position: open,
                        });
                    }
                    self.pos += 1;
                    let n = self.count()?.unwrap_or(1);
                    for _ in 0..n {
                        parts.extend_from_slice(&inner);
                        if parts.len() > MAX_ATOMS {
                            return Err(FormulaError::TooLarge {
                                formula: self.text.to_string(),
                                position: open,
                            });
                        }
                    }
                }
                b')' if depth > 0 => break,
                b')' => {
                    return Err(FormulaError::UnbalancedParen {
                        formula: self.text.to_string(),
                        position: self.pos,
                    })
                }
                _ => return Err(self.unexpected()),
            }
        }
        if multiplier == 1 {
            return Ok(parts);
        }
        let mut out = Vec::with_capacity(parts.len().saturating_mul(multiplier).min(MAX_ATOMS));
        for _ in 0..multiplier {
            out.extend_from_slice(&parts);
            if out.len() > MAX_ATOMS {
                return Err(FormulaError::TooLarge {
                    formula: self.text.to_string(),
                    position: 0,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn simple_formulas() {
        assert_eq!(
            Formula::parse("Au8Cu4").unwrap().parts,
            vec![(79, 8), (29, 4)]
        );
        assert_eq!(parse_numbers("H2O").unwrap(), vec![1, 1, 8]);
        assert_eq!(parse_numbers("CuAu").unwrap(), vec![29, 79]);
        assert_eq!(parse_numbers("Pt").unwrap(), vec![78]);
        assert_eq!(parse_numbers("CO").unwrap(), vec![6, 8]);
        assert_eq!(parse_numbers("Co").unwrap(), vec![27]);
        assert_eq!(parse_numbers("Au12").unwrap().len(), 12);
    }

    #[test]
    fn order_is_kept_and_counts_merge() {
        let f = Formula::parse("H2OH").unwrap();
        assert_eq!(f.numbers(), vec![1, 1, 8, 1]);
        assert_eq!(f.counts(), vec![(1, 3), (8, 1)]);
        assert_eq!(f.n_atoms(), 4);
    }

    #[test]
    fn groups_and_multipliers_match_ase() {
        // ase.Atoms('(CO2)2').numbers == [6, 8, 8, 6, 8, 8]; Atoms('2H2O') == [1,1,8,1,1,8].
        assert_eq!(parse_numbers("(CO2)2").unwrap(), vec![6, 8, 8, 6, 8, 8]);
        assert_eq!(parse_numbers("2H2O").unwrap(), vec![1, 1, 8, 1, 1, 8]);
        assert_eq!(
            parse_numbers("Cu(AuPt2)2").unwrap(),
            vec![29, 79, 78, 78, 79, 78, 78]
        );
    }

    #[test]
    fn errors_name_symbol_and_position() {
        match Formula::parse("Au8Xx4") {
            Err(FormulaError::UnknownSymbol {
                symbol, position, ..
            }) => {
                assert_eq!(symbol, "Xx");
                assert_eq!(position, 3);
            }
            other => panic!("{other:?}"),
        }
        let e = Formula::parse("au8").unwrap_err();
        assert!(matches!(
            e,
            FormulaError::UnexpectedChar {
                found: 'a',
                position: 0,
                ..
            }
        ));
        assert!(e.to_string().contains("position 0"), "{e}");
        assert!(matches!(
            Formula::parse("Au 8"),
            Err(FormulaError::UnexpectedChar {
                found: ' ',
                position: 2,
                ..
            })
        ));
        assert!(matches!(
            Formula::parse("Au0"),
            Err(FormulaError::ZeroCount { position: 2, .. })
        ));
        assert_eq!(Formula::parse(""), Err(FormulaError::Empty));
        assert!(matches!(
            Formula::parse("(Au2"),
            Err(FormulaError::UnbalancedParen { position: 0, .. })
        ));
        assert!(matches!(
            Formula::parse("Au2)"),
            Err(FormulaError::UnbalancedParen { position: 3, .. })
        ));
        assert!(matches!(
            Formula::parse("Au99999999999999999999999"),
            Err(FormulaError::TooLarge { .. })
        ));
        assert!(matches!(
            Formula::parse("(Au1000)1000000"),
            Err(FormulaError::TooLarge { .. })
        ));
        assert!(matches!(
            Formula::parse("Auü"),
            Err(FormulaError::UnexpectedChar { found: 'ü', .. })
        ));
        assert_eq!(Formula::parse("()"), Err(FormulaError::Empty));
    }
}
