/* Fused CPU kernels behind medloss's segmentation losses.
 *
 * A plain C library (no Python or PyTorch headers: it builds in a second with any C compiler and
 * does not depend on the PyTorch ABI), loaded with ctypes by medloss/ops/cpu_kernel.py, which passes
 * tensor data pointers. It is an optional speed-up: when it is missing (no compiler when the
 * package was built) medloss runs the same mathematics with PyTorch operations.
 *
 * Why: a softmax-based region loss written with PyTorch operations makes ~10 passes over the
 * logits (softmax, products, reductions, and as many again in the backward). Here the forward
 * is one pass that reads the logits and the labels and writes nothing but a few sums per image
 * and class; the backward is one pass that recomputes the softmax and writes the gradient.
 * Work is split over pthreads by tiles of pixels; loops run over pixels with the channels in a
 * small heap scratch buffer per job, so they vectorise (exp and log are polynomial, not libm calls).
 */

#ifdef MEDLOSS_PYTHON_MODULE
/* Built by setup.py as the extension module medloss._kernels, so that pip compiles it for the
 * interpreter it installs into; the module itself is empty and the functions are reached with
 * ctypes (no Python object crosses the boundary, and the GIL is released during the calls). */
#include <Python.h>
static struct PyModuleDef medloss_kernels_module = {
    PyModuleDef_HEAD_INIT, "_kernels", "Fused CPU kernels of medloss (called through ctypes).", -1, NULL,
};
PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&medloss_kernels_module); }
#endif

#include <math.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CLASSES 32 /* < LABEL_SKIP - 1: byte labels leave two markers free */
#define MAX_TILE 256     /* pixels per tile */
#define PREFETCH_TILES 4
#define LANES 16         /* partial sums per class (one AVX-512 float vector) */
#define TILE_VALUES 512 /* pixels x classes per tile, about (measured: larger tiles are slower) */
#define LABEL_SKIP 255
#define MAX_THREADS 64

#define TERM_NONE 0
#define TERM_FOCAL 1
#define TERM_WCE 2

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
/* one build runs at the best width of the machine it lands on (dispatch at load time) */
#define MEDLOSS_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "arch=x86-64-v2", "default")))
#else
#define MEDLOSS_CLONES
#endif

typedef struct {
    int64_t B, C, S;       /* images, classes (channels), pixels per image */
    const void *x;         /* [B, C, S] logits, contiguous, float or double */
    const int64_t *t;      /* [B, S] class indices, as the user gave them (or NULL: labels8) */
    const uint8_t *valid;  /* [B, S] 1 = counted, or NULL (all counted) */
    int64_t ignore_index;  /* label of pixels counted nowhere, if use_ignore */
    int32_t use_ignore;
    int32_t pad_;
    uint8_t *labels8_out;  /* out [B, S]: the counted label, LABEL_SKIP elsewhere (for the backward) */
    const uint8_t *labels8;/* in: labels8_out of the forward, read instead of t and valid */
    int64_t *n_bad;        /* out: labels outside [0, C) that are not ignore_index */
    int32_t term;          /* TERM_NONE, TERM_FOCAL, TERM_WCE */
    int32_t n_threads;
    const double *term_w;  /* focal: alpha_c * scale per class; WCE: [w_pos, w_neg] * scale */
    const double *gamma;   /* focal: gamma_c per class */
    double *stats;         /* out [B, 3, C]: TP, sum p, sum y; or NULL */
    double *term_value;    /* out: sum of the term over pixels; or NULL */
    void *grad;            /* out [B, C, S] gradient, or NULL */
    const double *u;       /* [B, C] dL/d sum_p, or NULL */
    const double *v;       /* [B, C] dL/d TP, or NULL */
    double g_term;         /* dL/d term */
    /* GOMP_parallel of the OpenMP runtime PyTorch already runs (its thread pool), or NULL for
     * plain pthreads. Threads of two pools spin against each other on a small machine: after
     * any PyTorch operation its OpenMP workers busy-wait for a while, and a second pool's
     * threads then get a share of the same cores (2x slower on 2 cores). */
    void (*gomp_parallel)(void (*)(void *), void *, unsigned, unsigned);
} medloss_pass_args;

/* exp for x <= 88 (Cody-Waite reduction, degree-6 polynomial as in Cephes' expf; ~1 ulp).
 * Arguments below -87.3 give ~1e-38 rather than a denormal or 0: far below anything that
 * matters in a probability, and it keeps every later log finite. */
static inline float exp_f32(float x) {
    x = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : x);
    const float t = x * 1.44269504088896341f;
    const int32_t k = (int32_t)__builtin_rintf(t); /* rint, not a +-0.5 trick: gcc vectorises only this */
    const float n = (float)k;
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    const float r2 = r * r;
    const float y = (((((1.9875691500E-4f * r + 1.3981999507E-3f) * r + 8.3334519073E-3f) * r +
                       4.1665795894E-2f) * r + 1.6666665459E-1f) * r + 5.0000001201E-1f) * r2 + r + 1.0f;
    union { int32_t i; float f; } scale;
    scale.i = (k + 127) << 23;
    return y * scale.f;
}

/* natural log for normal x > 0 (Cephes' logf polynomial; ~1 ulp); smaller x are clamped */
static inline float log_f32(float x) {
    x = x < 1.17549435e-38f ? 1.17549435e-38f : x;
    union { float f; int32_t i; } u;
    u.f = x;
    const int32_t e = ((u.i >> 23) & 0xff) - 126;
    u.i = (u.i & 0x007fffff) | 0x3f000000; /* mantissa in [0.5, 1) */
    float m = u.f;
    const int below = m < 0.707106781186547524f;
    const float ef = (float)(e - below);
    m = below ? m + m - 1.0f : m - 1.0f;
    const float z = m * m;
    float y = ((((((((7.0376836292E-2f * m - 1.1514610310E-1f) * m + 1.1676998740E-1f) * m -
                    1.2420140846E-1f) * m + 1.4249322787E-1f) * m - 1.6668057665E-1f) * m +
                 2.0000714765E-1f) * m - 2.4999993993E-1f) * m + 3.3333331174E-1f) * m * z;
    y += -2.12194440e-4f * ef;
    y += -0.5f * z;
    return m + y + 0.693359375f * ef;
}

#if defined(__SSE2__)
#define STREAM_F32(dst, src) _mm_stream_ps((dst), _mm_loadu_ps(src))
#define STREAM_F64(dst, src) _mm_stream_pd((dst), _mm_loadu_pd(src))
#endif

#define REAL float
#define SUFFIX f32
#define STREAM STREAM_F32
#define EXP exp_f32
#define LOG log_f32
#include "_kernels_impl.h"
#undef REAL
#undef SUFFIX
#undef EXP
#undef LOG
#undef STREAM

#define REAL double
#define SUFFIX f64
#define STREAM STREAM_F64
#define EXP exp
#define LOG log
#include "_kernels_impl.h"
#undef REAL
#undef SUFFIX
#undef EXP
#undef LOG
#undef STREAM

/* ABI check for the loader: the size of the argument struct and a version number */
int64_t medloss_kernels_abi(void) { return (int64_t)(1000 * sizeof(medloss_pass_args) + 2); }

/* The field layout of medloss_pass_args as (offset, size) pairs in declaration order, so the
 * loader can refuse a build whose fields moved or changed type even when the total size did not.
 * Writes at most `capacity` pairs into `out` (2 * capacity values); returns the number of fields. */
#define MEDLOSS_FIELD(f) offsetof(medloss_pass_args, f), sizeof(((medloss_pass_args *)0)->f)
int64_t medloss_kernels_layout(int64_t *out, int64_t capacity) {
    static const size_t fields[] = {
        MEDLOSS_FIELD(B), MEDLOSS_FIELD(C), MEDLOSS_FIELD(S), MEDLOSS_FIELD(x), MEDLOSS_FIELD(t),
        MEDLOSS_FIELD(valid), MEDLOSS_FIELD(ignore_index), MEDLOSS_FIELD(use_ignore), MEDLOSS_FIELD(pad_),
        MEDLOSS_FIELD(labels8_out), MEDLOSS_FIELD(labels8), MEDLOSS_FIELD(n_bad), MEDLOSS_FIELD(term),
        MEDLOSS_FIELD(n_threads), MEDLOSS_FIELD(term_w), MEDLOSS_FIELD(gamma), MEDLOSS_FIELD(stats),
        MEDLOSS_FIELD(term_value), MEDLOSS_FIELD(grad), MEDLOSS_FIELD(u), MEDLOSS_FIELD(v),
        MEDLOSS_FIELD(g_term), MEDLOSS_FIELD(gomp_parallel),
    };
    const int64_t n = (int64_t)(sizeof fields / sizeof fields[0] / 2);
    for (int64_t i = 0; i < n && i < capacity; ++i) {
        out[2 * i] = (int64_t)fields[2 * i];
        out[2 * i + 1] = (int64_t)fields[2 * i + 1];
    }
    return n;
}
