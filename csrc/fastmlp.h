/*
 * fastmlp C core: plain C99 kernels over raw, C-contiguous (row-major) arrays.
 *
 * Layers: the Python layer validates every shape, dtype and label range; the Cython
 * wrapper converts arrays to pointers and calls these functions with the GIL released;
 * the functions below still re-check what is cheap to check (sizes, label range,
 * enum values) and report it through fm_status instead of trusting the caller.
 *
 * Every kernel exists as _f32 (float) and _f64 (double). Both come from one templated
 * body per file in csrc/kernels/ (see csrc/real_f32.c and csrc/real_f64.c).
 * The core allocates nothing: every buffer is owned by the caller.
 */
#ifndef FASTMLP_H
#define FASTMLP_H

#include <stdint.h>

typedef enum {
    FM_OK = 0,
    FM_EINVAL = 1,       /* a size, enum value or option out of range */
    FM_ELABEL = 2        /* a class label outside [0, n_classes) */
} fm_status;

typedef enum {
    FM_ACT_IDENTITY = 0,
    FM_ACT_RELU = 1,
    FM_ACT_LEAKY_RELU = 2,
    FM_ACT_SIGMOID = 3,
    FM_ACT_TANH = 4,
    FM_ACT_ELU = 5,
    FM_ACT_SOFTPLUS = 6,
    FM_ACT_SELU = 7,
    FM_ACT_GELU = 8,          /* exact, with erf */
    FM_ACT_GELU_TANH = 9,     /* the tanh approximation */
    FM_ACT_SWISH = 10,        /* SiLU */
    FM_ACT_MISH = 11,
    FM_ACT_SOFTSIGN = 12,
    FM_ACT_HARD_SIGMOID = 13, /* Keras 2's clip(0.2 z + 0.5, 0, 1) */
    FM_ACT_MAXOUT = 14,       /* a unit is the max of k pieces (alpha = k); hidden layers */
    FM_ACT_COUNT = 15
} fm_activation;

/* Maxout's pieces per unit at most (alpha, a whole number from 2). */
#define FM_MAX_PIECES 64

/* 1 for the activations whose derivative is not a function of their output (gelu,
   gelu_tanh, swish, mish) and for maxout: their backward passes read the saved
   pre-activation Z. */
static inline int fm_activation_needs_z(int act)
{
    return act == FM_ACT_GELU || act == FM_ACT_GELU_TANH || act == FM_ACT_SWISH ||
           act == FM_ACT_MISH || act == FM_ACT_MAXOUT;
}

/* Maxout's pieces k when alpha is a whole number in [2, FM_MAX_PIECES], else 0. */
static inline int64_t fm_maxout_pieces(double alpha)
{
    return alpha >= 2 && alpha <= FM_MAX_PIECES && alpha == (double)(int64_t)alpha
               ? (int64_t)alpha
               : 0;
}

typedef enum {
    FM_LOSS_SOFTMAX_CROSS_ENTROPY = 0, /* y: int64 labels */
    FM_LOSS_SIGMOID_BCE = 1,           /* y: real targets, same shape as the output */
    FM_LOSS_MSE = 2,                   /* y: real targets, same shape as the output */
    FM_LOSS_POISSON = 3,               /* y: counts >= 0; the output is log(mean) */
    FM_LOSS_ABSOLUTE_ERROR = 4,        /* y: real targets, same shape as the output */
    FM_LOSS_HUBER = 5,                 /* y: real targets; delta 1 */
    FM_LOSS_MULTICLASS_HINGE = 6,      /* y: int64 labels; fm_network.margin */
    FM_LOSS_SQUARED_HINGE = 7,         /* y: int64 labels; fm_network.margin */
    FM_LOSS_CATEGORICAL_CE = 8,        /* y: real targets (probability rows) */
    FM_LOSS_LOG_COSH = 9,              /* y: real targets, same shape as the output */
    FM_LOSS_KL_DIVERGENCE = 10,        /* y: real targets (probability rows) */
    FM_LOSS_COUNT = 11
} fm_loss;

/* The losses whose y is one int64 label per row (the others: a row of targets). */
#define FM_LOSS_TAKES_LABELS(loss)                                                   \
    ((loss) == FM_LOSS_SOFTMAX_CROSS_ENTROPY || (loss) == FM_LOSS_MULTICLASS_HINGE || \
     (loss) == FM_LOSS_SQUARED_HINGE)

typedef enum {
    FM_OPT_SGD = 0,
    FM_OPT_MOMENTUM = 1,
    FM_OPT_NESTEROV = 2,
    FM_OPT_ADAM = 3,
    FM_OPT_ADAMW = 4,
    FM_OPT_RMSPROP = 5,
    FM_OPT_ADAGRAD = 6,
    FM_OPT_ADADELTA = 7,
    FM_OPT_ADAMAX = 8,
    FM_OPT_NADAM = 9,
    FM_OPT_COUNT = 10
} fm_optimizer_kind;

/* Instruction sets of the matrix-product micro-kernels (csrc/simd/), lowest first.
   "scalar" is the portable C loops, "baseline" x86-64 SSE2. */
typedef enum {
    FM_SIMD_SCALAR = 0,
    FM_SIMD_BASELINE = 1,
    FM_SIMD_AVX2 = 2,
    FM_SIMD_AVX512 = 3,
    FM_SIMD_COUNT = 4
} fm_simd_level;

int fm_simd_supported(void);        /* the best level this CPU and build can run */
int fm_simd_select(int level);      /* use min(level, supported) (-1: the best); returns it */
int fm_simd_active(void);           /* the level in use */
const char *fm_simd_name(int level);

/* Fortran-convention gemm, as exported by scipy.linalg.cython_blas (LP64 ints). */
typedef void (*fm_sgemm_fn)(const char *transa, const char *transb, const int *m,
                            const int *n, const int *k, const float *alpha,
                            const float *a, const int *lda, const float *b,
                            const int *ldb, const float *beta, float *c,
                            const int *ldc);
typedef void (*fm_dgemm_fn)(const char *transa, const char *transb, const int *m,
                            const int *n, const int *k, const double *alpha,
                            const double *a, const int *lda, const double *b,
                            const int *ldb, const double *beta, double *c,
                            const int *ldc);

/* Where matrix products come from: the kernels never know which BLAS this is. */
typedef struct {
    fm_sgemm_fn sgemm;
    fm_dgemm_fn dgemm;
    /* Products with m*n*k at or below this many multiply-adds use the built-in
       small-matrix kernels instead of BLAS (call overhead dominates there). */
    int64_t small_gemm_flops;
    /* A product op(A) B with A transposed (a weight gradient X^T dZ) counts 1/this of its
       multiply-adds, per dtype ([0] float32, [1] float64): where the micro-kernels beat
       BLAS on that form up to larger sizes. 0 or 1: no discount. */
    int64_t trans_a_discount[2];
    /* The BLAS's own thread count (OpenBLAS's openblas_get/set_num_threads), set to 1
       while a step runs BLAS calls on fastmlp's threads. NULL: left alone. */
    int (*get_num_threads)(void);
    void (*set_num_threads)(int);
} fm_blas;

typedef struct {
    int kind;                 /* fm_optimizer_kind */
    double learning_rate;
    double momentum;          /* momentum, nesterov */
    double beta1, beta2;      /* adam, adamw, adamax, nadam */
    double eps;               /* every adaptive one (adam to nadam) */
    double weight_decay;      /* adamw: decoupled decay, applied to weights only */
    double rho;               /* rmsprop, adadelta: the squared averages' decay */
    double momentum_decay;    /* nadam: psi in mu_t = beta1 (1 - 0.5 0.96^(t psi)) */
    double mu_product;        /* nadam: mu_1 ... mu_t for this update's t; < 0: computed here */
    double clip_value;        /* > 0: each gradient element clipped into [-c, c]; 0: none */
    double clip_norm;         /* > 0: a network step scales all gradients by
                                 min(1, c / ||g||_2) (grad_scale); 0: none */
    double grad_scale;        /* the update's factor on the (value-clipped) gradient; <= 0: 1 */
} fm_optimizer;

/* A plan's layers at most (per-layer pointer tables live on the stack), and the blocks a
   small network's batch splits into at most (see block_dW below). */
#define FM_MAX_LAYERS 64
#define FM_MAX_BLOCKS 16
/* Elements between two blocks' copies of an n-element gradient (block_dW, block_db): a
   whole number of 64-byte lines, so that two threads never write one cache line. */
#define FM_BLOCK_STRIDE(n) (((n) + 15) / 16 * 16)
/* Networks whose every weight matrix has at most this many entries run their batch in
   blocks of the cache budget (network.inc): each block has its own dW, which must stay
   in cache as well. Past it, cache-sized blocks bought
   nothing (measured float32, 1 thread: 784-100-10 at batch 1024, 784-256-10 at 512,
   200-200-200-10 at 1024 all ran within 2% blocked or whole-batch: products that size
   are gemm-bound either way). */
#define FM_FUSED_MAX_WEIGHTS 32768

/*
 * A network plan: layer l maps sizes[l] -> sizes[l+1], A = f_l(X W_l + b_l).
 * Every pointer array has n_layers entries pointing at caller-owned buffers of the
 * plan's dtype: W[l] (sizes[l] x width_l), b[l] (width_l), the gradients dW, db of
 * the same shapes, optimizer state (see optimizer.inc: state1 = velocity, Adam's m,
 * RMSprop's or Adagrad's accumulator; state2 = Adam's v; NULL where the optimizer has
 * none), and the activations A[l] and their gradients dA[l]
 * (max_batch x sizes[l+1]). width_l is sizes[l+1], or k sizes[l+1] for a maxout layer of
 * k pieces (fm_layer_width): each unit's pieces are k adjacent columns. X_batch
 * (max_batch x sizes[0]) and y_batch (max_batch labels or max_batch x sizes[n_layers]
 * targets) hold the rows gathered for a shuffled epoch.
 */
typedef struct {
    int n_layers;
    const int64_t *sizes;
    const int32_t *activations;
    const double *alphas;
    int loss;                 /* fm_loss; the output activation must be identity for
                                 the losses that take logits (softmax cross-entropy,
                                 sigmoid BCE) or log(mean) (poisson) */
    double margin;            /* the hinge losses' margin Delta (unread by the others) */
    double l2, l1;            /* penalties on weights (not biases), per step as in the course */
    int penalty_over_weight;  /* 1: l2 and l1 divided by each batch's weight sum (its rows
                                 without sample weights): scikit-learn's alpha */
    double max_norm;          /* > 0: after each update, every unit's incoming weights (a
                                 column of W) longer than this are scaled to this L2 norm */
    /* Activity penalties on every hidden layer's output A (before dropout), a weighted
       mean over rows like the data loss: sum_l sum_i w_i (activity_l2/2 sum_j A_ij^2 +
       activity_l1 sum_j |A_ij|) / sum_i w_i (w_i 1 without sample weights); 0: none */
    double activity_l2, activity_l1;
    fm_optimizer opt;
    int64_t step;             /* optimizer steps taken (Adam's t) */
    /* Nadam's mu_1 ... mu_t through step nadam_step (a cache: 0, or after a change of
       beta1 or momentum_decay, recomputes it from mu_1, the same bits) */
    double nadam_product;
    int64_t nadam_step;
    int64_t max_batch;
    void *const *W, *const *b, *const *dW, *const *db;
    void *const *state1_W, *const *state1_b, *const *state2_W, *const *state2_b;
    void *const *A, *const *dA;
    /* Z[l] (max_batch x width_l) holds layer l's pre-activation X W + b for the layers
       whose activation needs it (fm_activation_needs_z), NULL for the others; Z itself
       may be NULL when no layer needs it. A training step leaves a maxout layer's dL/dZ
       there (its backward pass writes it over Z). */
    void *const *Z;
    void *X_batch, *y_batch;
    void *w_batch;            /* max_batch sample weights gathered for a shuffled epoch;
                                 NULL: the plan trains without weights */
    const fm_blas *blas;
    /* Inverted dropout on every hidden layer's output while training: a unit is kept
       (and scaled by 1/(1 - dropout)) when a hash of (dropout_key, step, layer, row, unit)
       clears the rate, so a mask depends on where a unit is, not on how the step is
       blocked, and every backend draws the same one. D[l] (max_batch x sizes[l+1]) holds
       the dropped outputs of hidden layer l; D is NULL when dropout is 0. */
    double dropout;
    uint32_t dropout_key;
    void *const *D;
    /* Threads for a step (fm_pool_run; 1: the caller alone), and the per-block gradients
       a step's row blocks write before they are summed in block order: block_dW[l]
       holds max_blocks copies of dW[l], block_db[l] of db[l], FM_BLOCK_STRIDE apart and
       64-byte aligned. */
    int n_threads;
    int max_blocks; /* copies in block_dW/block_db, at most FM_MAX_BLOCKS; < 2: none */
    void *const *block_dW, *const *block_db;
} fm_network;

/* The columns of layer l's W: its units, times maxout's pieces. */
static inline int64_t fm_layer_width(const fm_network *net, int l)
{
    const int64_t units = net->sizes[l + 1];
    return net->activations[l] == FM_ACT_MAXOUT ? units * fm_maxout_pieces(net->alphas[l])
                                                : units;
}

#define FM_DECLARE(REAL, SFX)                                                          \
    fm_status fm_gemm_##SFX(const fm_blas *blas, int trans_a, int trans_b, int64_t m,  \
                            int64_t n, int64_t k, REAL alpha, const REAL *A,           \
                            int64_t lda, const REAL *B, int64_t ldb, REAL beta,        \
                            REAL *C, int64_t ldc);                                     \
    fm_status fm_activation_forward_##SFX(int act, double alpha, int64_t rows,         \
                                          int64_t cols, const REAL *Z,                 \
                                          const REAL *bias, REAL *A);                  \
    fm_status fm_activation_backward_##SFX(int act, double alpha, int64_t n,           \
                                           const REAL *dA, const REAL *A,              \
                                           const REAL *Z, REAL *dZ);                   \
    fm_status fm_maxout_forward_##SFX(int64_t rows, int64_t units, int64_t pieces,     \
                                      const REAL *Z, REAL *A);                         \
    fm_status fm_maxout_backward_##SFX(int64_t rows, int64_t units, int64_t pieces,    \
                                       const REAL *dA, const REAL *Z, REAL *dZ);       \
    fm_status fm_dense_forward_##SFX(const fm_blas *blas, int64_t rows, int64_t d_in,  \
                                     int64_t d_out, const REAL *X, const REAL *W,      \
                                     const REAL *b, int act, double alpha, REAL *A,    \
                                     REAL *Z);                                         \
    fm_status fm_dense_backward_##SFX(const fm_blas *blas, int64_t rows, int64_t d_in, \
                                      int64_t d_out, const REAL *dA, const REAL *X,    \
                                      const REAL *W, const REAL *A, const REAL *Z,     \
                                      int act, double alpha, double l2, double l1,     \
                                      REAL *dZ, REAL *dX, REAL *dW, REAL *db,          \
                                      double *penalty);                                \
    fm_status fm_softmax_##SFX(int64_t rows, int64_t cols, const REAL *Z, int log,     \
                               REAL *out);                                             \
    fm_status fm_softmax_cross_entropy_##SFX(int64_t rows, int64_t cols,               \
                                             const REAL *Z, const int64_t *labels,     \
                                             const REAL *sample_weight, double *loss,  \
                                             REAL *dZ);                                \
    fm_status fm_sigmoid_bce_##SFX(int64_t rows, int64_t cols, const REAL *Z,          \
                                   const REAL *Y, double *loss, REAL *dZ);             \
    fm_status fm_mse_##SFX(int64_t rows, int64_t cols, const REAL *P, const REAL *Y,   \
                           double *loss, REAL *dP);                                    \
    fm_status fm_optimizer_update_##SFX(const fm_optimizer *opt, int64_t step,         \
                                        int64_t n, REAL *w, const REAL *g,             \
                                        REAL *state1, REAL *state2, int decay);        \
    fm_status fm_poisson_##SFX(int64_t rows, int64_t cols, const REAL *Z,              \
                               const REAL *Y, double *loss, REAL *dZ);                 \
    fm_status fm_absolute_error_##SFX(int64_t rows, int64_t cols, const REAL *P,       \
                                      const REAL *Y, double *loss, REAL *dP);          \
    fm_status fm_huber_##SFX(int64_t rows, int64_t cols, const REAL *P, const REAL *Y, \
                             double *loss, REAL *dP);                                  \
    fm_status fm_multiclass_hinge_##SFX(int64_t rows, int64_t cols, const REAL *Z,     \
                                        const int64_t *labels,                         \
                                        const REAL *sample_weight, double margin,      \
                                        int squared, double *loss, REAL *dZ);          \
    fm_status fm_categorical_cross_entropy_##SFX(int64_t rows, int64_t cols,           \
                                                 const REAL *Z, const REAL *T,         \
                                                 const REAL *sample_weight,            \
                                                 double *loss, REAL *dZ);              \
    fm_status fm_kl_divergence_##SFX(int64_t rows, int64_t cols, const REAL *Z,        \
                                     const REAL *T, const REAL *sample_weight,         \
                                     double *loss, REAL *dZ);                          \
    fm_status fm_log_cosh_##SFX(int64_t rows, int64_t cols, const REAL *P,             \
                                const REAL *Y, const REAL *sample_weight,              \
                                double *loss, REAL *dP);                               \
    fm_status fm_network_train_step_##SFX(fm_network *net, int64_t rows,               \
                                          const REAL *X, const void *y,                \
                                          const REAL *sample_weight, double *loss);    \
    fm_status fm_network_loss_gradient_##SFX(fm_network *net, int64_t rows,            \
                                             const REAL *X, const void *y,             \
                                             const REAL *sample_weight, double *loss); \
    fm_status fm_network_train_epoch_##SFX(fm_network *net, int64_t n_total,           \
                                           const REAL *X, const void *y,               \
                                           const REAL *sample_weight,                  \
                                           const int64_t *order, int64_t n_order,      \
                                           int64_t batch_size, double *batch_losses,   \
                                           double *mean_loss, double *metric);         \
    fm_status fm_network_forward_##SFX(const fm_network *net, int64_t rows,            \
                                       const REAL *X, REAL *out, REAL *work_a,         \
                                       REAL *work_b, int64_t chunk_rows, int n_slots); \
    int fm_all_finite_##SFX(int64_t n, const REAL *X, int n_threads);                   \
    fm_status fm_classification_counts_##SFX(int64_t rows, int64_t cols, const REAL *Z, \
                                             const int64_t *y, int64_t k,               \
                                             int64_t *confusion, int64_t *top_k,        \
                                             int64_t *nan_rows);                        \
    fm_status fm_log_loss_##SFX(int64_t rows, int64_t cols, const REAL *Z,              \
                                const int64_t *y, const REAL *w, double *loss);         \
    fm_status fm_regression_sums_##SFX(int64_t rows, int64_t cols, const REAL *P,       \
                                       const REAL *Y, double *ss_res, double *ss_tot);

FM_DECLARE(float, f32)
FM_DECLARE(double, f64)

#undef FM_DECLARE

#endif /* FASTMLP_H */
