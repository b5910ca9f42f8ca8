/* Body of the fused softmax pass, included once per floating type by _kernels.c with
 *   REAL (float | double), SUFFIX (f32 | f64), EXP, LOG (vectorisable for float, libm for double).
 *
 * One pass over a tile of pixels of one image computes, per pixel, the softmax p over the C
 * channels (stored channel-major in a scratch buffer so that every inner loop runs over pixels and
 * vectorises), then any of:
 *   - the per-class sums TP_c = sum p_c [t = c], SUMP_c = sum p_c, SUMY_c = sum [t = c];
 *   - a per-pixel term (focal or Combo's weighted cross-entropy) and its sum;
 *   - the gradient  p_j (U_j - S) + [j = t] p_t V_t + g_term * d term / d x_j (backward passes,
 *     which recompute the softmax; a pass computes the sums or the gradient, not both),
 *     S = sum_k p_k U_k + p_t V_t  (U = dL/dSUMP, V = dL/dTP of the image),
 * with invalid (ignored) pixels counted nowhere and given a zero gradient.
 */

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SUFFIX)

typedef struct {
    const medloss_pass_args *a;
    int64_t tile_begin, tile_end;
    double *stats; /* [B, 3, C] */
    double term;
    int64_t n_bad;
    int tile;   /* pixels per tile */
    int failed; /* set when the scratch memory could not be allocated */
} FN(job);

static inline void FN(store_streaming)(REAL *dst, const REAL *src, int n) {
    int i = 0;
#if defined(__SSE2__)
    const int width = 16 / (int)sizeof(REAL);
    while (i < n && ((uintptr_t)(dst + i) & 15u)) { dst[i] = src[i]; ++i; }
    for (; i + 4 * width <= n; i += 4 * width) { /* a cache line per iteration */
        STREAM(dst + i, src + i);
        STREAM(dst + i + width, src + i + width);
        STREAM(dst + i + 2 * width, src + i + 2 * width);
        STREAM(dst + i + 3 * width, src + i + 3 * width);
    }
    for (; i + width <= n; i += width) STREAM(dst + i, src + i);
#endif
    for (; i < n; ++i) dst[i] = src[i];
}

/* add the partial sums of one image to its class sums, and clear them */
static void FN(flush_lanes)(FN(job) * job, double (*lanes)[MAX_CLASSES][LANES], int64_t image, int64_t C) {
    if (image >= 0) {
        double *st = job->stats + image * 3 * C;
        for (int k = 0; k < 3; ++k)
            for (int c = 0; c < (int)C; ++c) {
                double sum = 0.0;
                for (int l = 0; l < LANES; ++l) sum += lanes[k][c][l];
                st[k * C + c] += sum;
            }
    }
    memset(lanes, 0, sizeof(double) * 3 * MAX_CLASSES * LANES);
}

typedef struct {
    REAL e[MAX_CLASSES][MAX_TILE], e2[MAX_CLASSES][MAX_TILE], ratio[MAX_CLASSES][MAX_TILE];
    REAL m[MAX_TILE], m2[MAX_TILE], z[MAX_TILE], w[MAX_TILE], pt[MAX_TILE], lt[MAX_TILE], q[MAX_TILE];
    REAL rest2[MAX_TILE], lz[MAX_TILE], pixel[MAX_TILE], on_t[MAX_TILE], slope[MAX_TILE], val[MAX_TILE];
    REAL wce_rp[MAX_TILE], rest_logp[MAX_TILE], tt[MAX_TILE], am[MAX_TILE];
    double lanes[3][MAX_CLASSES][LANES];
    uint8_t ones[MAX_TILE], skip8[MAX_TILE];
} FN(scratch);

static pthread_key_t FN(scratch_key);
static pthread_once_t FN(scratch_once) = PTHREAD_ONCE_INIT;
static int FN(scratch_key_ok);

static void FN(make_scratch_key)(void) { FN(scratch_key_ok) = pthread_key_create(&FN(scratch_key), free) == 0; }

/* This thread's scratch block, allocated on its first call and freed when the thread exits (the
 * key's destructor): PyTorch's OpenMP workers live on, so steady training allocates nothing. */
static FN(scratch) *FN(thread_scratch)(void) {
    pthread_once(&FN(scratch_once), FN(make_scratch_key));
    if (!FN(scratch_key_ok)) return 0;
    FN(scratch) *sc = (FN(scratch) *)pthread_getspecific(FN(scratch_key));
    if (!sc) {
        /* 64-byte aligned (a cache line, an AVX-512 vector), as the compiler aligns stack arrays */
        sc = (FN(scratch) *)aligned_alloc(64, (sizeof(FN(scratch)) + 63) / 64 * 64);
        if (sc && pthread_setspecific(FN(scratch_key), sc) != 0) {
            free(sc);
            sc = 0;
        }
    }
    return sc;
}

MEDLOSS_CLONES static void FN(run_tiles)(FN(job) * job) {
    const medloss_pass_args *a = job->a;
    const int64_t C = a->C, S = a->S;
    const int T = job->tile;
    const int64_t tiles_per_image = (S + T - 1) / T;
    int64_t n_bad = 0;
    const REAL *X = (const REAL *)a->x;
    REAL *G = (REAL *)a->grad;
    /* per-tile scratch (~245 KB for float64: on the stack it overflowed small thread stacks), on the
     * heap, one block per thread reused across calls (FN(thread_scratch)). Channel-major: e = exp then
     * the softmax; for the weighted CE, e2 = exp(x - second max) and ratio = p / (1 - p). Distinct
     * fixed-size members, so the vectoriser sees that they do not alias. */
    FN(scratch) *sc = FN(thread_scratch)();
    if (!sc) {
        job->failed = 1;
        return;
    }
    /* restrict: the scratch rows alias neither each other nor the tensors (a stack array gave the
     * compiler that for free; without it every store here forces reloads, measured 20% slower) */
    REAL (*restrict e)[MAX_TILE] = sc->e, (*restrict e2)[MAX_TILE] = sc->e2, (*restrict ratio)[MAX_TILE] = sc->ratio;
    REAL *restrict m = sc->m, *restrict m2 = sc->m2, *restrict z = sc->z, *restrict w = sc->w;
    REAL *restrict pt = sc->pt, *restrict lt = sc->lt, *restrict q = sc->q, *restrict rest2 = sc->rest2;
    REAL *restrict lz = sc->lz, *restrict pixel = sc->pixel, *restrict on_t = sc->on_t, *restrict slope = sc->slope;
    REAL *restrict val = sc->val, *restrict wce_rp = sc->wce_rp, *restrict rest_logp = sc->rest_logp;
    REAL *restrict tt = sc->tt, *restrict am = sc->am; /* class indices as REAL: compares and selects share a vector type */
    uint8_t *restrict ones = sc->ones, *restrict skip8 = sc->skip8; /* skip8: the byte labels of the tile */
    double (*restrict lanes)[MAX_CLASSES][LANES] = sc->lanes; /* per-image partial class sums */
    int64_t lanes_image = -1;
    memset(lanes, 0, sizeof(double) * 3 * MAX_CLASSES * LANES);
    double term = 0.0;
    const int64_t ignore_index = a->ignore_index, use_ignore = a->use_ignore != 0;

    for (int64_t k = job->tile_begin; k < job->tile_end; ++k) {
        const int64_t tile = k;
        const int64_t b = tile / tiles_per_image;
        const int64_t s0 = (tile % tiles_per_image) * T;
        const int n = (int)((S - s0) < T ? (S - s0) : T);
        const int n_pad = (n + LANES - 1) / LANES * LANES; /* <= T: tiles are whole blocks */
        const REAL *xb = X + b * C * S + s0;
        /* prefetch a few tiles ahead (measured: 4-6 best, +-30% on cold data): the loads land in time,
         * and the hardware prefetchers do not run that far ahead across C + 1 streams */
        if (k + PREFETCH_TILES < job->tile_end) {
            const int64_t ahead = tile + PREFETCH_TILES;
            const int64_t b2 = ahead / tiles_per_image, s2 = (ahead % tiles_per_image) * T;
            const int n2 = (int)((S - s2) < T ? (S - s2) : T);
            const char *x2 = (const char *)(X + b2 * C * S + s2);
            for (int c = 0; c < (int)C; ++c)
                for (int off = 0; off < n2 * (int)sizeof(REAL); off += 64)
                    __builtin_prefetch(x2 + (size_t)c * (size_t)S * sizeof(REAL) + off, 0, 0);
            const char *l2 = a->labels8 ? (const char *)(a->labels8 + b2 * S + s2) : (const char *)(a->t + b2 * S + s2);
            const int label_bytes = a->labels8 ? n2 : n2 * 8;
            for (int off = 0; off < label_bytes; off += 64) __builtin_prefetch(l2 + off, 0, 0);
        }
        /* labels: a pixel counts when its label is in [0, C), not ignore_index and marked valid;
         * out-of-range labels are counted as errors (the caller reports them) */
        if (a->labels8) {
            const uint8_t *lb = a->labels8 + b * S + s0;
#pragma omp simd
            for (int s = 0; s < n; ++s) {
                const int skip = lb[s] == LABEL_SKIP;
                tt[s] = skip ? (REAL)0 : (REAL)lb[s];
                w[s] = skip ? (REAL)0 : (REAL)1;
            }
        } else {
            const int64_t *tb = a->t + b * S + s0;
            const uint8_t *vb = a->valid ? a->valid + b * S + s0 : 0;
            /* branch-free so that it vectorises: an absent mask is replaced by ones, and the
             * byte labels go to the stack first (the vectoriser cannot rule out aliasing otherwise) */
            uint8_t *ob = a->labels8_out ? a->labels8_out + b * S + s0 : 0;
            if (!vb) {
                memset(ones, 1, (size_t)n);
                vb = ones;
            }
#pragma omp simd
            for (int s = 0; s < n; ++s) {
                const int64_t raw = tb[s];
                const int64_t ignored = ((raw == ignore_index) & use_ignore) | (vb[s] == 0);
                const int64_t in_range = (raw >= 0) & (raw < C);
                const int64_t counted = in_range & (ignored ^ 1);
                const int32_t label = counted ? (int32_t)raw : 0;
                tt[s] = (REAL)label;
                w[s] = (REAL)counted;
                /* skipped pixels that are not ignored hold a bad label: LABEL_SKIP - 1 marks them */
                skip8[s] = counted ? (uint8_t)label : (uint8_t)(ignored ? LABEL_SKIP : LABEL_SKIP - 1);
            }
            int bad = 0;
            for (int s = 0; s < n; ++s) bad += skip8[s] == LABEL_SKIP - 1;
            if (bad) {
                n_bad += bad;
                for (int s = 0; s < n; ++s) skip8[s] = skip8[s] == LABEL_SKIP - 1 ? LABEL_SKIP : skip8[s];
            }
            if (ob) memcpy(ob, skip8, (size_t)n);
        }
        /* max over channels (and, for the weighted CE, its channel and the second max) */
#pragma omp simd
        for (int s = 0; s < n; ++s) { m[s] = xb[s]; am[s] = 0; m2[s] = -INFINITY; }
        for (int c = 1; c < (int)C; ++c) {
            const REAL *xc = xb + c * S;
            if (a->term == TERM_WCE) {
#pragma omp simd
                for (int s = 0; s < n; ++s) {
                    const REAL xv = xc[s], mv = m[s], m2v = m2[s];
                    const int gt = xv > mv;
                    const REAL below = xv > m2v ? xv : m2v;
                    m2[s] = gt ? mv : below;
                    am[s] = gt ? (REAL)c : am[s];
                    m[s] = gt ? xv : mv;
                }
            } else {
#pragma omp simd
                for (int s = 0; s < n; ++s) m[s] = xc[s] > m[s] ? xc[s] : m[s];
            }
        }
        /* exponentials and normaliser; x_t - max on the way (log p_t exact for any logit) */
#pragma omp simd
        for (int s = 0; s < n; ++s) { z[s] = 0; lt[s] = 0; rest2[s] = 0; }
        if (a->term == TERM_WCE) {
            /* e_c = exp(x_c - m2) exp(m2 - m) for c != argmax: the softmax of the other classes
             * stays defined when they all underflow against the max */
            for (int c = 0; c < (int)C; ++c) {
                const REAL *xc = xb + c * S;
#pragma omp simd
                for (int s = 0; s < n; ++s) {
                    const REAL d = xc[s] - m2[s];
                    const REAL v = (am[s] == (REAL)c) ? (REAL)0 : EXP(d < 0 ? d : (REAL)0);
                    e2[c][s] = v;
                    rest2[s] += v;
                    lt[s] += (tt[s] == (REAL)c) ? xc[s] - m[s] : (REAL)0;
                }
            }
#pragma omp simd
            for (int s = 0; s < n; ++s) {
                const REAL gap = m2[s] - m[s];
                q[s] = EXP(gap);  /* exp(m2 - m) <= 1 */
                z[s] = (REAL)1 + rest2[s] * q[s];
            }
            if (a->term_value) {
#pragma omp simd
                for (int s = 0; s < n; ++s)
                    rest_logp[s] = (m2[s] - m[s]) + LOG(rest2[s]); /* log of sum of e over the other classes */
            }
            for (int c = 0; c < (int)C; ++c) {
#pragma omp simd
                for (int s = 0; s < n; ++s) e[c][s] = (am[s] == (REAL)c) ? (REAL)1 : e2[c][s] * q[s];
            }
        } else if (a->term == TERM_NONE) {
            for (int c = 0; c < (int)C; ++c) {
                const REAL *xc = xb + c * S;
#pragma omp simd
                for (int s = 0; s < n; ++s) {
                    const REAL v = EXP(xc[s] - m[s]);
                    e[c][s] = v;
                    z[s] += v;
                }
            }
        } else {
            for (int c = 0; c < (int)C; ++c) {
                const REAL *xc = xb + c * S;
#pragma omp simd
                for (int s = 0; s < n; ++s) {
                    const REAL d = xc[s] - m[s];
                    const REAL v = EXP(d);
                    e[c][s] = v;
                    z[s] += v;
                    lt[s] += (tt[s] == (REAL)c) ? d : (REAL)0;
                }
            }
        }
        /* log p_t: for the focal term, and for the value of the weighted CE */
        if (a->term == TERM_FOCAL || (a->term == TERM_WCE && a->term_value)) {
#pragma omp simd
            for (int s = 0; s < n; ++s) {
                lz[s] = LOG(z[s]);
                const REAL l = lt[s] - lz[s];
                lt[s] = l > 0 ? (REAL)0 : l;
            }
        }
#pragma omp simd
        for (int s = 0; s < n; ++s) {
            z[s] = (REAL)1 / z[s];
            pt[s] = 0;
            q[s] = 0;
        }
        for (int s = n; s < n_pad; ++s) { /* padding of the last block: counted nowhere */
            z[s] = 1;
            w[s] = 0;
            tt[s] = -1;
            for (int c = 0; c < (int)C; ++c) e[c][s] = 0;
        }
        /* probabilities; p_t and 1 - p_t as the sum of the other classes (exact near p_t = 1);
         * in the same loop, the class sums (forward) or sum_k p_k U_k and V_t (backward) */
        const double *U = (G && a->u) ? a->u + b * C : 0;
        const double *V = (G && a->v) ? a->v + b * C : 0;
        const int st = a->stats != 0; /* forward passes only (checked by the entry point) */
        if (st && b != lanes_image) {
            FN(flush_lanes)(job, lanes, lanes_image, C);
            lanes_image = b;
        }
        if (G) {
#pragma omp simd
            for (int s = 0; s < n; ++s) { pixel[s] = 0; on_t[s] = 0; }
        }
        for (int c = 0; c < (int)C; ++c) {
            const REAL cc = (REAL)c;
            if (G) {
                const REAL uc = U ? (REAL)U[c] : (REAL)0, vc = V ? (REAL)V[c] : (REAL)0;
                const REAL with_q = a->term == TERM_FOCAL ? (REAL)1 : (REAL)0; /* 1 - p_t: focal only */
#pragma omp simd
                for (int s = 0; s < n; ++s) {
                    const REAL p = e[c][s] * z[s];
                    const int is_c = tt[s] == cc;
                    e[c][s] = p;
                    pt[s] += is_c ? p : (REAL)0;
                    q[s] += is_c ? (REAL)0 : p * with_q;
                    pixel[s] += p * uc;
                    on_t[s] += is_c ? vc : (REAL)0;
                }
            } else if (st) {
                /* class sums in LANES partial sums per class, kept across the tiles of an image and
                 * added up when the image changes: a horizontal sum per tile and class (what an
                 * OpenMP simd reduction does) cost as much as the rest of the loop. The tile is
                 * padded to whole blocks with w = 0, e = 0, z = 1. */
                REAL tpl[LANES], spl[LANES], syl[LANES];
                for (int l = 0; l < LANES; ++l) { tpl[l] = 0; spl[l] = 0; syl[l] = 0; }
                if (a->term == TERM_NONE) { /* the region losses: p_t and 1 - p_t are not needed */
                    for (int blk = 0; blk < n_pad; blk += LANES) {
#pragma omp simd
                        for (int l = 0; l < LANES; ++l) {
                            const int s = blk + l;
                            const REAL p = e[c][s] * z[s]; /* not stored: nothing after this needs it */
                            const REAL wc = tt[s] == cc ? w[s] : (REAL)0;
                            tpl[l] += wc * p;
                            spl[l] += w[s] * p;
                            syl[l] += wc;
                        }
                    }
                } else {
                    for (int blk = 0; blk < n_pad; blk += LANES) {
#pragma omp simd
                        for (int l = 0; l < LANES; ++l) {
                            const int s = blk + l;
                            const REAL p = e[c][s] * z[s];
                            const int is_c = tt[s] == cc;
                            e[c][s] = p;
                            pt[s] += is_c ? p : (REAL)0;
                            q[s] += is_c ? (REAL)0 : p;
                            const REAL wc = is_c ? w[s] : (REAL)0;
                            tpl[l] += wc * p;
                            spl[l] += w[s] * p;
                            syl[l] += wc;
                        }
                    }
                }
#pragma omp simd
                for (int l = 0; l < LANES; ++l) {
                    lanes[0][c][l] += (double)tpl[l];
                    lanes[1][c][l] += (double)spl[l];
                    lanes[2][c][l] += (double)syl[l];
                }
            }
        }
        /* per-pixel term: value and slope (the gradient is slope * (p_j - [j = t]) for focal) */
        if (a->term == TERM_FOCAL) {
#pragma omp simd
            for (int s = 0; s < n; ++s) { slope[s] = 0; val[s] = 0; }
            /* class lookups as selects over the (few) classes: vectorises, unlike a gather */
            for (int c = 0; c < (int)C; ++c) {
                const REAL ac = (REAL)a->term_w[c], gc = (REAL)a->gamma[c];
#pragma omp simd
                for (int s = 0; s < n; ++s) {
                    slope[s] += (tt[s] == (REAL)c) ? ac : (REAL)0;
                    val[s] += (tt[s] == (REAL)c) ? gc : (REAL)0;
                }
            }
            REAL acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int s = 0; s < n; ++s) {
                const REAL alpha = slope[s] * w[s], gamma = val[s], qs = q[s];
                /* near p_t = 1, log p_t and log p_t / (1 - p_t) from their series in q = 1 - p_t */
                /* every branch computed, then selected: selects vectorise, branches do not */
                const int small = qs < (REAL)1e-3;
                const REAL tail = qs * ((REAL)0.5 + qs * ((REAL)1 / 3));
                const REAL l = small ? -qs - qs * tail : lt[s];
                const REAL ratio_direct = lt[s] / (small ? (REAL)1 : qs);
                const REAL ratio = small ? -(REAL)1 - tail : ratio_direct;
                const REAL power = EXP(gamma * LOG(qs));
                const REAL power_or_zero = qs > 0 ? power : (REAL)0;
                const REAL mod = gamma == 0 ? (REAL)1 : power_or_zero;
                const REAL v = -alpha * mod * l;
                slope[s] = alpha * mod * ((REAL)1 - gamma * pt[s] * ratio);
                acc += v;
            }
            term += acc;
        } else if (a->term == TERM_WCE) {
            /* -(w_pos log p_t + w_neg sum_{c != t} log(1 - p_c)); log(1 - p_argmax) from the
             * other classes' log-sum-exp, every other p_c <= 1/2. The value is computed only
             * when asked for (forward), the ratios r_c = p_c / (1 - p_c) only for a gradient. */
            const REAL wpos = (REAL)a->term_w[0], wneg = (REAL)a->term_w[1];
            if (a->term_value) {
                /* one log per pixel: the product of the 1 - p_c <= 1/2 ... 1 of the small classes
                 * stays above 2^-32, and log(1 - p_argmax) is added separately */
#pragma omp simd
                for (int s = 0; s < n; ++s) val[s] = 1;
                for (int c = 0; c < (int)C; ++c) {
                    const REAL cc = (REAL)c;
#pragma omp simd
                    for (int s = 0; s < n; ++s)
                        val[s] *= (tt[s] != cc && am[s] != cc) ? (REAL)1 - e[c][s] : (REAL)1;
                }
                REAL acc = 0;
#pragma omp simd reduction(+ : acc)
                for (int s = 0; s < n; ++s) {
                    const REAL log_big = am[s] != tt[s] ? rest_logp[s] - lz[s] : (REAL)0;
                    acc += -w[s] * (wpos * lt[s] + wneg * (LOG(val[s]) + log_big));
                }
                term += acc;
            }
            if (G) {
#pragma omp simd
                for (int s = 0; s < n; ++s) { wce_rp[s] = 0; slope[s] = (REAL)1 / rest2[s]; }
                for (int c = 0; c < (int)C; ++c) {
                    const REAL cc = (REAL)c;
#pragma omp simd
                    for (int s = 0; s < n; ++s) {
                        const REAL p = e[c][s];
                        const int big = am[s] == cc;
                        const REAL r_any = p / ((REAL)1 - p); /* infinite for a big p: selected away */
                        const REAL r = big ? (REAL)0 : r_any;
                        ratio[c][s] = r;
                        /* R' = sum over c != t, c != argmax of r_c */
                        wce_rp[s] += tt[s] != cc ? r : (REAL)0;
                    }
                }
            }
        }

        if (!G) continue;
        /* gradient (pixel = sum_k p_k U_k and on_t = V_t were accumulated with the probabilities) */
        REAL *gb = G + b * C * S + s0;
        const REAL gt_ = (REAL)a->g_term;
        /* pixel = -S, on_t = p_t V_t (both times the validity weight) */
#pragma omp simd
        for (int s = 0; s < n; ++s) {
            const REAL ptv = pt[s] * on_t[s];
            pixel[s] = -(pixel[s] + ptv) * w[s];
            on_t[s] = ptv * w[s];
        }
        if (a->term == TERM_FOCAL) {
#pragma omp simd
            for (int s = 0; s < n; ++s) {
                const REAL sl = gt_ * slope[s];
                pixel[s] += sl;
                on_t[s] -= sl;
            }
        }
        if (a->term == TERM_WCE) {
            /* d/dx_j of the term: wpos (p_j - [j=t]) - wneg dW/dx_j with
             *   dW/dx_j = p_j R' + [am != t] p_am e2_j / rest2 - [j != t] r_j   (j != am)
             *   dW/dx_am = p_am R' - [am != t] p_am                              */
            const REAL wpos = gt_ * (REAL)a->term_w[0], wneg = gt_ * (REAL)a->term_w[1];
            for (int c = 0; c < (int)C; ++c) {
                const REAL uc = U ? (REAL)U[c] : (REAL)0;
#pragma omp simd
                for (int s = 0; s < n; ++s) {
                    const REAL p = e[c][s];
                    const int is_t = tt[s] == (REAL)c, big = am[s] == (REAL)c, big_not_t = am[s] != tt[s];
                    const REAL pam = z[s];  /* p_argmax = 1 / z; slope holds 1 / rest2 here */
                    REAL dw = p * wce_rp[s];
                    dw += big ? (big_not_t ? -pam : (REAL)0)
                              : (big_not_t ? pam * e2[c][s] * slope[s] : (REAL)0) - (is_t ? (REAL)0 : ratio[c][s]);
                    const REAL term_grad = wpos * (p - (is_t ? (REAL)1 : (REAL)0)) - wneg * dw;
                    e[c][s] = p * (uc * w[s] + pixel[s]) + (is_t ? on_t[s] : (REAL)0) + term_grad * w[s];
                }
            }
        } else {
            for (int c = 0; c < (int)C; ++c) {
                const REAL uc = U ? (REAL)U[c] : (REAL)0;
#pragma omp simd
                for (int s = 0; s < n; ++s)
                    e[c][s] = e[c][s] * (uc * w[s] + pixel[s]) + ((tt[s] == (REAL)c) ? on_t[s] : (REAL)0);
            }
        }
        /* the gradient rows, written past the cache: nothing here reads them again, and a
         * plain store would first read each destination line (1/3 of the pass's traffic) */
        for (int c = 0; c < (int)C; ++c) FN(store_streaming)(gb + c * S, e[c], n);
    }
    if (a->stats) FN(flush_lanes)(job, lanes, lanes_image, C);
    job->term = term;
    job->n_bad = n_bad;
}

/* Jobs are claimed from a shared counter, so every job runs whatever number of threads the
 * runtime actually provides (an OpenMP runtime may give fewer than requested). */
typedef struct {
    FN(job) * jobs;
    int n_jobs;
    int next;
} FN(queue);

static void FN(worker)(void *arg) {
    FN(queue) *q = (FN(queue) *)arg;
    for (;;) {
        const int j = __atomic_fetch_add(&q->next, 1, __ATOMIC_RELAXED);
        if (j >= q->n_jobs) break;
        FN(run_tiles)(&q->jobs[j]);
    }
#if defined(__SSE2__)
    _mm_sfence(); /* streaming stores visible before the thread reports completion */
#endif
}

static void *FN(pthread_worker)(void *arg) {
    FN(worker)(arg);
    return 0;
}

int FN(medloss_softmax_pass)(const medloss_pass_args *a) {
    if (a->C < 2 || a->C > MAX_CLASSES || a->B < 1 || a->S < 1 || (!a->t && !a->labels8)) return 1;
    /* class sums come from forward passes, gradients from backward ones: exactly one of the two */
    if (!a->stats == !a->grad) return 1;
    /* tiles of ~2048 values: the scratch rows stay in L1/L2 and loop overheads stay small */
    int tile = (int)(TILE_VALUES / a->C);
    tile = tile < 64 ? 64 : (tile > MAX_TILE ? MAX_TILE : tile);
    tile -= tile % 16;
    const int64_t tiles = a->B * ((a->S + tile - 1) / tile);
    int n_threads = a->n_threads < 1 ? 1 : a->n_threads;
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    /* a few jobs per thread balance uneven progress; tiny inputs stay on one thread */
    int n_jobs = n_threads == 1 ? 1 : 4 * n_threads;
    if ((int64_t)n_jobs > tiles / 16) n_jobs = (int)(tiles / 16);
    if (n_jobs < 1) n_jobs = 1;
    if (n_threads > n_jobs) n_threads = n_jobs;
    const size_t stats_len = (size_t)(a->B * 3 * a->C);
    FN(job) jobs[4 * MAX_THREADS];
    double *buffers = a->stats ? (double *)calloc(stats_len * (size_t)n_jobs, sizeof(double)) : 0;
    if (a->stats && !buffers) return 2;
    for (int i = 0; i < n_jobs; ++i) {
        jobs[i].a = a;
        jobs[i].tile_begin = tiles * i / n_jobs;
        jobs[i].tile_end = tiles * (i + 1) / n_jobs;
        jobs[i].stats = buffers ? buffers + stats_len * (size_t)i : 0;
        jobs[i].term = 0.0;
        jobs[i].n_bad = 0;
        jobs[i].tile = tile;
        jobs[i].failed = 0;
    }
    FN(queue) queue = {jobs, n_jobs, 0};
    if (n_threads == 1) {
        FN(worker)(&queue);
    } else if (a->gomp_parallel) {
        a->gomp_parallel(FN(worker), &queue, (unsigned)n_threads, 0u);
    } else {
        pthread_t threads[MAX_THREADS];
        int started = 0;
        for (int i = 1; i < n_threads; ++i) {
            if (pthread_create(&threads[started], 0, FN(pthread_worker), &queue) != 0) break;
            ++started;
        }
        FN(worker)(&queue); /* the calling thread works too, and finishes the jobs if no thread started */
        for (int i = 0; i < started; ++i) pthread_join(threads[i], 0);
    }
    for (int i = 0; i < n_jobs; ++i)
        if (jobs[i].failed) {
            free(buffers);
            return 2;
        }
    double term = 0.0;
    for (int i = 0; i < n_jobs; ++i) term += jobs[i].term;
    if (a->term_value) *a->term_value = term;
    if (a->n_bad) {
        int64_t bad = 0;
        for (int i = 0; i < n_jobs; ++i) bad += jobs[i].n_bad;
        *a->n_bad = bad;
    }
    if (a->stats) {
        for (size_t k = 0; k < stats_len; ++k) {
            double sum = 0.0;
            for (int i = 0; i < n_jobs; ++i) sum += buffers[stats_len * (size_t)i + k];
            a->stats[k] = sum;
        }
        free(buffers);
    }
    return 0;
}

#undef FN
#undef CAT
#undef CAT_
