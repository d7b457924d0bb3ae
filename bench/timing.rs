//! The timing loop the `cargo bench` targets share (included with `#[path]`).

use std::time::Instant;

/// Median over `batches` of the mean seconds per call of `f` in a batch of
/// `per_batch` calls; `f` gets the call's running index.
pub fn median_secs(batches: usize, per_batch: usize, mut f: impl FnMut(usize)) -> f64 {
    let mut samples: Vec<f64> = (0..batches)
        .map(|b| {
            let t = Instant::now();
            for i in 0..per_batch {
                f(b * per_batch + i);
            }
            t.elapsed().as_secs_f64() / per_batch as f64
        })
        .collect();
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}
