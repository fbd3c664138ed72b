//! llama.cpp's CPU flash attention as Yunmo builds it (crates/yunmo-backend-gguf/ggml/: Yunmo's kernel for f16
//! KV caches, compiled into ggml-cpu): ggml's own graph API on random queries, f16 keys and values and masks with
//! holes, against a float64 reference; and each query row's result the same to the bit whether it is computed
//! alone or in a batch with other rows, the guarantee that makes a sequence's answer independent of what it is
//! batched with.
//!
//! The tolerance is what f32 arithmetic gives (about 1e-6 here). llama.cpp's own kernel for fewer than 64 query
//! rows accumulates the values in f16 and misses it by two orders of magnitude (about 1e-3), so these tests fail
//! if the build loses Yunmo's kernel.
#![allow(unsafe_code)]

use llama_cpp_sys_2 as sys;

const HEAD: i64 = 64;
const HEADS: i64 = 9;
const KV_HEADS: i64 = 3;

/// One attention problem: `rows` query tokens over `cells` cache cells, per stream.
struct Case {
    rows: i64,
    cells: i64,
    streams: i64,
    seed: u64,
}

/// The inputs, f16 values already rounded (as the cache holds them), and what each query row may see.
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
        let mut seed = self.seed;
        let (rows, cells, streams) = (self.rows, self.cells, self.streams);
        let q = (0..HEAD * rows * HEADS * streams).map(|_| random(&mut seed) * 2.0).collect();
        let k = (0..HEAD * cells * KV_HEADS * streams).map(|_| f16(random(&mut seed) * 2.0)).collect();
        let v = (0..HEAD * cells * KV_HEADS * streams).map(|_| f16(random(&mut seed))).collect();
        // Causal over a prefix of `cells - rows - 40` cached cells, with a hole of other sequences' cells (cells
        // 100..140 hidden) and the padding past the last token hidden, as llama.cpp's masks look.
        let prefix = cells - rows - 40;
        let mut visible = Vec::new();
        for _stream in 0..streams {
            for row in 0..rows {
                visible.extend((0..cells).map(|cell| cell <= prefix + row && !(100..140).contains(&cell)));
            }
        }
        Inputs { q, k, v, visible }
    }
}

/// Runs ggml_flash_attn_ext on the CPU with `threads` threads; returns dst ([HEAD, HEADS, rows, streams]).
fn ggml_attention(case: &Case, inputs: &Inputs, threads: i32) -> Vec<f32> {
    let (rows, cells, streams) = (case.rows, case.cells, case.streams);
    // SAFETY: a ggml context of its own, tensors allocated in it and filled within their sizes, freed at the end.
    unsafe {
        let ctx = sys::ggml_init(sys::ggml_init_params { mem_size: 256 << 20, mem_buffer: std::ptr::null_mut(), no_alloc: false });
        assert!(!ctx.is_null());
        let q = sys::ggml_new_tensor_4d(ctx, sys::GGML_TYPE_F32, HEAD, rows, HEADS, streams);
        let k = sys::ggml_new_tensor_4d(ctx, sys::GGML_TYPE_F16, HEAD, cells, KV_HEADS, streams);
        let v = sys::ggml_new_tensor_4d(ctx, sys::GGML_TYPE_F16, HEAD, cells, KV_HEADS, streams);
        let mask = sys::ggml_new_tensor_4d(ctx, sys::GGML_TYPE_F16, cells, rows, 1, streams);
        std::ptr::copy_nonoverlapping(inputs.q.as_ptr(), (*q).data as *mut f32, inputs.q.len());
        let fill = |tensor: *mut sys::ggml_tensor, values: &[f32]| {
            let out = std::slice::from_raw_parts_mut((*tensor).data as *mut sys::ggml_fp16_t, values.len());
            for (slot, value) in out.iter_mut().zip(values) {
                *slot = sys::ggml_fp32_to_fp16(*value);
            }
        };
        fill(k, &inputs.k);
        fill(v, &inputs.v);
        let masks: Vec<f32> = inputs.visible.iter().map(|seen| if *seen { 0.0 } else { f32::NEG_INFINITY }).collect();
        fill(mask, &masks);
        let out = sys::ggml_flash_attn_ext(ctx, q, k, v, mask, 1.0 / (HEAD as f32).sqrt(), 0.0, 0.0);
        let graph = sys::ggml_new_graph(ctx);
        sys::ggml_build_forward_expand(graph, out);
        assert_eq!(sys::ggml_graph_compute_with_ctx(ctx, graph, threads), sys::GGML_STATUS_SUCCESS);
        let n = (HEAD * HEADS * rows * streams) as usize;
        let result = std::slice::from_raw_parts((*out).data as *const f32, n).to_vec();
        sys::ggml_free(ctx);
        result
    }
}

/// Softmax attention in float64, laid out as ggml's dst.
fn reference(case: &Case, inputs: &Inputs) -> Vec<f32> {
    let (rows, cells) = (case.rows as usize, case.cells as usize);
    let (d, heads, kv_heads) = (HEAD as usize, HEADS as usize, KV_HEADS as usize);
    let mut out = vec![0.0f32; d * heads * rows * case.streams as usize];
    for stream in 0..case.streams as usize {
        for row in 0..rows {
            for head in 0..heads {
                let kv = head / (heads / kv_heads);
                let q = &inputs.q[((stream * heads + head) * rows + row) * d..][..d];
                let seen = &inputs.visible[(stream * rows + row) * cells..][..cells];
                let cell_row = |values: &[f32], cell: usize| values[((stream * kv_heads + kv) * cells + cell) * d..][..d].to_vec();
                let scores: Vec<(usize, f64)> = (0..cells)
                    .filter(|cell| seen[*cell])
                    .map(|cell| {
                        let key = cell_row(&inputs.k, cell);
                        (cell, q.iter().zip(&key).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() / (d as f64).sqrt())
                    })
                    .collect();
                let max = scores.iter().map(|(_, s)| *s).fold(f64::NEG_INFINITY, f64::max);
                let total: f64 = scores.iter().map(|(_, s)| (s - max).exp()).sum();
                let dst = &mut out[((stream * rows + row) * heads + head) * d..][..d];
                for (cell, score) in &scores {
                    let weight = (score - max).exp() / total;
                    for (slot, value) in dst.iter_mut().zip(cell_row(&inputs.v, *cell)) {
                        *slot += (weight * value as f64) as f32;
                    }
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
    // Rows: a decode step, a short suffix after a cached prefix, a prefill chunk; cells: one padded view of 256,
    // a long cache (with llama.cpp's split-KV decode path for one row), a length that is no multiple of the tile.
    for (rows, cells, streams) in [(1, 256, 1), (1, 768, 1), (14, 768, 1), (3, 300, 2), (64, 512, 1), (70, 1000, 1)] {
        let case = Case { rows, cells, streams, seed: (rows * 1000 + cells) as u64 };
        let inputs = case.inputs();
        let expected = reference(&case, &inputs);
        for threads in [1, 2, 3] {
            let error = max_error(&ggml_attention(&case, &inputs, threads), &expected);
            eprintln!("rows {rows}, cells {cells}, streams {streams}, {threads} threads: max error {error:e}");
            assert!(error < 5e-6, "rows {rows}, cells {cells}, streams {streams}, {threads} threads: max error {error:e}");
        }
    }
}

#[test]
fn a_query_row_gets_the_same_bits_alone_as_in_a_batch() {
    let batch = Case { rows: 14, cells: 768, streams: 1, seed: 7 };
    let inputs = batch.inputs();
    let together = ggml_attention(&batch, &inputs, 2);
    let row_len = (HEAD * HEADS) as usize;
    for row in 0..batch.rows as usize {
        let alone = Case { rows: 1, ..batch };
        let cells = batch.cells as usize;
        let single = Inputs {
            q: (0..HEADS as usize)
                .flat_map(|head| inputs.q[(head * batch.rows as usize + row) * HEAD as usize..][..HEAD as usize].to_vec())
                .collect(),
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
