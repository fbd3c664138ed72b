// Yunmo's CPU flash-attention kernel for f16 KV caches, compiled into llama.cpp's ggml-cpu (ops.cpp) by
// patch.cmake. llama.cpp's own kernel walks the cache one cell at a time for every query row below 64 rows,
// converting each K and V row from f16 and accumulating in f16; this one converts a tile of 32 cells once for
// all the query rows that share its K/V head (a GQA group times a block of tokens) and does the products,
// the online softmax and the V sums in f32 with AVX2 (docs/benchmarks.md, "A flash-attention kernel for short
// batches"). Each row's arithmetic depends only on its own query, mask and the cache, with tiles at fixed cell
// offsets, never on which rows share a block: a sequence gets the same numbers alone or batched with others.
// Cases it does not cover (other K/V types, ALiBi, soft-capping, sinks, no AVX2) return false and take
// llama.cpp's kernel, and so does one decode row over 512 cells or more when the threads outnumber the K/V
// heads (llama.cpp splits the cells between threads there, as it did before; such a row's bits may then
// differ from the same row in a batch, as they did with llama.cpp's kernels alone).
#pragma once

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

// exp(x) for 8 floats, x <= 0 expected; -inf gives 0. Cephes-style range reduction and polynomial.
static inline __m256 yfa_exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.3f);
    __m256 is_lo = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500E-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
    __m256 x2 = _mm256_mul_ps(x, x);
    y = _mm256_fmadd_ps(y, x2, _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(is_lo, y);
}

static inline float yfa_hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}
static inline float yfa_hsum8(__m256 v) {
    __m128 m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_add_ps(m, _mm_movehl_ps(m, m));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}


static inline void yfa_transpose8(__m256 * r) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20); r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20); r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31); r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31); r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

#define YFA_TILE 32    // KV cells per tile
#define YFA_DMAX 256   // largest head size handled

// One row's running state.
struct yfa_row {
    const float * q;      // DK floats
    const uint16_t * mask; // f16 mask row (n_kv), or NULL
    float M, S;
    float * acc;          // DV floats
};

// One K/V head of the cache: f16 rows of K and V, `n_kv` cells, strides in bytes.
struct yfa_head {
    const char * k;
    size_t nbk1;
    const char * v;
    size_t nbv1;
    int64_t n_kv;
    int DK, DV;
    float scale;
};

// Whether any of the rows sees a cell of the tile [c0, c0 + T).
static bool yfa_tile_seen(const yfa_row * rows, int nrows, int64_t c0, int T) {
    for (int r = 0; r < nrows; ++r) {
        const uint16_t * m = rows[r].mask;
        if (!m) {
            return true;
        }
        for (int j = 0; j < T; ++j) {
            if (m[c0 + j] != 0xFC00) {  // f16 -inf
                return true;
            }
        }
    }
    return false;
}

// Converts the tile [c0, c0 + T) to f32 in scratch: K transposed to [d][cell], V as [cell][d]; cells past the
// end of the cache are zero.
static void yfa_load_tile(const yfa_head & head, int64_t c0, int T, float * scratch) {
    const char * k = head.k;
    const char * v = head.v;
    const size_t nbk1 = head.nbk1, nbv1 = head.nbv1;
    const int DK = head.DK, DV = head.DV;
    float * kt = scratch;
    float * vt = scratch + DK * YFA_TILE;
    if (T == YFA_TILE) {
        for (int j0 = 0; j0 < YFA_TILE; j0 += 8) {
            for (int d = 0; d < DK; d += 8) {
                __m256 r[8];
                for (int i = 0; i < 8; ++i) {
                    r[i] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) ((const uint16_t *) (k + (c0 + j0 + i) * nbk1) + d)));
                }
                yfa_transpose8(r);
                for (int i = 0; i < 8; ++i) _mm256_storeu_ps(kt + (d + i) * YFA_TILE + j0, r[i]);
            }
        }
    } else {
        for (int j = 0; j < YFA_TILE; ++j) {
            const uint16_t * kr = (const uint16_t *) (k + (c0 + j) * nbk1);
            for (int d = 0; d < DK; ++d) kt[d * YFA_TILE + j] = j < T ? _cvtsh_ss(kr[d]) : 0.0f;
        }
    }
    for (int j = 0; j < YFA_TILE; ++j) {
        const uint16_t * vr = (const uint16_t *) (v + (c0 + j) * nbv1);
        for (int d = 0; d < DV; d += 8) {
            _mm256_storeu_ps(vt + j * DV + d, j < T ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (vr + d))) : _mm256_setzero_ps());
        }
    }
}

// Folds the tile [c0, c0 + T) into one row's running maximum, sum and f32 accumulator (online softmax).
static void yfa_row_tile(const yfa_head & head, yfa_row & row, int64_t c0, int T, const float * scratch) {
    const int DK = head.DK, DV = head.DV;
    const float * kt = scratch;
    const float * vt = scratch + DK * YFA_TILE;
    const __m256 sc = _mm256_set1_ps(head.scale);
    __m256 sv[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps() };
    for (int d = 0; d < DK; ++d) {
        const __m256 qd = _mm256_broadcast_ss(row.q + d);
        const float * kd = kt + d * YFA_TILE;
        sv[0] = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kd + 0), sv[0]);
        sv[1] = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kd + 8), sv[1]);
        sv[2] = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kd + 16), sv[2]);
        sv[3] = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kd + 24), sv[3]);
    }
    alignas(32) float s[YFA_TILE];
    // A masked cell is -inf whatever its key holds (another sequence's cell may hold anything), as llama.cpp's
    // kernel skips it.
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    if (T == YFA_TILE && row.mask) {
        for (int i = 0; i < 4; ++i) {
            const __m256 mv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (row.mask + c0 + 8 * i)));
            sv[i] = _mm256_blendv_ps(_mm256_fmadd_ps(sv[i], sc, mv), ninf, _mm256_cmp_ps(mv, ninf, _CMP_EQ_OQ));
        }
    } else {
        for (int i = 0; i < 4; ++i) _mm256_store_ps(s + 8 * i, _mm256_mul_ps(sv[i], sc));
        for (int j = 0; j < YFA_TILE; ++j) {
            const float mv = j < T && row.mask ? _cvtsh_ss(row.mask[c0 + j]) : 0.0f;
            s[j] = j >= T || mv == -INFINITY ? -INFINITY : s[j] + mv;
        }
        for (int i = 0; i < 4; ++i) sv[i] = _mm256_load_ps(s + 8 * i);
    }
    const __m256 mx = _mm256_max_ps(_mm256_max_ps(sv[0], sv[1]), _mm256_max_ps(sv[2], sv[3]));
    const float tmax = yfa_hmax8(mx);
    if (tmax == -INFINITY) {
        return;
    }
    const float Mnew = tmax > row.M ? tmax : row.M;
    const float ms = row.M == -INFINITY ? 0.0f : expf(row.M - Mnew);
    const __m256 mn = _mm256_set1_ps(Mnew);
    __m256 sum = _mm256_setzero_ps();
    for (int i = 0; i < 4; ++i) {
        const __m256 p = yfa_exp8(_mm256_sub_ps(sv[i], mn));
        _mm256_store_ps(s + 8 * i, p);
        sum = _mm256_add_ps(sum, p);
    }
    row.S = row.S * ms + yfa_hsum8(sum);
    row.M = Mnew;
    const __m256 msv = _mm256_set1_ps(ms);
    for (int d = 0; d < DV; d += 64) {
        const int n = DV - d >= 64 ? 8 : (DV - d) / 8;
        __m256 a[8];
        for (int i = 0; i < n; ++i) a[i] = _mm256_mul_ps(_mm256_loadu_ps(row.acc + d + 8 * i), msv);
        for (int j = 0; j < T; ++j) {
            if (s[j] == 0.0f) {
                continue;  // a masked cell: its value, whatever it holds, adds nothing
            }
            const __m256 pj = _mm256_broadcast_ss(s + j);
            const float * vj = vt + j * DV + d;
            for (int i = 0; i < n; ++i) a[i] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8 * i), a[i]);
        }
        for (int i = 0; i < n; ++i) _mm256_storeu_ps(row.acc + d + 8 * i, a[i]);
    }
}

// Attends `nrows` query rows that share one K/V head over cells [0, n_kv). Tiles in which no row sees a cell
// are skipped. Per-row arithmetic depends only on the row's own inputs and the absolute tile boundaries.
// scratch: YFA_TILE * (DK + DV) floats.
static void yfa_attend(const yfa_head & head, yfa_row * rows, int nrows, float * scratch) {
    for (int64_t c0 = 0; c0 < head.n_kv; c0 += YFA_TILE) {
        const int T = (int) (head.n_kv - c0 < YFA_TILE ? head.n_kv - c0 : YFA_TILE);
        if (!yfa_tile_seen(rows, nrows, c0, T)) {
            continue;
        }
        yfa_load_tile(head, c0, T, scratch);
        for (int r = 0; r < nrows; ++r) {
            yfa_row_tile(head, rows[r], c0, T, scratch);
        }
    }
}

// Rows handled in one unit of work at most: a block of tokens times the query heads of one K/V head.
#define YFA_MAX_ROWS 256

static bool yunmo_flash_attn_ext_f16(const ggml_compute_params * params, ggml_tensor * dst) {
    const ggml_tensor * q = dst->src[0];
    const ggml_tensor * k = dst->src[1];
    const ggml_tensor * v = dst->src[2];
    const ggml_tensor * mask = dst->src[3];
    float scale, max_bias, softcap;
    memcpy(&scale, (float *) dst->op_params + 0, sizeof(float));
    memcpy(&max_bias, (float *) dst->op_params + 1, sizeof(float));
    memcpy(&softcap, (float *) dst->op_params + 2, sizeof(float));
    if (params->use_ref || q->type != GGML_TYPE_F32 || k->type != GGML_TYPE_F16 || v->type != GGML_TYPE_F16 ||
        (mask && mask->type != GGML_TYPE_F16) || dst->src[4] != NULL || max_bias != 0.0f || softcap != 0.0f ||
        dst->type != GGML_TYPE_F32) {
        return false;
    }
    GGML_TENSOR_LOCALS(int64_t, neq, q, ne)
    GGML_TENSOR_LOCALS(size_t, nbq, q, nb)
    GGML_TENSOR_LOCALS(int64_t, nek, k, ne)
    GGML_TENSOR_LOCALS(size_t, nbk, k, nb)
    GGML_TENSOR_LOCALS(int64_t, nev, v, ne)
    GGML_TENSOR_LOCALS(size_t, nbv, v, nb)
    GGML_TENSOR_LOCALS(int64_t, ne, dst, ne)
    GGML_TENSOR_LOCALS(size_t, nb, dst, nb)
    const int64_t DK = nek0, DV = nev0, N = neq1;
    const int64_t G = neq2 / nek2;  // query heads per K/V head
    if (DK % 8 != 0 || DV % 8 != 0 || DK > YFA_DMAX || DV > YFA_DMAX || nbq0 != sizeof(float) || nbk0 != 2 || nbv0 != 2 ||
        nb0 != sizeof(float) || neq2 % nek2 != 0 || nek2 != nev2 || nek3 != nev3 || neq3 % nek3 != 0 || G > YFA_MAX_ROWS ||
        nek1 != nev1) {
        return false;
    }
    // The per-thread scratch that ggml_graph_plan reserves for this op (its tiled kernel's share) holds the tiles.
    const size_t stride = GGML_FA_TILE_Q * DK + 2 * GGML_FA_TILE_Q * GGML_FA_TILE_KV + GGML_FA_TILE_Q * DV +
                          GGML_FA_TILE_KV * DV + GGML_FA_TILE_KV * DK;
    if ((size_t) (YFA_TILE * (DK + DV)) > stride) {
        return false;
    }
    const int ith = params->ith, nth = params->nth;
    // Units: (stream, K/V head, block of tokens). Blocks as long as they can be while every thread gets work.
    int64_t tb = 16;
    while (tb * G > YFA_MAX_ROWS) {
        tb /= 2;
    }
    while (tb > 1 && neq3 * nek2 * ((N + tb - 1) / tb) < 2 * nth) {
        tb /= 2;
    }
    const int64_t blocks = (N + tb - 1) / tb;
    const int64_t units = neq3 * nek2 * blocks;
    if (N == 1 && neq3 == 1 && nek1 >= 512 && units < nth) {
        // One decode row over a long cache with more threads than K/V heads: llama.cpp's kernel splits the
        // cells between the threads, where this one would leave threads idle.
        return false;
    }
    if (ith == 0) {
        ggml_threadpool_chunk_set(params->threadpool, nth);
    }
    ggml_barrier(params->threadpool);
    float * scratch = (float *) params->wdata + ith * stride;
    yfa_row rows[YFA_MAX_ROWS];
    for (int64_t unit = ith; unit < units; unit = ggml_threadpool_chunk_add(params->threadpool, 1)) {
        const int64_t iq3 = unit / (nek2 * blocks);
        const int64_t ik2 = (unit / blocks) % nek2;
        const int64_t t0 = (unit % blocks) * tb;
        const int64_t t1 = t0 + tb < N ? t0 + tb : N;
        const int64_t ik3 = iq3 / (neq3 / nek3);
        int nrows = 0;
        for (int64_t iq1 = t0; iq1 < t1; ++iq1) {
            for (int64_t iq2 = ik2 * G; iq2 < (ik2 + 1) * G; ++iq2) {
                float * out = (float *) ((char *) dst->data + (iq3 * ne2 * ne1 + iq2 + iq1 * ne1) * nb1);
                memset(out, 0, DV * sizeof(float));
                const uint16_t * mp = mask ? (const uint16_t *) ((const char *) mask->data + iq1 * mask->nb[1] +
                                                                 (iq2 % mask->ne[2]) * mask->nb[2] + (iq3 % mask->ne[3]) * mask->nb[3])
                                           : NULL;
                rows[nrows++] = { (const float *) ((const char *) q->data + iq1 * nbq1 + iq2 * nbq2 + iq3 * nbq3), mp, -INFINITY, 0.0f, out };
            }
        }
        const yfa_head head = { (const char *) k->data + ik2 * nbk2 + ik3 * nbk3, nbk1,
                                (const char *) v->data + ik2 * nbv2 + ik3 * nbv3, nbv1, nek1, (int) DK, (int) DV, scale };
        yfa_attend(head, rows, nrows, scratch);
        for (int r = 0; r < nrows; ++r) {
            const float inv = rows[r].S == 0.0f ? 0.0f : 1.0f / rows[r].S;
            for (int64_t d = 0; d < DV; ++d) {
                rows[r].acc[d] *= inv;
            }
        }
    }
    return true;
}

#else

static bool yunmo_flash_attn_ext_f16(const ggml_compute_params *, ggml_tensor *) {
    return false;
}

#endif
