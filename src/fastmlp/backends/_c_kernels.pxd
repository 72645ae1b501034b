# Declarations of the C core (csrc/fastmlp.h) for the Cython wrapper.
from libc.stdint cimport int32_t, int64_t, uint32_t

cdef extern from "threads/pool.h":
    void fm_pool_blas_single(int (*get_threads)(), void (*set_threads)(int), int enter)

cdef extern from "fastmlp.h" nogil:
    ctypedef enum fm_status:
        FM_OK
        FM_EINVAL
        FM_ELABEL

    int64_t FM_BLOCK_STRIDE(int64_t n)
    enum:
        FM_MAX_LAYERS
        FM_MAX_BLOCKS
        FM_FUSED_MAX_WEIGHTS
    int fm_pool_size()
    int fm_simd_supported()
    int fm_simd_select(int level)
    int fm_simd_active()
    const char *fm_simd_name(int level)
    int fm_activation_needs_z(int act)

    ctypedef void (*fm_sgemm_fn)(const char*, const char*, const int*, const int*, const int*,
                                 const float*, const float*, const int*, const float*,
                                 const int*, const float*, float*, const int*)
    ctypedef void (*fm_dgemm_fn)(const char*, const char*, const int*, const int*, const int*,
                                 const double*, const double*, const int*, const double*,
                                 const int*, const double*, double*, const int*)

    ctypedef struct fm_blas:
        fm_sgemm_fn sgemm
        fm_dgemm_fn dgemm
        int64_t small_gemm_flops
        int64_t trans_a_discount[2]
        int (*get_num_threads)()
        void (*set_num_threads)(int)

    ctypedef struct fm_optimizer:
        int kind
        double learning_rate
        double momentum
        double beta1, beta2, eps
        double weight_decay
        double rho
        double momentum_decay
        double mu_product
        double clip_value
        double clip_norm
        double grad_scale

    ctypedef struct fm_network:
        int n_layers
        const int64_t *sizes
        const int32_t *activations
        const double *alphas
        int loss
        double margin
        double l2, l1
        int penalty_over_weight
        double max_norm
        double activity_l2, activity_l1
        fm_optimizer opt
        int64_t step
        double nadam_product
        int64_t nadam_step
        int64_t max_batch
        void **W
        void **b
        void **dW
        void **db
        void **state1_W
        void **state1_b
        void **state2_W
        void **state2_b
        void **A
        void **dA
        void **Z
        void *X_batch
        void *y_batch
        void *w_batch
        const fm_blas *blas
        double dropout
        uint32_t dropout_key
        void **D
        int n_threads
        int max_blocks
        void **block_dW
        void **block_db

    fm_status fm_gemm_f32(const fm_blas*, int, int, int64_t, int64_t, int64_t, float,
                          const float*, int64_t, const float*, int64_t, float, float*, int64_t)
    fm_status fm_gemm_f64(const fm_blas*, int, int, int64_t, int64_t, int64_t, double,
                          const double*, int64_t, const double*, int64_t, double, double*,
                          int64_t)
    fm_status fm_maxout_forward_f32(int64_t, int64_t, int64_t, const float*, float*)
    fm_status fm_maxout_forward_f64(int64_t, int64_t, int64_t, const double*, double*)
    fm_status fm_maxout_backward_f32(int64_t, int64_t, int64_t, const float*, const float*,
                                     float*)
    fm_status fm_maxout_backward_f64(int64_t, int64_t, int64_t, const double*, const double*,
                                     double*)
    fm_status fm_activation_forward_f32(int, double, int64_t, int64_t, const float*,
                                        const float*, float*)
    fm_status fm_activation_forward_f64(int, double, int64_t, int64_t, const double*,
                                        const double*, double*)
    fm_status fm_activation_backward_f32(int, double, int64_t, const float*, const float*,
                                         const float*, float*)
    fm_status fm_activation_backward_f64(int, double, int64_t, const double*, const double*,
                                         const double*, double*)
    fm_status fm_dense_forward_f32(const fm_blas*, int64_t, int64_t, int64_t, const float*,
                                   const float*, const float*, int, double, float*, float*)
    fm_status fm_dense_forward_f64(const fm_blas*, int64_t, int64_t, int64_t, const double*,
                                   const double*, const double*, int, double, double*,
                                   double*)
    fm_status fm_dense_backward_f32(const fm_blas*, int64_t, int64_t, int64_t, const float*,
                                    const float*, const float*, const float*, const float*,
                                    int, double, double, double, float*, float*, float*,
                                    float*, double*)
    fm_status fm_dense_backward_f64(const fm_blas*, int64_t, int64_t, int64_t, const double*,
                                    const double*, const double*, const double*,
                                    const double*, int, double, double, double, double*,
                                    double*, double*, double*, double*)
    fm_status fm_softmax_f32(int64_t, int64_t, const float*, int, float*)
    fm_status fm_softmax_f64(int64_t, int64_t, const double*, int, double*)
    fm_status fm_softmax_cross_entropy_f32(int64_t, int64_t, const float*, const int64_t*,
                                           const float*, double*, float*)
    fm_status fm_softmax_cross_entropy_f64(int64_t, int64_t, const double*, const int64_t*,
                                           const double*, double*, double*)
    fm_status fm_sigmoid_bce_f32(int64_t, int64_t, const float*, const float*, double*, float*)
    fm_status fm_sigmoid_bce_f64(int64_t, int64_t, const double*, const double*, double*,
                                 double*)
    fm_status fm_mse_f32(int64_t, int64_t, const float*, const float*, double*, float*)
    fm_status fm_mse_f64(int64_t, int64_t, const double*, const double*, double*, double*)
    fm_status fm_optimizer_update_f32(const fm_optimizer*, int64_t, int64_t, float*,
                                      const float*, float*, float*, int)
    fm_status fm_optimizer_update_f64(const fm_optimizer*, int64_t, int64_t, double*,
                                      const double*, double*, double*, int)
    fm_status fm_poisson_f32(int64_t, int64_t, const float*, const float*, double*, float*)
    fm_status fm_poisson_f64(int64_t, int64_t, const double*, const double*, double*,
                             double*)
    fm_status fm_absolute_error_f32(int64_t, int64_t, const float*, const float*, double*,
                                    float*)
    fm_status fm_absolute_error_f64(int64_t, int64_t, const double*, const double*, double*,
                                    double*)
    fm_status fm_huber_f32(int64_t, int64_t, const float*, const float*, double*, float*)
    fm_status fm_huber_f64(int64_t, int64_t, const double*, const double*, double*, double*)
    fm_status fm_multiclass_hinge_f32(int64_t, int64_t, const float*, const int64_t*,
                                      const float*, double, int, double*, float*)
    fm_status fm_multiclass_hinge_f64(int64_t, int64_t, const double*, const int64_t*,
                                      const double*, double, int, double*, double*)
    fm_status fm_categorical_cross_entropy_f32(int64_t, int64_t, const float*, const float*,
                                               const float*, double*, float*)
    fm_status fm_categorical_cross_entropy_f64(int64_t, int64_t, const double*, const double*,
                                               const double*, double*, double*)
    fm_status fm_kl_divergence_f32(int64_t, int64_t, const float*, const float*, const float*,
                                   double*, float*)
    fm_status fm_kl_divergence_f64(int64_t, int64_t, const double*, const double*,
                                   const double*, double*, double*)
    fm_status fm_log_cosh_f32(int64_t, int64_t, const float*, const float*, const float*,
                              double*, float*)
    fm_status fm_log_cosh_f64(int64_t, int64_t, const double*, const double*, const double*,
                              double*, double*)
    fm_status fm_network_train_step_f32(fm_network*, int64_t, const float*, const void*,
                                        const float*, double*)
    fm_status fm_network_train_step_f64(fm_network*, int64_t, const double*, const void*,
                                        const double*, double*)
    fm_status fm_network_loss_gradient_f32(fm_network*, int64_t, const float*, const void*,
                                           const float*, double*)
    fm_status fm_network_loss_gradient_f64(fm_network*, int64_t, const double*, const void*,
                                           const double*, double*)
    fm_status fm_network_train_epoch_f32(fm_network*, int64_t, const float*, const void*,
                                         const float*, const int64_t*, int64_t, int64_t,
                                         double*, double*, double*)
    fm_status fm_network_train_epoch_f64(fm_network*, int64_t, const double*, const void*,
                                         const double*, const int64_t*, int64_t, int64_t,
                                         double*, double*, double*)
    fm_status fm_network_forward_f32(const fm_network*, int64_t, const float*, float*,
                                     float*, float*, int64_t, int)
    fm_status fm_network_forward_f64(const fm_network*, int64_t, const double*, double*,
                                     double*, double*, int64_t, int)
    int fm_all_finite_f32(int64_t, const float*, int)
    int fm_all_finite_f64(int64_t, const double*, int)
    fm_status fm_classification_counts_f32(int64_t, int64_t, const float*, const int64_t*,
                                           int64_t, int64_t*, int64_t*, int64_t*)
    fm_status fm_classification_counts_f64(int64_t, int64_t, const double*, const int64_t*,
                                           int64_t, int64_t*, int64_t*, int64_t*)
    fm_status fm_log_loss_f32(int64_t, int64_t, const float*, const int64_t*, const float*,
                              double*)
    fm_status fm_log_loss_f64(int64_t, int64_t, const double*, const int64_t*,
                              const double*, double*)
    fm_status fm_regression_sums_f32(int64_t, int64_t, const float*, const float*, double*,
                                     double*)
    fm_status fm_regression_sums_f64(int64_t, int64_t, const double*, const double*,
                                     double*, double*)
