//! Bilinear resampling of 8-bit RGB images that gives Pillow's `Image.resize(size, Image.BILINEAR)`
//! result value for value, so a model served behind these steps sees what a Python client's preprocessing
//! would have given it. The algorithm is the classic separable convolution (as in Pillow's `Resample.c`):
//! the triangle filter's support widens by the scale factor when shrinking (so it averages, not samples),
//! coefficients are normalised per output pixel and held in 22-bit fixed point, a horizontal pass writes
//! 8-bit rows, then a vertical pass; each sum starts at one half and is clipped to 0–255.

/// Fixed-point precision of the coefficients (what 8-bit values times coefficients fit in `i32` with).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel along one axis: the first input index, how many inputs it reads, and their weights.
struct Coefficients {
    /// Filter taps per output pixel (the longest window).
    taps: usize,
    /// `(first, count)` per output pixel.
    bounds: Vec<(usize, usize)>,
    /// `taps` fixed-point weights per output pixel.
    weights: Vec<i32>,
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// The weights that map `in_size` inputs onto `out_size` outputs.
fn coefficients(in_size: usize, out_size: usize) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale;
    let taps = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * taps];
    let mut window = vec![0f64; taps];
    for out in 0..out_size {
        let center = (out as f64 + 0.5) * scale;
        // Truncation towards zero of a value that is at least -0.5, as the C code's `(int)` cast.
        let first = ((center - support + 0.5) as i64).max(0) as usize;
        let last = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let count = last.saturating_sub(first).min(taps);
        let mut total = 0.0;
        for (index, weight) in window.iter_mut().enumerate().take(count) {
            *weight = triangle((index as f64 + first as f64 - center + 0.5) / filter_scale);
            total += *weight;
        }
        for (index, weight) in window.iter().enumerate().take(count) {
            let normalised = if total != 0.0 { weight / total } else { *weight };
            let fixed = normalised * f64::from(1u32 << PRECISION_BITS);
            weights[out * taps + index] = if normalised < 0.0 { (-0.5 + fixed) as i32 } else { (0.5 + fixed) as i32 };
        }
        bounds.push((first, count));
    }
    Coefficients { taps, bounds, weights }
}

fn clip8(sum: i32) -> u8 {
    // Weights are non-negative and sum to one: a sum of 8-bit values fits in i32 (as in Pillow's C).
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// A part of the resized image: `left`, `top`, `width`, `height` in output pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First output column.
    pub left: usize,
    /// First output row.
    pub top: usize,
    /// Output columns.
    pub width: usize,
    /// Output rows.
    pub height: usize,
}

/// `pixels` (RGB, `width` × `height`, row-major) resized to `to_width` × `to_height`.
pub fn bilinear_rgb(pixels: &[u8], from: (usize, usize), to: (usize, usize)) -> Vec<u8> {
    bilinear_rgb_window(pixels, from, to, Window { left: 0, top: 0, width: to.0, height: to.1 })
}

/// The `window` of `pixels` resized to `to_width` × `to_height`: the same values as resizing the whole
/// image and cutting the window out (each output pixel depends only on its own coefficients), computing
/// only the window (a centre crop after a resize skips the pixels it would throw away).
pub fn bilinear_rgb_window(
    pixels: &[u8],
    (width, height): (usize, usize),
    (to_width, to_height): (usize, usize),
    window: Window,
) -> Vec<u8> {
    let horizontal = coefficients(width, to_width);
    let vertical = coefficients(height, to_height);
    let columns = window.left..window.left + window.width;
    let out_rows = window.top..window.top + window.height;
    // Only the input rows the window's output rows read are resized horizontally.
    let first_row = vertical.bounds[out_rows.clone()].iter().map(|&(first, _)| first).min().unwrap_or(0);
    let last_row = vertical.bounds[out_rows.clone()].iter().map(|&(first, count)| first + count).max().unwrap_or(0);
    let rows = last_row - first_row;
    let half = 1i32 << (PRECISION_BITS - 1);
    let stride = window.width * 3;
    let mut wide = vec![0u8; stride * rows];
    for row in 0..rows {
        let source = &pixels[(row + first_row) * width * 3..(row + first_row + 1) * width * 3];
        let target = &mut wide[row * stride..(row + 1) * stride];
        if to_width == width {
            target.copy_from_slice(&source[window.left * 3..window.left * 3 + stride]);
            continue;
        }
        for (slot, out) in columns.clone().enumerate() {
            let (first, count) = horizontal.bounds[out];
            let weights = &horizontal.weights[out * horizontal.taps..out * horizontal.taps + count];
            let mut sums = [half; 3];
            for (pixel, &weight) in source[first * 3..(first + count) * 3].chunks_exact(3).zip(weights) {
                sums[0] += i32::from(pixel[0]) * weight;
                sums[1] += i32::from(pixel[1]) * weight;
                sums[2] += i32::from(pixel[2]) * weight;
            }
            target[slot * 3] = clip8(sums[0]);
            target[slot * 3 + 1] = clip8(sums[1]);
            target[slot * 3 + 2] = clip8(sums[2]);
        }
    }
    if to_height == height {
        let skip = window.top - first_row;
        return wide[skip * stride..(skip + window.height) * stride].to_vec();
    }
    let mut out = vec![0u8; stride * window.height];
    // Row by row, each tap's input row is added to a whole row of sums at once (contiguous, vectorised).
    let mut sums = vec![0i32; stride];
    for (slot, row) in out_rows.enumerate() {
        let (first, count) = vertical.bounds[row];
        let weights = &vertical.weights[row * vertical.taps..row * vertical.taps + count];
        sums.fill(half);
        for (tap, &weight) in weights.iter().enumerate() {
            let input = &wide[(first - first_row + tap) * stride..(first - first_row + tap + 1) * stride];
            for (sum, &value) in sums.iter_mut().zip(input) {
                *sum += i32::from(value) * weight;
            }
        }
        for (target, &sum) in out[slot * stride..(slot + 1) * stride].iter_mut().zip(&sums) {
            *target = clip8(sum);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halving_averages_pairs_and_a_flat_image_stays_flat() {
        // 4x1 → 2x1: the support is 2 inputs each side, weights 1/8, 3/8, 3/8, 1/8 (clipped at the edge).
        let pixels: Vec<u8> = [0u8, 100, 200, 40].iter().flat_map(|&value| [value, value, value]).collect();
        let out = bilinear_rgb(&pixels, (4, 1), (2, 1));
        // Left: (0·3 + 100·3 + 200·1) / 7 = 71.4; right: (100·1 + 200·3 + 40·3) / 7 = 117.1.
        assert_eq!(out, [71, 71, 71, 117, 117, 117]);
        let flat = vec![77u8; 30 * 20 * 3];
        assert!(bilinear_rgb(&flat, (30, 20), (7, 11)).iter().all(|&value| value == 77));
    }

    #[test]
    fn a_window_equals_the_same_cut_out_of_the_whole_result() {
        let pixels: Vec<u8> = (0..37 * 23 * 3).map(|i| (i * 7 % 251) as u8).collect();
        for to in [(20, 13), (37, 11), (60, 23)] {
            let whole = bilinear_rgb(&pixels, (37, 23), to);
            let window = Window { left: 3, top: 2, width: to.0 - 5, height: to.1 - 4 };
            let part = bilinear_rgb_window(&pixels, (37, 23), to, window);
            let expected: Vec<u8> = (window.top..window.top + window.height)
                .flat_map(|row| whole[(row * to.0 + window.left) * 3..(row * to.0 + window.left + window.width) * 3].to_vec())
                .collect();
            assert_eq!(part, expected, "{to:?}");
        }
    }

    #[test]
    fn enlarging_interpolates_between_neighbours() {
        let pixels = [0u8, 0, 0, 90, 90, 90];
        // 2 → 4: centres at 0.25, 0.75, 1.25, 1.75 of the input; edges clamp to the nearest pixel.
        assert_eq!(bilinear_rgb(&pixels, (2, 1), (4, 1)).chunks(3).map(|pixel| pixel[0]).collect::<Vec<_>>(), [0, 23, 68, 90]);
    }
}
