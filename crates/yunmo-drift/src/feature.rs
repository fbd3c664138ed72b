//! One watched feature: what its baseline collects, how it is frozen into bins, and how a window's values
//! are counted into the same bins.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Values of one feature in one observation.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Numbers (one per row).
    Numeric(Vec<f64>),
    /// Categories (one per row).
    Categorical(Vec<String>),
    /// Vectors (one per row: embeddings).
    Vectors(Vec<Vec<f64>>),
}

impl Values {
    /// How many rows.
    pub fn len(&self) -> usize {
        match self {
            Values::Numeric(values) => values.len(),
            Values::Categorical(values) => values.len(),
            Values::Vectors(values) => values.len(),
        }
    }

    /// Whether it holds no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A baseline while it collects.
#[derive(Debug, Clone)]
pub enum Collecting {
    /// Every value, to take quantiles from.
    Numeric(Vec<f64>),
    /// Counts by value.
    Categorical(HashMap<String, u64>),
    /// Running sum of vectors.
    Vector { sum: Vec<f64>, count: u64 },
}

/// A frozen baseline: the bins and the baseline's counts in them (stored as JSON, so that replicas share it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Frozen {
    /// Quantile edges within `[min, max]`; bins: below `min`, one per gap between edges, above `max`, non-finite.
    Numeric { edges: Vec<f64>, min: f64, max: f64, counts: Vec<u64> },
    /// The most frequent values, then "other".
    Categorical { values: Vec<String>, counts: Vec<u64> },
    /// The mean vector.
    Vector { mean: Vec<f64>, count: u64 },
}

/// A window's tallies for one feature, in the frozen baseline's bins.
#[derive(Debug, Clone, PartialEq)]
pub enum Tally {
    /// Counts per bin.
    Counts(Vec<u64>),
    /// Running sum of vectors.
    Vector { sum: Vec<f64>, count: u64 },
}

impl Tally {
    /// Rows counted.
    pub fn count(&self) -> u64 {
        match self {
            Tally::Counts(counts) => counts.iter().sum(),
            Tally::Vector { count, .. } => *count,
        }
    }
}

impl Collecting {
    /// An empty collector for values like `values`.
    pub fn for_values(values: &Values) -> Collecting {
        match values {
            Values::Numeric(_) => Collecting::Numeric(Vec::new()),
            Values::Categorical(_) => Collecting::Categorical(HashMap::new()),
            Values::Vectors(_) => Collecting::Vector { sum: Vec::new(), count: 0 },
        }
    }

    /// Adds `values` (of the same kind; others are ignored).
    pub fn add(&mut self, values: &Values) {
        match (self, values) {
            (Collecting::Numeric(all), Values::Numeric(new)) => all.extend_from_slice(new),
            (Collecting::Categorical(counts), Values::Categorical(new)) => {
                for value in new {
                    *counts.entry(value.clone()).or_default() += 1;
                }
            }
            (Collecting::Vector { sum, count }, Values::Vectors(new)) => add_vectors(sum, count, new),
            _ => {}
        }
    }

    /// Freezes the baseline: `bins` quantile bins for numbers, the `top_values` most frequent categories.
    pub fn freeze(self, bins: usize, top_values: usize) -> Frozen {
        match self {
            Collecting::Numeric(values) => freeze_numeric(values, bins),
            Collecting::Categorical(counts) => {
                let mut ranked: Vec<(String, u64)> = counts.into_iter().collect();
                ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                let other: u64 = ranked.iter().skip(top_values).map(|(_, count)| count).sum();
                ranked.truncate(top_values);
                let mut tallies: Vec<u64> = ranked.iter().map(|(_, count)| *count).collect();
                tallies.push(other);
                Frozen::Categorical { values: ranked.into_iter().map(|(value, _)| value).collect(), counts: tallies }
            }
            Collecting::Vector { sum, count } => {
                Frozen::Vector { mean: sum.iter().map(|total| total / count.max(1) as f64).collect(), count }
            }
        }
    }
}

fn add_vectors(sum: &mut Vec<f64>, count: &mut u64, new: &[Vec<f64>]) {
    for vector in new {
        if sum.is_empty() {
            sum.resize(vector.len(), 0.0);
        }
        if vector.len() != sum.len() {
            continue;
        }
        for (total, value) in sum.iter_mut().zip(vector) {
            *total += value;
        }
        *count += 1;
    }
}

fn freeze_numeric(mut values: Vec<f64>, bins: usize) -> Frozen {
    let non_finite = values.iter().filter(|value| !value.is_finite()).count() as u64;
    values.retain(|value| value.is_finite());
    values.sort_by(f64::total_cmp);
    let (min, max) = (values.first().copied().unwrap_or(0.0), values.last().copied().unwrap_or(0.0));
    let mut edges: Vec<f64> = (1..bins).map(|i| values.get(i * values.len() / bins).copied().unwrap_or(max)).collect();
    edges.dedup();
    // An edge at the minimum would leave the first interior bin empty by construction.
    edges.retain(|edge| *edge > min);
    let mut frozen = Frozen::Numeric { counts: vec![0; edges.len() + 4], edges, min, max };
    let mut counts = vec![0; frozen.bin_count()];
    for value in &values {
        counts[frozen.numeric_bin(*value)] += 1;
    }
    *counts.last_mut().expect("a non-finite bin") += non_finite;
    if let Frozen::Numeric { counts: stored, .. } = &mut frozen {
        *stored = counts;
    }
    frozen
}

impl Frozen {
    /// Bins a window counts into.
    pub fn bin_count(&self) -> usize {
        match self {
            Frozen::Numeric { edges, .. } => edges.len() + 4,
            Frozen::Categorical { values, .. } => values.len() + 1,
            Frozen::Vector { .. } => 0,
        }
    }

    /// The bin of a number: 0 below the baseline's range, then one per gap between edges, then above the
    /// range, then non-finite.
    fn numeric_bin(&self, value: f64) -> usize {
        let Frozen::Numeric { edges, min, max, .. } = self else { return 0 };
        if !value.is_finite() {
            edges.len() + 3
        } else if value < *min {
            0
        } else if value > *max {
            edges.len() + 2
        } else {
            1 + edges.partition_point(|edge| *edge <= value)
        }
    }

    /// An empty tally in these bins.
    pub fn empty_tally(&self) -> Tally {
        match self {
            Frozen::Vector { mean, .. } => Tally::Vector { sum: vec![0.0; mean.len()], count: 0 },
            _ => Tally::Counts(vec![0; self.bin_count()]),
        }
    }

    /// Counts `values` into `tally`.
    pub fn count(&self, tally: &mut Tally, values: &Values) {
        match (self, tally, values) {
            (Frozen::Numeric { .. }, Tally::Counts(counts), Values::Numeric(new)) => {
                for value in new {
                    counts[self.numeric_bin(*value)] += 1;
                }
            }
            (Frozen::Categorical { values: kept, .. }, Tally::Counts(counts), Values::Categorical(new)) => {
                for value in new {
                    let bin = kept.iter().position(|known| known == value).unwrap_or(kept.len());
                    counts[bin] += 1;
                }
            }
            (Frozen::Vector { .. }, Tally::Vector { sum, count }, Values::Vectors(new)) => add_vectors(sum, count, new),
            _ => {}
        }
    }

    /// The baseline's counts per bin (empty for vectors).
    pub fn counts(&self) -> &[u64] {
        match self {
            Frozen::Numeric { counts, .. } | Frozen::Categorical { counts, .. } => counts,
            Frozen::Vector { .. } => &[],
        }
    }

    /// Rows in the baseline.
    pub fn rows(&self) -> u64 {
        match self {
            Frozen::Vector { count, .. } => *count,
            _ => self.counts().iter().sum(),
        }
    }

    /// A label per bin, for people.
    pub fn labels(&self) -> Vec<String> {
        match self {
            Frozen::Numeric { edges, min, max, .. } => {
                let mut bounds = vec![*min];
                bounds.extend(edges);
                bounds.push(*max);
                let mut labels = vec![format!("< {}", short(*min))];
                for pair in bounds.windows(2) {
                    labels.push(format!("[{}, {})", short(pair[0]), short(pair[1])));
                }
                if let Some(last) = labels.last_mut() {
                    *last = last.replacen(')', "]", 1);
                }
                labels.push(format!("> {}", short(*max)));
                labels.push("NaN or infinite".into());
                labels
            }
            Frozen::Categorical { values, .. } => values.iter().cloned().chain(["(other)".to_string()]).collect(),
            Frozen::Vector { .. } => Vec::new(),
        }
    }
}

fn short(value: f64) -> String {
    format!("{:.4}", value).trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frozen_numeric(values: Vec<f64>, bins: usize) -> Frozen {
        let mut collecting = Collecting::Numeric(Vec::new());
        collecting.add(&Values::Numeric(values));
        collecting.freeze(bins, 0)
    }

    #[test]
    fn numeric_baselines_split_at_quantiles_and_count_every_value_once() {
        let frozen = frozen_numeric((0..100).map(f64::from).collect(), 4);
        let Frozen::Numeric { edges, min, max, counts } = &frozen else { panic!() };
        assert_eq!((edges.as_slice(), *min, *max), ([25.0, 50.0, 75.0].as_slice(), 0.0, 99.0));
        assert_eq!(counts, &[0, 25, 25, 25, 25, 0, 0]);
        let mut tally = frozen.empty_tally();
        frozen.count(&mut tally, &Values::Numeric(vec![-1.0, 0.0, 24.9, 25.0, 99.0, 99.5, f64::NAN]));
        assert_eq!(tally, Tally::Counts(vec![1, 2, 1, 0, 1, 1, 1]));
        assert_eq!(frozen.labels().len(), frozen.bin_count());
        assert_eq!(frozen.labels()[4], "[75, 99]");
    }

    #[test]
    fn repeated_values_make_fewer_bins_not_empty_ones() {
        let frozen = frozen_numeric([0.0; 50].into_iter().chain([1.0; 50]).collect(), 10);
        let Frozen::Numeric { edges, counts, .. } = &frozen else { panic!() };
        assert_eq!(edges, &[1.0]);
        assert_eq!(counts, &[0, 50, 50, 0, 0]);
    }

    #[test]
    fn categorical_baselines_keep_the_most_frequent_values_and_other() {
        let mut collecting = Collecting::Categorical(HashMap::new());
        let values = ["a", "b", "a", "c", "a", "b", "d"].map(String::from).to_vec();
        collecting.add(&Values::Categorical(values));
        let frozen = collecting.freeze(0, 2);
        assert_eq!(frozen, Frozen::Categorical { values: vec!["a".into(), "b".into()], counts: vec![3, 2, 2] });
        let mut tally = frozen.empty_tally();
        frozen.count(&mut tally, &Values::Categorical(vec!["z".into(), "b".into()]));
        assert_eq!(tally, Tally::Counts(vec![0, 1, 1]));
    }

    #[test]
    fn vector_baselines_keep_the_mean() {
        let mut collecting = Collecting::Vector { sum: Vec::new(), count: 0 };
        collecting.add(&Values::Vectors(vec![vec![1.0, 0.0], vec![3.0, 2.0], vec![1.0]]));
        assert_eq!(collecting.freeze(0, 0), Frozen::Vector { mean: vec![2.0, 1.0], count: 2 }, "a vector of another length is skipped");
    }
}
