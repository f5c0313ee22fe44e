//! Population stability index and Pearson's χ² test of independence: do two
//! windows spread over the same bins or categories in the same proportions?

use serde::Serialize;

use super::{Result, StatsError, chi_square_sf};

/// A bin empty in one window would make PSI infinite; its share is taken as
/// this instead (the usual convention in credit-scoring practice, where PSI
/// comes from).
pub const PSI_EMPTY_SHARE: f64 = 1e-4;

/// `PSI = Σ (cᵢ − bᵢ)·ln(cᵢ/bᵢ)` over the shares `bᵢ`, `cᵢ` of each bin in
/// the baseline and current windows (Yurdakul 2018). Bins empty in both are
/// skipped; a share of 0 in one counts as [`PSI_EMPTY_SHARE`]. Conventions:
/// below 0.1 stable, 0.1–0.25 moderate shift, above 0.25 major shift.
///
/// Errors: `InvalidArgument` if the slices differ in length; `NotEnoughData`
/// if either window is empty.
pub fn population_stability_index(baseline: &[u64], current: &[u64]) -> Result<f64> {
    if baseline.len() != current.len() {
        return Err(StatsError::InvalidArgument("the same bins in both windows"));
    }
    let total_b: u64 = baseline.iter().sum();
    let total_c: u64 = current.iter().sum();
    if total_b == 0 || total_c == 0 {
        return Err(StatsError::NotEnoughData("both windows need a value"));
    }
    let share = |count: u64, total: u64| (count as f64 / total as f64).max(PSI_EMPTY_SHARE);
    Ok(baseline
        .iter()
        .zip(current)
        .filter(|(b, c)| **b + **c > 0)
        .map(|(&b, &c)| {
            let (b, c) = (share(b, total_b), share(c, total_c));
            (c - b) * (c / b).ln()
        })
        .sum())
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChiSquareIndependence {
    pub statistic: f64,
    pub df: u64,
    pub p_value: f64,
}

/// Pearson's χ² test of independence on a contingency table (one row per
/// window, one column per category), as
/// `scipy.stats.chi2_contingency(table, correction=False)`: no Yates
/// correction, so a 2×2 table gives the plain Pearson statistic. Columns
/// empty in every row are dropped (no category, no degree of freedom).
///
/// Errors: `InvalidArgument` for rows of different lengths; `NotEnoughData`
/// for fewer than two non-empty rows or columns; `Overflow` if the counts do
/// not fit in a u64 sum.
pub fn chi_square_independence(table: &[Vec<u64>]) -> Result<ChiSquareIndependence> {
    let width = table.first().map_or(0, Vec::len);
    if table.iter().any(|row| row.len() != width) {
        return Err(StatsError::InvalidArgument(
            "every row needs the same columns",
        ));
    }
    let mut column_totals = vec![0u64; width];
    let mut row_totals = Vec::with_capacity(table.len());
    for row in table {
        let mut total = 0u64;
        for (column, &count) in row.iter().enumerate() {
            column_totals[column] = super::add_counts(column_totals[column], count)?;
            total = super::add_counts(total, count)?;
        }
        row_totals.push(total);
    }
    let columns: Vec<usize> = (0..width).filter(|&c| column_totals[c] > 0).collect();
    let rows: Vec<usize> = (0..table.len()).filter(|&r| row_totals[r] > 0).collect();
    if columns.len() < 2 || rows.len() < 2 {
        return Err(StatsError::NotEnoughData("two non-empty rows and columns"));
    }
    let grand = rows.iter().map(|&r| row_totals[r] as f64).sum::<f64>();
    let mut statistic = 0.0;
    for &r in &rows {
        for &c in &columns {
            let expected = row_totals[r] as f64 * column_totals[c] as f64 / grand;
            let gap = table[r][c] as f64 - expected;
            statistic += gap * gap / expected;
        }
    }
    let df = ((rows.len() - 1) * (columns.len() - 1)) as u64;
    Ok(ChiSquareIndependence {
        statistic,
        df,
        p_value: chi_square_sf(statistic, df as f64)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_shares_have_psi_zero() {
        assert_eq!(
            population_stability_index(&[10, 20, 30], &[20, 40, 60]).unwrap(),
            0.0
        );
    }

    #[test]
    fn a_bin_empty_in_one_window_uses_the_floor_share() {
        let psi = population_stability_index(&[1, 1], &[1, 0]).unwrap();
        let expected = (1.0 - 0.5) * (1.0f64 / 0.5).ln() + (1e-4 - 0.5) * (1e-4f64 / 0.5).ln();
        assert!((psi - expected).abs() < 1e-12);
    }

    #[test]
    fn tables_without_two_categories_are_refused() {
        assert!(matches!(
            chi_square_independence(&[vec![5, 0], vec![7, 0]]),
            Err(StatsError::NotEnoughData(_))
        ));
    }
}
