//! llama.cpp's CPU flash attention as Yunmo builds it (crates/yunmo-backend-gguf/ggml/: Yunmo's kernel for f16
//! KV caches, compiled into ggml-cpu): ggml's own graph API on random queries, f16 keys and values and masks with
//! holes, laid out as llama.cpp lays them out (permuted views of [head size, heads, tokens] and of the cache's
//! [head size, K/V heads, cells]), against a float64 reference; and each query row's result the same to the bit
//! whether it is computed alone or in a batch with other rows, the guarantee that makes a sequence's answer
//! independent of what it is batched with.
//!
//! The tolerance is what f32 arithmetic gives (about 1e-6 here). llama.cpp's own kernel for fewer than 64 query
//! rows accumulates the values in f16 and misses it by two orders of magnitude (about 1e-3), so these tests fail
//! if the build loses Yunmo's kernel.
#![allow(unsafe_code)]

use llama_cpp_sys_2 as sys;

const HEADS: usize = 9;
const KV_HEADS: usize = 3;

/// One attention problem: `rows` query tokens over `cells` cache cells, per stream.
#[derive(Clone, Copy)]
struct Case {
    head: usize,
    rows: usize,
    cells: usize,
    streams: usize,
    /// Cells past the last token that no row sees (llama.cpp pads the cache view to 256 cells).
    hidden_tail: usize,
    /// No mask at all (every cell seen), as an encoder without a cache computes.
    unmasked: bool,
    /// Row 0 of stream 0 sees no cell (its output is zeros).
    blind_row: bool,
}

const CASE: Case = Case { head: 64, rows: 1, cells: 256, streams: 1, hidden_tail: 40, unmasked: false, blind_row: false };

/// The inputs in llama.cpp's layouts (q: [head, HEADS, rows, streams]; k, v: [head, KV_HEADS, cells, streams]),
/// f16 values already rounded as the cache holds them, and what each query row may see.
struct Inputs {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    visible: Vec<bool>,
}

fn random(seed: &mut u64) -> f32 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

fn f16(x: f32) -> f32 {
    // SAFETY: a pure conversion function of ggml.
    unsafe { sys::ggml_fp16_to_fp32(sys::ggml_fp32_to_fp16(x)) }
}

impl Case {
    fn inputs(&self) -> Inputs {
        let mut seed = (self.head * 100_000 + self.rows * 1000 + self.cells) as u64;
        let (rows, cells, streams) = (self.rows, self.cells, self.streams);
        let q = (0..self.head * HEADS * rows * streams).map(|_| random(&mut seed) * 2.0).collect();
        let k = (0..self.head * KV_HEADS * cells * streams).map(|_| f16(random(&mut seed) * 2.0)).collect();
        let v = (0..self.head * KV_HEADS * cells * streams).map(|_| f16(random(&mut seed))).collect();
        // Causal over the cached prefix, with a hole of other sequences' cells (100..140 hidden) and the tail.
        let prefix = cells - rows - self.hidden_tail;
        let mut visible = Vec::new();
        for stream in 0..streams {
            for row in 0..rows {
                let blind = self.blind_row && stream == 0 && row == 0;
                visible.extend((0..cells).map(|cell| self.unmasked || (!blind && cell <= prefix + row && !(100..140).contains(&cell))));
            }
        }
        Inputs { q, k, v, visible }
    }
}

/// Runs ggml_flash_attn_ext on the CPU with `threads` threads; returns dst ([head, HEADS, rows, streams]).
fn ggml_attention(case: &Case, inputs: &Inputs, threads: i32) -> Vec<f32> {
    let (d, rows, cells, streams) = (case.head as i64, case.rows as i64, case.cells as i64, case.streams as i64);
    // SAFETY: a ggml context of its own, tensors allocated in it and filled within their sizes, freed at the end.
    unsafe {
        let ctx = sys::ggml_init(sys::ggml_init_params { mem_size: 256 << 20, mem_buffer: std::ptr::null_mut(), no_alloc: false });
        assert!(!ctx.is_null());
        let q = sys::ggml_new_tensor_4d(ctx, sys::GGML_TYPE_F32, d, HEADS as i64, rows, streams);
        let k = sys::ggml_new_tensor_4d(ctx, sys::GGML_TYPE_F16, d, KV_HEADS as i64, cells, streams);
        let v = sys::ggml_new_tensor_4d(ctx, sys::GGML_TYPE_F16, d, KV_HEADS as i64, cells, streams);
        std::ptr::copy_nonoverlapping(inputs.q.as_ptr(), (*q).data as *mut f32, inputs.q.len());
        let fill = |tensor: *mut sys::ggml_tensor, values: &[f32]| {
            let out = std::slice::from_raw_parts_mut((*tensor).data as *mut sys::ggml_fp16_t, values.len());
            for (slot, value) in out.iter_mut().zip(values) {
                *slot = sys::ggml_fp32_to_fp16(*value);
            }
        };
        fill(k, &inputs.k);
        fill(v, &inputs.v);
        let mask = if case.unmasked {
            std::ptr::null_mut()
        } else {
            let mask = sys::ggml_new_tensor_4d(ctx, sys::GGML_TYPE_F16, cells, rows, 1, streams);
            let values: Vec<f32> = inputs.visible.iter().map(|seen| if *seen { 0.0 } else { f32::NEG_INFINITY }).collect();
            fill(mask, &values);
            mask
        };
        // llama.cpp's views: [head, rows, heads, streams] and [head, cells, K/V heads, streams].
        let (q, k, v) =
            (sys::ggml_permute(ctx, q, 0, 2, 1, 3), sys::ggml_permute(ctx, k, 0, 2, 1, 3), sys::ggml_permute(ctx, v, 0, 2, 1, 3));
        let out = sys::ggml_flash_attn_ext(ctx, q, k, v, mask, 1.0 / (d as f32).sqrt(), 0.0, 0.0);
        let graph = sys::ggml_new_graph(ctx);
        sys::ggml_build_forward_expand(graph, out);
        assert_eq!(sys::ggml_graph_compute_with_ctx(ctx, graph, threads), sys::GGML_STATUS_SUCCESS);
        let n = case.head * HEADS * case.rows * case.streams;
        let result = std::slice::from_raw_parts((*out).data as *const f32, n).to_vec();
        sys::ggml_free(ctx);
        result
    }
}

/// Softmax attention in float64, laid out as ggml's dst.
fn reference(case: &Case, inputs: &Inputs) -> Vec<f32> {
    let (d, rows, cells) = (case.head, case.rows, case.cells);
    let mut out = vec![0.0f32; d * HEADS * rows * case.streams];
    for stream in 0..case.streams {
        for row in 0..rows {
            for head in 0..HEADS {
                let kv = head / (HEADS / KV_HEADS);
                let q = &inputs.q[((stream * rows + row) * HEADS + head) * d..][..d];
                let seen = &inputs.visible[(stream * rows + row) * cells..][..cells];
                let cell_row = |values: &[f32], cell: usize| values[((stream * cells + cell) * KV_HEADS + kv) * d..][..d].to_vec();
                let scores: Vec<(usize, f64)> = (0..cells)
                    .filter(|cell| seen[*cell])
                    .map(|cell| {
                        let key = cell_row(&inputs.k, cell);
                        (cell, q.iter().zip(&key).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() / (d as f64).sqrt())
                    })
                    .collect();
                let max = scores.iter().map(|(_, s)| *s).fold(f64::NEG_INFINITY, f64::max);
                let total: f64 = scores.iter().map(|(_, s)| (s - max).exp()).sum();
                let mut sums = vec![0.0f64; d];
                for (cell, score) in &scores {
                    let weight = (score - max).exp() / total;
                    for (slot, value) in sums.iter_mut().zip(cell_row(&inputs.v, *cell)) {
                        *slot += weight * value as f64;
                    }
                }
                let dst = &mut out[((stream * rows + row) * HEADS + head) * d..][..d];
                for (slot, sum) in dst.iter_mut().zip(sums) {
                    *slot = sum as f32;
                }
            }
        }
    }
    out
}

fn max_error(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn flash_attention_over_an_f16_cache_matches_float64() {
    let cases = [
        // A decode step over one padded view of 256 cells, and over a long cache (llama.cpp's split-KV path).
        CASE,
        Case { cells: 768, ..CASE },
        // A short suffix after a cached prefix; two streams; prefill chunks of 64 and 70 rows.
        Case { rows: 14, cells: 768, ..CASE },
        Case { rows: 3, cells: 300, streams: 2, ..CASE },
        Case { rows: 64, cells: 512, ..CASE },
        Case { rows: 70, cells: 1000, ..CASE },
        // Cell counts that end in a partial tile, with its cells seen.
        Case { rows: 5, cells: 300, hidden_tail: 0, ..CASE },
        Case { rows: 1, cells: 1000, hidden_tail: 0, ..CASE },
        // Head sizes of larger models (128) and one that is no multiple of 64 (80).
        Case { head: 128, rows: 6, cells: 520, hidden_tail: 0, ..CASE },
        Case { head: 80, rows: 3, cells: 400, ..CASE },
        // No mask; a row that sees nothing.
        Case { rows: 4, cells: 256, unmasked: true, ..CASE },
        Case { rows: 4, cells: 300, blind_row: true, ..CASE },
    ];
    for case in cases {
        let inputs = case.inputs();
        let expected = reference(&case, &inputs);
        for threads in [1, 2, 3] {
            let (head, rows, cells, streams) = (case.head, case.rows, case.cells, case.streams);
            let error = max_error(&ggml_attention(&case, &inputs, threads), &expected);
            eprintln!("head {head}, rows {rows}, cells {cells}, streams {streams}, {threads} threads: max error {error:e}");
            assert!(error < 5e-6, "head {head}, rows {rows}, cells {cells}, streams {streams}, {threads} threads: max error {error:e}");
        }
    }
}

#[test]
fn a_query_row_gets_the_same_bits_alone_as_in_a_batch() {
    let batch = Case { rows: 14, cells: 768, ..CASE };
    let inputs = batch.inputs();
    let together = ggml_attention(&batch, &inputs, 2);
    let (d, cells) = (batch.head, batch.cells);
    let row_len = d * HEADS;
    for row in 0..batch.rows {
        let alone = Case { rows: 1, ..batch };
        let single = Inputs {
            q: inputs.q[row * row_len..][..row_len].to_vec(),
            k: inputs.k.clone(),
            v: inputs.v.clone(),
            visible: inputs.visible[row * cells..][..cells].to_vec(),
        };
        for threads in [1, 2] {
            let result = ggml_attention(&alone, &single, threads);
            assert!(
                result.iter().zip(&together[row * row_len..][..row_len]).all(|(a, b)| a.to_bits() == b.to_bits()),
                "row {row} alone ({threads} threads) differs from the same row in a batch of {}",
                batch.rows
            );
        }
    }
}
