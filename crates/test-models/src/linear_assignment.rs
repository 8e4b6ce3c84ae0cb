//! Maximum-weight assignment (the Hungarian method with potentials), as `scipy.optimize.
//! linear_sum_assignment` on negated weights: used for one-to-one instance matching.

/// The assignment of rows to columns (each at most once, `min(rows, cols)` pairs) that maximises
/// the sum of `weights` (row-major, `rows x cols`). Pairs are `(row, col)`, ascending row.
pub(crate) fn max_weight_assignment(
    weights: &[f64],
    rows: usize,
    cols: usize,
) -> Vec<(usize, usize)> {
    assert_eq!(weights.len(), rows * cols, "weights must be rows x cols");
    if rows == 0 || cols == 0 {
        return Vec::new();
    }
    // the method below needs n <= m: transpose when there are more rows than columns
    let transposed = rows > cols;
    let (n, m) = if transposed {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let cost = |i: usize, j: usize| -> f64 {
        let w = if transposed {
            weights[j * cols + i]
        } else {
            weights[i * cols + j]
        };
        -w
    };
    // 1-based potentials u (rows), v (columns); p[j] = row matched to column j (0 = none)
    let mut u = vec![0.0f64; n + 1];
    let mut v = vec![0.0f64; m + 1];
    let mut p = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0;
            for j in 1..=m {
                if !used[j] {
                    let cur = cost(i0 - 1, j - 1) - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut pairs: Vec<(usize, usize)> = (1..=m)
        .filter(|&j| p[j] != 0)
        .map(|j| {
            if transposed {
                (j - 1, p[j] - 1)
            } else {
                (p[j] - 1, j - 1)
            }
        })
        .collect();
    pairs.sort_unstable();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Best total over all injective maps of the smaller side, by enumeration.
    fn brute(w: &[f64], rows: usize, cols: usize) -> f64 {
        fn go(w: &[f64], rows: usize, cols: usize, i: usize, used: &mut Vec<bool>) -> f64 {
            if i == rows {
                return 0.0;
            }
            // row i may stay unassigned only when rows > cols
            let mut best = if rows > cols {
                go(w, rows, cols, i + 1, used)
            } else {
                f64::NEG_INFINITY
            };
            for j in 0..cols {
                if !used[j] {
                    used[j] = true;
                    best = best.max(w[i * cols + j] + go(w, rows, cols, i + 1, used));
                    used[j] = false;
                }
            }
            best
        }
        go(w, rows, cols, 0, &mut vec![false; cols])
    }

    #[test]
    fn optimal_on_small_matrices() {
        let mut seed = 12345u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) % 1000) as f64 / 1000.0
        };
        for rows in 1..=5 {
            for cols in 1..=5 {
                for _ in 0..20 {
                    let w: Vec<f64> = (0..rows * cols)
                        .map(|_| {
                            let x = next();
                            if x < 0.4 { 0.0 } else { x }
                        })
                        .collect();
                    let pairs = max_weight_assignment(&w, rows, cols);
                    assert_eq!(pairs.len(), rows.min(cols));
                    let total: f64 = pairs.iter().map(|&(i, j)| w[i * cols + j]).sum();
                    assert!((total - brute(&w, rows, cols)).abs() < 1e-9, "{w:?}");
                }
            }
        }
    }

    #[test]
    fn prefers_two_matches_over_one_greedy() {
        // greedy takes (0, 0) = 0.43 and leaves row 1 unmatched; optimum is 0.40 + 0.25
        let w = [0.43, 0.40, 0.25, 0.0];
        assert_eq!(max_weight_assignment(&w, 2, 2), [(0, 1), (1, 0)]);
        assert!(max_weight_assignment(&[], 0, 3).is_empty());
    }
}
