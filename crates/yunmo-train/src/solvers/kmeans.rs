//! k-means clustering: k-means++ seeding, Lloyd iterations until no assignment changes, best of several
//! restarts by inertia (the sum of squared distances of the rows to their nearest centroid).
//!
//! A cluster left empty by an update is moved onto the row farthest from its centroid (a different row for
//! each empty cluster), as scikit-learn relocates empty clusters. Ties go to the lowest cluster index, so
//! results are deterministic for a seed.

use super::matrix::Matrix;
use super::rng::Rng;
use super::{Step, should_report};

/// Settings for [`kmeans`].
#[derive(Clone, Debug)]
pub struct KMeansConfig {
    /// Number of clusters `k` (1 ..= number of rows).
    pub clusters: usize,
    /// The most Lloyd iterations per restart (> 0).
    pub max_iter: u32,
    /// Seed of the k-means++ draws.
    pub seed: u64,
    /// Independent k-means++ starts; the result with the lowest inertia wins (> 0).
    pub restarts: u32,
}

impl Default for KMeansConfig {
    /// 8 clusters, 300 iterations, seed 0, 10 restarts (scikit-learn's classic defaults).
    fn default() -> Self {
        KMeansConfig { clusters: 8, max_iter: 300, seed: 0, restarts: 10 }
    }
}

/// A fitted clustering.
#[derive(Clone, Debug)]
pub struct KMeans {
    /// `k × d`: one centroid per row.
    pub centroids: Matrix,
    /// Sum over the training rows of the squared distance to the nearest centroid.
    pub inertia: f64,
}

impl KMeans {
    /// Checks that `x` is a valid matrix with the centroids' number of columns.
    pub fn check_input(&self, x: &Matrix) -> Result<(), String> {
        x.validate("x")?;
        if x.cols != self.centroids.cols {
            return Err(format!("x has {} columns but the centroids have {}", x.cols, self.centroids.cols));
        }
        Ok(())
    }
}

/// Clusters the rows of `x` into `config.clusters` groups.
///
/// One [`Step`] per restart (every k-th beyond 100), `loss` being the best inertia so far. Fails, naming
/// the field and value, when `clusters` is 0 or more than the rows, when `max_iter` or `restarts` is 0, or
/// when `x` holds a non-finite value.
pub fn kmeans(x: &Matrix, config: &KMeansConfig, progress: &mut dyn FnMut(Step)) -> Result<KMeans, String> {
    x.validate("x")?;
    if config.clusters == 0 {
        return Err("clusters must be > 0, got 0".to_string());
    }
    if config.clusters > x.rows {
        return Err(format!("clusters is {} but x has only {} rows; clusters must be <= the number of rows", config.clusters, x.rows));
    }
    if config.max_iter == 0 {
        return Err("max_iter must be > 0, got 0".to_string());
    }
    if config.restarts == 0 {
        return Err("restarts must be > 0, got 0".to_string());
    }
    let mut rng = Rng::new(config.seed);
    let mut best: Option<KMeans> = None;
    for restart in 1..=config.restarts {
        let seeds = kmeans_plus_plus(x, config.clusters, &mut rng);
        let candidate = lloyd(x, seeds, config.max_iter);
        let improves = match &best {
            Some(incumbent) => candidate.inertia < incumbent.inertia,
            None => true,
        };
        if improves {
            best = Some(candidate);
        }
        if should_report(restart, config.restarts) {
            let best_inertia = best.as_ref().map_or(f64::NAN, |model| model.inertia);
            progress(Step { done: restart, total: config.restarts, loss: best_inertia });
        }
    }
    best.ok_or_else(|| "no restart ran".to_string())
}

/// The nearest centroid of each row of `x` and the squared distance to it (the lowest index on ties).
///
/// Rows must have as many values as the centroids (see [`KMeans::check_input`]); with no centroids every
/// row gets cluster 0 at distance infinity.
pub fn assign(model: &KMeans, x: &Matrix) -> (Vec<usize>, Vec<f64>) {
    (0..x.rows).map(|i| nearest_centroid(x.row(i), &model.centroids)).unzip()
}

/// The squared Euclidean distance between two rows.
fn squared_distance(left: &[f64], right: &[f64]) -> f64 {
    left.iter().zip(right).map(|(a, b)| (a - b) * (a - b)).sum()
}

/// The index of the centroid nearest to `row` and the squared distance to it.
fn nearest_centroid(row: &[f64], centroids: &Matrix) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for cluster in 0..centroids.rows {
        let distance = squared_distance(row, centroids.row(cluster));
        if distance < best.1 {
            best = (cluster, distance);
        }
    }
    best
}

/// k-means++ seeding: the first centroid is a uniformly drawn row, each next one a row drawn with
/// probability proportional to its squared distance to the nearest centroid so far (uniform again when
/// every row already coincides with a centroid).
fn kmeans_plus_plus(x: &Matrix, n_clusters: usize, rng: &mut Rng) -> Matrix {
    let mut centroids = Matrix::zeros(n_clusters, x.cols);
    let first = rng.below(x.rows);
    centroids.row_mut(0).copy_from_slice(x.row(first));
    let mut nearest: Vec<f64> = (0..x.rows).map(|i| squared_distance(x.row(i), x.row(first))).collect();
    for cluster in 1..n_clusters {
        let total: f64 = nearest.iter().sum();
        let chosen = if total > 0.0 && total.is_finite() {
            let target = rng.next_f64() * total;
            let mut cumulative = 0.0;
            let drawn = nearest.iter().position(|&distance| {
                cumulative += distance;
                cumulative > target
            });
            // Rounding can leave the cumulative sum just short of the target: take the last candidate.
            drawn.or_else(|| nearest.iter().rposition(|&distance| distance > 0.0)).unwrap_or(0)
        } else {
            rng.below(x.rows)
        };
        centroids.row_mut(cluster).copy_from_slice(x.row(chosen));
        for (i, nearest_distance) in nearest.iter_mut().enumerate() {
            *nearest_distance = nearest_distance.min(squared_distance(x.row(i), x.row(chosen)));
        }
    }
    centroids
}

/// Lloyd's iterations from `centroids` until no assignment changes, the centroids move less than 1e-4 of
/// the data's mean variance in all (scikit-learn's `tol`), or `max_iter` passes.
fn lloyd(x: &Matrix, mut centroids: Matrix, max_iter: u32) -> KMeans {
    let mut assignments = vec![usize::MAX; x.rows];
    let mut distances = vec![0.0; x.rows];
    let tolerance = 1e-4 * mean_variance(x);
    for _ in 0..max_iter {
        let mut changed = false;
        for (i, (assignment, distance)) in assignments.iter_mut().zip(distances.iter_mut()).enumerate() {
            let (cluster, cluster_distance) = nearest_centroid(x.row(i), &centroids);
            changed |= *assignment != cluster;
            *assignment = cluster;
            *distance = cluster_distance;
        }
        if !changed {
            break;
        }
        let before = centroids.clone();
        update_centroids(x, &assignments, &distances, &mut centroids);
        let shift: f64 = before.data.iter().zip(&centroids.data).map(|(a, b)| (a - b) * (a - b)).sum();
        if shift <= tolerance {
            break;
        }
    }
    let inertia = (0..x.rows).map(|i| nearest_centroid(x.row(i), &centroids).1).sum();
    KMeans { centroids, inertia }
}

/// The mean over columns of each column's variance.
fn mean_variance(x: &Matrix) -> f64 {
    if x.rows == 0 || x.cols == 0 {
        return 0.0;
    }
    let mut total = 0.0;
    for column in 0..x.cols {
        let mean = (0..x.rows).map(|row| x.get(row, column)).sum::<f64>() / x.rows as f64;
        total += (0..x.rows).map(|row| (x.get(row, column) - mean).powi(2)).sum::<f64>() / x.rows as f64;
    }
    total / x.cols as f64
}

/// Moves each centroid to the mean of its rows; an empty cluster goes to the row farthest from its own
/// centroid (`distances`), a different row for each empty cluster.
fn update_centroids(x: &Matrix, assignments: &[usize], distances: &[f64], centroids: &mut Matrix) {
    let n_clusters = centroids.rows;
    let mut sums = Matrix::zeros(n_clusters, x.cols);
    let mut counts = vec![0usize; n_clusters];
    for (i, &cluster) in assignments.iter().enumerate() {
        counts[cluster] += 1;
        for (sum, value) in sums.row_mut(cluster).iter_mut().zip(x.row(i)) {
            *sum += value;
        }
    }
    // Rows farthest from their centroid first, for empty clusters: sorted only when one is empty.
    let mut farthest_first: Vec<usize> = Vec::new();
    if counts.contains(&0) {
        farthest_first = (0..x.rows).collect();
        farthest_first.sort_by(|&a, &b| distances[b].total_cmp(&distances[a]).then(a.cmp(&b)));
    }
    let mut relocations = farthest_first.into_iter();
    #[allow(clippy::needless_range_loop)] // the cluster index addresses counts, centroids and sums alike
    for cluster in 0..n_clusters {
        if counts[cluster] == 0 {
            // There are at least as many rows as clusters, so a row is always left.
            if let Some(row_idx) = relocations.next() {
                centroids.row_mut(cluster).copy_from_slice(x.row(row_idx));
            }
            continue;
        }
        let count = counts[cluster] as f64;
        for (centroid_value, sum) in centroids.row_mut(cluster).iter_mut().zip(sums.row(cluster)) {
            *centroid_value = sum / count;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solvers::test_support::close;

    /// Centroids as rows sorted by their first coordinate, then the second.
    fn sorted_centroids(model: &KMeans) -> Vec<Vec<f64>> {
        let mut rows: Vec<Vec<f64>> = (0..model.centroids.rows).map(|i| model.centroids.row(i).to_vec()).collect();
        rows.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
        rows
    }

    #[test]
    fn finds_two_far_clusters_exactly() {
        // Clusters {(0,0), (0,2)} and {(10,10), (10,12)}: centroids (0,1) and (10,11), each row at
        // squared distance 1, inertia 4.
        let x = Matrix::from_rows(&[vec![0.0, 0.0], vec![10.0, 10.0], vec![0.0, 2.0], vec![10.0, 12.0]]);
        let config = KMeansConfig { clusters: 2, max_iter: 100, seed: 1, restarts: 3 };
        let mut reports = Vec::new();
        let model = kmeans(&x, &config, &mut |step| reports.push(step)).unwrap();
        assert_eq!(sorted_centroids(&model), vec![vec![0.0, 1.0], vec![10.0, 11.0]]);
        assert!(close(model.inertia, 4.0, 1e-12));
        let (clusters, distances) = assign(&model, &x);
        assert_eq!(clusters[0], clusters[2]);
        assert_eq!(clusters[1], clusters[3]);
        assert_ne!(clusters[0], clusters[1]);
        assert_eq!(distances, vec![1.0, 1.0, 1.0, 1.0]);
        assert_eq!(reports.len(), 3);
        assert_eq!(reports.last().map(|step| (step.done, step.total)), Some((3, 3)));
        assert!(close(reports[2].loss, 4.0, 1e-12));
    }

    #[test]
    fn recovers_three_gaussian_blobs() {
        let centres = [(0.0, 0.0), (20.0, 0.0), (0.0, 20.0)];
        let mut rng = Rng::new(8);
        let mut rows = Vec::new();
        for (centre_x, centre_y) in centres {
            for _ in 0..30 {
                rows.push(vec![centre_x + rng.normal(), centre_y + rng.normal()]);
            }
        }
        let x = Matrix::from_rows(&rows);
        let model = kmeans(&x, &KMeansConfig { clusters: 3, max_iter: 100, seed: 2, restarts: 3 }, &mut |_| {}).unwrap();
        // Each centre has a centroid within 1 of it (the mean of 30 unit-variance points is off by ~0.2).
        let found = sorted_centroids(&model);
        for (centre_x, centre_y) in centres {
            let matched = found.iter().any(|centroid| close(centroid[0], centre_x, 1.0) && close(centroid[1], centre_y, 1.0));
            assert!(matched, "no centroid near ({centre_x}, {centre_y}): {found:?}");
        }
        let (clusters, distances) = assign(&model, &x);
        assert!(close(distances.iter().sum::<f64>(), model.inertia, 1e-9));
        for blob in 0..3 {
            assert!(clusters[blob * 30..(blob + 1) * 30].iter().all(|&cluster| cluster == clusters[blob * 30]));
        }
    }

    #[test]
    fn more_restarts_never_do_worse_and_seeds_repeat() {
        let mut rng = Rng::new(4);
        let rows: Vec<Vec<f64>> = (0..60).map(|_| vec![rng.normal() * 3.0, rng.normal()]).collect();
        let x = Matrix::from_rows(&rows);
        let one = kmeans(&x, &KMeansConfig { clusters: 5, max_iter: 50, seed: 9, restarts: 1 }, &mut |_| {}).unwrap();
        let five = kmeans(&x, &KMeansConfig { clusters: 5, max_iter: 50, seed: 9, restarts: 5 }, &mut |_| {}).unwrap();
        // The first restart of both runs is the same draw, so the best of five is at most the first.
        assert!(five.inertia <= one.inertia);
        let again = kmeans(&x, &KMeansConfig { clusters: 5, max_iter: 50, seed: 9, restarts: 5 }, &mut |_| {}).unwrap();
        assert_eq!(five.centroids, again.centroids);
    }

    #[test]
    fn duplicate_rows_and_one_cluster_per_row_work() {
        let duplicates = Matrix::from_rows(&[vec![1.0, 1.0], vec![1.0, 1.0], vec![1.0, 1.0], vec![1.0, 1.0]]);
        let model = kmeans(&duplicates, &KMeansConfig { clusters: 3, max_iter: 10, seed: 0, restarts: 2 }, &mut |_| {}).unwrap();
        assert_eq!(model.inertia, 0.0);
        let x = Matrix::from_rows(&[vec![0.0], vec![5.0], vec![9.0]]);
        let model = kmeans(&x, &KMeansConfig { clusters: 3, max_iter: 10, seed: 0, restarts: 1 }, &mut |_| {}).unwrap();
        assert_eq!(model.inertia, 0.0);
        // One cluster: the centroid is the mean 14/3 and the inertia Σ (x - 14/3)² = 122/3.
        let model = kmeans(&x, &KMeansConfig { clusters: 1, max_iter: 10, seed: 0, restarts: 1 }, &mut |_| {}).unwrap();
        assert!(close(model.centroids.get(0, 0), 14.0 / 3.0, 1e-12));
        assert!(close(model.inertia, 122.0 / 3.0, 1e-9));
    }

    #[test]
    fn bad_config_is_named() {
        let x = Matrix::from_rows(&[vec![0.0], vec![1.0]]);
        let base = KMeansConfig { clusters: 2, max_iter: 10, seed: 0, restarts: 1 };
        let error = kmeans(&x, &KMeansConfig { clusters: 0, ..base.clone() }, &mut |_| {}).unwrap_err();
        assert!(error.contains("clusters"), "{error}");
        let error = kmeans(&x, &KMeansConfig { clusters: 3, ..base.clone() }, &mut |_| {}).unwrap_err();
        assert!(error.contains("clusters is 3") && error.contains("2 rows"), "{error}");
        assert!(kmeans(&x, &KMeansConfig { max_iter: 0, ..base.clone() }, &mut |_| {}).unwrap_err().contains("max_iter"));
        assert!(kmeans(&x, &KMeansConfig { restarts: 0, ..base.clone() }, &mut |_| {}).unwrap_err().contains("restarts"));
        let bad = Matrix::from_rows(&[vec![0.0], vec![f64::INFINITY]]);
        assert!(kmeans(&bad, &base, &mut |_| {}).unwrap_err().contains("x[1, 0]"));
        let model = kmeans(&x, &base, &mut |_| {}).unwrap();
        assert!(model.check_input(&Matrix::zeros(1, 2)).unwrap_err().contains("2 columns"));
    }
}
