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

fn clip8(sum: i64) -> u8 {
    if sum >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if sum <= 0 {
        0
    } else {
        (sum >> PRECISION_BITS) as u8
    }
}

/// `pixels` (RGB, `width` × `height`, row-major) resized to `to_width` × `to_height`.
pub fn bilinear_rgb(pixels: &[u8], (width, height): (usize, usize), (to_width, to_height): (usize, usize)) -> Vec<u8> {
    let horizontal = coefficients(width, to_width);
    let vertical = coefficients(height, to_height);
    // Only the rows the vertical pass reads are resized horizontally.
    let first_row = vertical.bounds.first().map_or(0, |&(first, _)| first);
    let last_row = vertical.bounds.last().map_or(0, |&(first, count)| first + count);
    let rows = last_row - first_row;
    let half = 1i64 << (PRECISION_BITS - 1);
    let mut wide = vec![0u8; to_width * rows * 3];
    if to_width == width {
        wide.copy_from_slice(&pixels[first_row * width * 3..last_row * width * 3]);
    } else {
        for row in 0..rows {
            let source = &pixels[(row + first_row) * width * 3..(row + first_row + 1) * width * 3];
            for (out, &(first, count)) in horizontal.bounds.iter().enumerate() {
                let weights = &horizontal.weights[out * horizontal.taps..out * horizontal.taps + count];
                let mut sums = [half; 3];
                for (tap, &weight) in weights.iter().enumerate() {
                    let pixel = &source[(first + tap) * 3..(first + tap) * 3 + 3];
                    for channel in 0..3 {
                        sums[channel] += i64::from(pixel[channel]) * i64::from(weight);
                    }
                }
                for channel in 0..3 {
                    wide[(row * to_width + out) * 3 + channel] = clip8(sums[channel]);
                }
            }
        }
    }
    if to_height == height {
        return wide;
    }
    let stride = to_width * 3;
    let mut out = vec![0u8; to_width * to_height * 3];
    for (row, &(first, count)) in vertical.bounds.iter().enumerate() {
        let weights = &vertical.weights[row * vertical.taps..row * vertical.taps + count];
        for column in 0..stride {
            let mut sum = half;
            for (tap, &weight) in weights.iter().enumerate() {
                sum += i64::from(wide[(first - first_row + tap) * stride + column]) * i64::from(weight);
            }
            out[row * stride + column] = clip8(sum);
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
    fn enlarging_interpolates_between_neighbours() {
        let pixels = [0u8, 0, 0, 90, 90, 90];
        // 2 → 4: centres at 0.25, 0.75, 1.25, 1.75 of the input; edges clamp to the nearest pixel.
        assert_eq!(bilinear_rgb(&pixels, (2, 1), (4, 1)).chunks(3).map(|pixel| pixel[0]).collect::<Vec<_>>(), [0, 23, 68, 90]);
    }
}
