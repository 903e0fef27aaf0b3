//! The training set: one feature row and one target per structure, append-only,
//! so a worker's copy is brought up to date with only the rows added since.

use super::GprError;

/// Feature rows (contiguous, row-major) and targets `E − E_prior` (not centred:
/// the mean changes as rows are added and is taken at training time).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawTrainingData")]
pub struct TrainingData {
    n_features: usize,
    x: Vec<f64>,
    targets: Vec<f64>,
}

/// The serialized form, checked before it becomes a [`TrainingData`].
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrainingData {
    n_features: usize,
    x: Vec<f64>,
    targets: Vec<f64>,
}

impl TryFrom<RawTrainingData> for TrainingData {
    type Error = GprError;
    fn try_from(raw: RawTrainingData) -> Result<Self, GprError> {
        let mut data = TrainingData::new(raw.n_features);
        data.append(&TrainingRows {
            start: 0,
            n_features: raw.n_features,
            x: raw.x,
            targets: raw.targets,
        })?;
        Ok(data)
    }
}

/// Rows `start..start + targets.len()` of a [`TrainingData`]: what travels to a
/// worker whose copy holds the first `start` rows.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingRows {
    /// Index of the first row.
    pub start: usize,
    /// Features per row.
    pub n_features: usize,
    /// The rows' features, row-major.
    pub x: Vec<f64>,
    /// The rows' targets.
    pub targets: Vec<f64>,
}

impl TrainingData {
    /// An empty set of rows of `n_features` features.
    pub fn new(n_features: usize) -> Self {
        TrainingData {
            n_features,
            x: Vec::new(),
            targets: Vec::new(),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Features per row.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// All features, row-major.
    pub fn x(&self) -> &[f64] {
        &self.x
    }

    /// Row `i`'s features.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.x[i * self.n_features..(i + 1) * self.n_features]
    }

    /// The targets, one per row.
    pub fn targets(&self) -> &[f64] {
        &self.targets
    }

    /// Appends one row.
    pub fn push(&mut self, features: &[f64], target: f64) -> Result<(), GprError> {
        check_row(self.n_features, self.len(), features, target)?;
        self.x.extend_from_slice(features);
        self.targets.push(target);
        Ok(())
    }

    /// The rows from `start` on, to bring a copy holding `start` rows up to date.
    pub fn rows_since(&self, start: usize) -> TrainingRows {
        let start = start.min(self.len());
        TrainingRows {
            start,
            n_features: self.n_features,
            x: self.x[start * self.n_features..].to_vec(),
            targets: self.targets[start..].to_vec(),
        }
    }

    /// Appends rows made by [`TrainingData::rows_since`] on the original: they
    /// must start where this copy ends. Nothing is changed on error.
    pub fn append(&mut self, rows: &TrainingRows) -> Result<(), GprError> {
        if rows.start != self.len() || rows.n_features != self.n_features {
            return Err(GprError::RowsMismatch {
                start: rows.start,
                n_features: rows.n_features,
                len: self.len(),
                expected_features: self.n_features,
            });
        }
        if rows.x.len() != rows.targets.len() * rows.n_features {
            return Err(GprError::RowLength {
                row: rows.start,
                got: rows.x.len(),
                expected: rows.targets.len() * rows.n_features,
            });
        }
        for (k, (f, &t)) in rows
            .x
            .chunks_exact(self.n_features.max(1))
            .zip(&rows.targets)
            .enumerate()
        {
            check_row(self.n_features, rows.start + k, f, t)?;
        }
        self.x.extend_from_slice(&rows.x);
        self.targets.extend_from_slice(&rows.targets);
        Ok(())
    }

    /// Serialized size of the rows (features and target), in bytes per row.
    pub fn bytes_per_row(&self) -> usize {
        8 * (self.n_features + 1)
    }
}

fn check_row(n_features: usize, row: usize, features: &[f64], target: f64) -> Result<(), GprError> {
    if features.len() != n_features {
        return Err(GprError::RowLength {
            row,
            got: features.len(),
            expected: n_features,
        });
    }
    if !target.is_finite() || features.iter().any(|v| !v.is_finite()) {
        return Err(GprError::NonFinite { row });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rows_since_then_append_reproduces_the_original() {
        let mut a = TrainingData::new(2);
        a.push(&[1.0, 2.0], 0.5).unwrap();
        let mut copy = a.clone();
        a.push(&[3.0, 4.0], -1.0).unwrap();
        a.push(&[5.0, 6.0], 2.0).unwrap();
        let rows = a.rows_since(copy.len());
        assert_eq!(rows.start, 1);
        copy.append(&rows).unwrap();
        assert_eq!(copy, a);
        // Out of order or of the wrong width: refused, nothing changed.
        assert!(copy.append(&rows).is_err());
        assert_eq!(copy, a);
        let mut wrong = TrainingData::new(3);
        assert!(wrong.append(&TrainingData::new(2).rows_since(0)).is_err());
    }

    #[test]
    fn bad_rows_are_refused() {
        let mut a = TrainingData::new(2);
        assert!(matches!(
            a.push(&[1.0], 0.0),
            Err(GprError::RowLength { .. })
        ));
        assert!(matches!(
            a.push(&[1.0, f64::NAN], 0.0),
            Err(GprError::NonFinite { row: 0 })
        ));
        assert!(matches!(
            a.push(&[1.0, 1.0], f64::INFINITY),
            Err(GprError::NonFinite { row: 0 })
        ));
        assert!(a.is_empty());
    }

    #[test]
    fn deserialization_checks_the_shape() {
        let mut a = TrainingData::new(2);
        a.push(&[1.0, 2.0], 0.5).unwrap();
        let bytes = rmp_serde::to_vec(&a).unwrap();
        assert_eq!(rmp_serde::from_slice::<TrainingData>(&bytes).unwrap(), a);
        let bad = RawBad {
            n_features: 3,
            x: vec![1.0, 2.0],
            targets: vec![0.5],
        };
        assert!(rmp_serde::from_slice::<TrainingData>(&rmp_serde::to_vec(&bad).unwrap()).is_err());
    }

    #[derive(serde::Serialize)]
    struct RawBad {
        n_features: usize,
        x: Vec<f64>,
        targets: Vec<f64>,
    }
}
