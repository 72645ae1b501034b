"""fastmlp.sklearn: scikit-learn's MLPClassifier / MLPRegressor, trained by fastmlp.

The drop-ins are checked against scikit-learn itself: its estimator checks, its
meta-estimators (pipeline, grid search, cross-validation, clone, pickle), its own MLP on
the same data with the same seed (identical weights for sgd, accuracy within noise for
adam), and its error messages for bad input.
"""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn import neural_network as sk  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits, make_multilabel_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastmlp  # noqa: E402
from fastmlp import datasets  # noqa: E402
from fastmlp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402
from helpers import outlier_regression  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# sgd runs the same arithmetic as scikit-learn in a different order (BLAS call shapes, fused
# blocks): after a few epochs the weights agree to a few ulps of float64.
SGD_ATOL = 1e-10


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def _regression_targets(X):
    return np.c_[X[:, 10:20].sum(axis=1) / 4, X[:, 30] - X[:, 40], np.sin(3 * X[:, 27])]


def _fit_both(cls_fm, cls_sk, X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cls_fm(**params).fit(X, y), cls_sk(**params).fit(X, y)


def _assert_same_weights(a, b, atol=SGD_ATOL):
    assert len(a.coefs_) == len(b.coefs_)
    for mine, theirs in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert mine.dtype == theirs.dtype and mine.shape == theirs.shape
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=atol)


# -- scikit-learn's own estimator checks -----------------------------------------------


@parametrize_with_checks([MLPClassifier(max_iter=100), MLPRegressor(max_iter=100)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# -- optional dependency ---------------------------------------------------------------


def test_import_fastmlp_does_not_import_sklearn():
    code = "import sys, fastmlp; sys.exit('sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_missing_sklearn_names_the_extra():
    code = (
        "import sys; sys.modules['sklearn'] = None\n"
        "try:\n    import fastmlp.sklearn\n"
        "except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert 'pip install "fastmlp[sklearn]"' in out.stdout


# -- the same interface as scikit-learn's ----------------------------------------------


@pytest.mark.parametrize("ours, theirs", [(MLPClassifier, sk.MLPClassifier),
                                          (MLPRegressor, sk.MLPRegressor)])
def test_same_parameters_defaults_and_tags(ours, theirs):
    mine, reference = ours().get_params(), theirs().get_params()
    assert {k: mine[k] for k in reference} == reference  # mine: also 1.9's loss, max_fun
    # fastmlp's extensions, each defaulting to scikit-learn's behaviour
    assert {k: v for k, v in mine.items() if k not in reference} == {
        "n_threads": None, "dropout": 0.0, "dtype": None, "maxout_pieces": 2}
    assert ours(hidden_layer_sizes=(7,)).hidden_layer_sizes == (7,)
    t_mine, t_ref = ours().__sklearn_tags__(), theirs().__sklearn_tags__()
    for field in ("estimator_type", "input_tags", "target_tags", "classifier_tags",
                  "regressor_tags"):
        assert getattr(t_mine, field) == getattr(t_ref, field)


def test_same_fitted_attributes(digits):
    X, y = digits
    for params in ({}, {"early_stopping": True}):
        a, b = _fit_both(MLPClassifier, sk.MLPClassifier, X[:300], y[:300],
                         hidden_layer_sizes=(8,), max_iter=3, random_state=0, **params)
        public = {k for k in vars(b) if k.endswith("_") and not k.startswith("_")}
        assert public <= set(vars(a))
        for name in ("classes_", "n_iter_", "t_", "n_layers_", "n_outputs_",
                     "out_activation_", "n_features_in_"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        for name in ("loss_curve_", "validation_scores_"):
            assert type(getattr(a, name)) is type(getattr(b, name))
        assert (a.best_loss_ is None) == (b.best_loss_ is None)


# -- same data, same seed: the same model as scikit-learn's ------------------------------

SGD_CASES = [
    dict(),
    dict(nesterovs_momentum=False, learning_rate="invscaling", learning_rate_init=0.2),
    dict(momentum=0.0, activation="logistic", batch_size=64, alpha=1e-2),
    dict(activation="tanh", batch_size=128, shuffle=False, alpha=0.5),
    dict(activation="identity", hidden_layer_sizes=(12, 9), learning_rate="adaptive",
         n_iter_no_change=1, tol=10.0),
    dict(early_stopping=True, validation_fraction=0.2, max_iter=8),
]


@pytest.mark.parametrize("params", SGD_CASES, ids=range(len(SGD_CASES)))
def test_sgd_classifier_matches_sklearn(digits, params):
    X, y = digits
    params = {"hidden_layer_sizes": (20,), "max_iter": 5, "random_state": 0,
              "solver": "sgd", **params}
    a, b = _fit_both(MLPClassifier, sk.MLPClassifier, X[:900], y[:900], **params)
    _assert_same_weights(a, b)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-9)
    assert (a.n_iter_, a.t_) == (b.n_iter_, b.t_)
    if params.get("early_stopping"):
        np.testing.assert_allclose(a.validation_scores_, b.validation_scores_)
        assert a.best_validation_score_ == b.best_validation_score_
    else:
        assert a.best_loss_ == pytest.approx(b.best_loss_, rel=1e-9)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-9)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


@pytest.mark.parametrize("gather_bytes", [1, 5000])
def test_epochs_gathered_in_pieces_match_sklearn(digits, monkeypatch, gather_bytes):
    """Large data is shuffled into a bounded buffer, a few whole batches at a time."""
    import fastmlp.sklearn as fs

    monkeypatch.setattr(fs, "_GATHER_BYTES", gather_bytes)  # 1 or ~9 batches per piece
    X, y = digits
    a, b = _fit_both(MLPClassifier, sk.MLPClassifier, X[:1000], y[:1000], solver="sgd",
                     hidden_layer_sizes=(10,), batch_size=9, alpha=0.1, max_iter=2,
                     random_state=0)
    _assert_same_weights(a, b)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-9)


@pytest.mark.parametrize("target", ["binary", "multilabel", "strings"])
def test_sgd_binary_and_multilabel_match_sklearn(digits, target):
    X, y = digits
    X, y = X[:600], y[:600]
    Y = {"binary": y > 4,
         "multilabel": np.c_[y > 4, y % 2 == 0, y == 3],
         "strings": np.array(["zero", "one", "two"])[y % 3]}[target]
    a, b = _fit_both(MLPClassifier, sk.MLPClassifier, X, Y, hidden_layer_sizes=(16,),
                     max_iter=4, random_state=1, solver="sgd", alpha=1e-3)
    assert a.out_activation_ == b.out_activation_
    _assert_same_weights(a, b)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-9)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-9)


@pytest.mark.parametrize("n_outputs", [1, 3])
@pytest.mark.parametrize("alpha", [0.0, 0.05])
def test_sgd_regressor_matches_sklearn(digits, n_outputs, alpha):
    X, _ = digits
    Y = _regression_targets(X)[:, :n_outputs].squeeze()
    a, b = _fit_both(MLPRegressor, sk.MLPRegressor, X, Y, hidden_layer_sizes=(16,),
                     max_iter=4, random_state=2, solver="sgd", alpha=alpha, batch_size=150,
                     learning_rate_init=0.01)
    _assert_same_weights(a, b)
    # loss_ follows scikit-learn's convention: the squared error averaged over outputs
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(a.predict(X), b.predict(X), atol=1e-9)
    assert a.predict(X).shape == b.predict(X).shape


def test_adam_differs_from_sklearn_only_in_epsilon(digits, monkeypatch):
    """fastmlp's Adam divides by sqrt(v_hat) + eps, scikit-learn's by sqrt(v) + eps after
    folding the bias corrections into the step (eps smaller by sqrt(1 - beta_2**t) in
    fastmlp's terms). With scikit-learn patched to fastmlp's form, the models are equal."""
    X, y = digits
    params = dict(hidden_layer_sizes=(32,), max_iter=10, random_state=0)
    a, b = _fit_both(MLPClassifier, sk.MLPClassifier, X, y, **params)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=2e-2)  # close, not equal
    assert np.mean(a.predict(X) == b.predict(X)) > 0.98

    from sklearn.neural_network import _stochastic_optimizers

    def kingma_ba_updates(self, grads):
        self.t += 1
        self.ms = [self.beta_1 * m + (1 - self.beta_1) * g for m, g in zip(self.ms, grads)]
        self.vs = [self.beta_2 * v + (1 - self.beta_2) * g**2 for v, g in zip(self.vs, grads)]
        c1, c2 = 1 / (1 - self.beta_1**self.t), 1 / (1 - self.beta_2**self.t)
        return [-self.learning_rate_init * (m * c1) / (np.sqrt(v * c2) + self.epsilon)
                for m, v in zip(self.ms, self.vs)]

    monkeypatch.setattr(_stochastic_optimizers.AdamOptimizer, "_get_updates",
                        kingma_ba_updates)
    b = _fit_both(MLPClassifier, sk.MLPClassifier, X, y, **params)[1]
    _assert_same_weights(a, b)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-9)


def test_edge_values_of_the_parameters(digits):
    X, y = digits
    # scikit-learn allows momentum=1 (fastmlp's optimizers need < 1: the next float down)
    # and n_iter_no_change=inf (never stop early)
    a, b = _fit_both(MLPClassifier, sk.MLPClassifier, X[:300], y[:300], solver="sgd",
                     momentum=1.0, hidden_layer_sizes=(6,), max_iter=3, random_state=0,
                     n_iter_no_change=np.inf, learning_rate_init=1e-3)
    _assert_same_weights(a, b)
    assert a.n_iter_ == 3
    proba = a.predict_proba(X)
    np.testing.assert_allclose(a.predict_log_proba(X), np.log(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_float32_trains_in_float32(digits):
    X, y = digits
    X = X.astype(np.float32)
    a, b = _fit_both(MLPClassifier, sk.MLPClassifier, X, y, hidden_layer_sizes=(16,),
                     max_iter=3, random_state=0, solver="sgd")
    assert all(c.dtype == np.float32 for c in a.coefs_ + a.intercepts_)
    _assert_same_weights(a, b, atol=1e-4)
    assert a.predict_proba(X).dtype == np.float32


@pytest.mark.parametrize("backend", fastmlp.available_backends())
def test_every_backend_trains_the_same_model(digits, backend):
    X, y = digits
    with fastmlp.use_backend(backend):
        a, b = _fit_both(MLPClassifier, sk.MLPClassifier, X[:400], y[:400],
                         hidden_layer_sizes=(10,), max_iter=2, random_state=0, solver="sgd")
    _assert_same_weights(a, b)


def test_sparse_input_equals_dense(digits):
    sparse = pytest.importorskip("scipy.sparse")
    X, y = digits
    dense = MLPClassifier((10,), max_iter=3, random_state=0).fit(X, y)
    sp = MLPClassifier((10,), max_iter=3, random_state=0).fit(sparse.csr_matrix(X), y)
    _assert_same_weights(dense, sp, atol=0)
    np.testing.assert_array_equal(sp.predict_proba(sparse.csc_matrix(X)), dense.predict_proba(X))


# -- accuracy within noise of scikit-learn's (bundled data) ----------------------------


def test_accuracy_matches_sklearn_on_digits(digits):
    X, y = digits
    params = dict(hidden_layer_sizes=(100,), max_iter=30, random_state=0)
    a, b = _fit_both(MLPClassifier, sk.MLPClassifier, X[:1400], y[:1400], **params)
    acc_fm, acc_sk = a.score(X[1400:], y[1400:]), b.score(X[1400:], y[1400:])
    print(f"digits test accuracy: fastmlp {acc_fm:.4f}, scikit-learn {acc_sk:.4f}")
    assert acc_sk > 0.85
    assert abs(acc_fm - acc_sk) <= 0.02


@pytest.mark.skipif(not hasattr(datasets, "load_mnist_sample"), reason="no MNIST sample")
def test_accuracy_matches_sklearn_on_mnist_sample():
    X_train, y_train, X_test, y_test = datasets.load_mnist_sample()
    params = dict(hidden_layer_sizes=(100,), max_iter=4, random_state=0)
    a, b = _fit_both(MLPClassifier, sk.MLPClassifier, X_train, y_train, **params)
    acc_fm, acc_sk = a.score(X_test, y_test), b.score(X_test, y_test)
    print(f"MNIST sample test accuracy: fastmlp {acc_fm:.4f}, scikit-learn {acc_sk:.4f}")
    assert acc_sk > 0.9
    assert abs(acc_fm - acc_sk) <= 0.02, (acc_fm, acc_sk)


# -- scikit-learn's machinery ----------------------------------------------------------


def test_pipeline_grid_search_and_cross_validation(digits):
    X, y = digits
    X, y = X[:500], y[:500]
    pipe = make_pipeline(StandardScaler(),
                         MLPClassifier(max_iter=40, learning_rate_init=0.01, random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(8,), (32,)],
                               "mlpclassifier__alpha": [1e-4, 1e-1]}, cv=3)
    grid.fit(X, y)
    assert grid.best_score_ > 0.8
    assert isinstance(grid.best_estimator_[-1], MLPClassifier)
    regressor = MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=100,
                             random_state=0)
    scores = cross_val_score(regressor, X, _regression_targets(X)[:, 0], cv=3)
    assert scores.shape == (3,) and np.all(scores > 0.5)


def test_clone_keeps_parameters_not_state(digits):
    X, y = digits
    est = MLPClassifier((9,), solver="sgd", momentum=0.5, max_iter=2).fit(X, y)
    twin = clone(est)
    assert twin.get_params() == est.get_params()
    assert not hasattr(twin, "coefs_")
    with pytest.raises(NotFittedError):
        twin.predict(X)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_pickle_round_trip_is_exact(digits, solver):
    X, y = digits
    est = MLPClassifier((12,), solver=solver, max_iter=3, random_state=0).fit(X, y)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict_proba(X), est.predict_proba(X))
    for c1, c2 in zip(again.coefs_ + again.intercepts_, est.coefs_ + est.intercepts_):
        np.testing.assert_array_equal(c1, c2)
    # the optimizer state travels too: training on continues identically
    twin = copy.deepcopy(est)
    for model in (est, again, twin):
        model.partial_fit(X[:300], y[:300])
        model.partial_fit(X[300:], y[300:])
    np.testing.assert_array_equal(again.predict_proba(X), est.predict_proba(X))
    np.testing.assert_array_equal(twin.predict_proba(X), est.predict_proba(X))
    assert again.t_ == est.t_ and again.loss_curve_ == est.loss_curve_


def test_replaced_coefs_are_used(digits):
    X, y = digits
    est = MLPClassifier((6,), max_iter=2, random_state=0).fit(X, y)
    ref = sk.MLPClassifier((6,), max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref.fit(X, y)
    est.coefs_ = [c.copy() for c in ref.coefs_]
    est.intercepts_ = [b.copy() for b in ref.intercepts_]
    np.testing.assert_allclose(est.predict_proba(X), ref.predict_proba(X), atol=1e-12)


# -- multi-label, multi-output, partial_fit, warm_start --------------------------------


def test_multilabel_classification():
    X, Y = make_multilabel_classification(n_samples=300, n_classes=4, random_state=0)
    est = MLPClassifier((32,), max_iter=200, random_state=0).fit(X, Y)
    assert est.out_activation_ == "logistic" and est.n_outputs_ == 4
    assert est.predict(X).shape == Y.shape and est.predict_proba(X).shape == Y.shape
    assert est.score(X, Y) > 0.5  # subset accuracy
    assert np.all((est.predict_proba(X) >= 0) & (est.predict_proba(X) <= 1))


def test_multi_output_regression(digits):
    X, _ = digits
    Y = _regression_targets(X)
    est = MLPRegressor(hidden_layer_sizes=(32,), max_iter=100, random_state=0).fit(X, Y)
    assert est.n_outputs_ == 3 and est.predict(X).shape == Y.shape
    assert est.score(X, Y) > 0.8


def test_partial_fit_streaming_matches_sklearn(digits):
    X, y = digits
    classes = np.unique(y)
    ours = MLPClassifier((24,), solver="sgd", learning_rate_init=0.05, random_state=0)
    theirs = sk.MLPClassifier((24,), solver="sgd", learning_rate_init=0.05, random_state=0)
    for _ in range(3):
        for start in range(0, 1500, 250):  # chunks of 250 rows, batch_size auto = 200
            rows = slice(start, start + 250)
            ours.partial_fit(X[rows], y[rows], classes=classes)
            theirs.partial_fit(X[rows], y[rows], classes=classes)
    _assert_same_weights(ours, theirs)
    assert ours.t_ == theirs.t_ == 3 * 1500 and ours.n_iter_ == 1
    assert ours.score(X[1500:], y[1500:]) > 0.75


def test_partial_fit_multilabel_matches_sklearn(digits):
    X, y = digits
    Y = np.c_[y > 4, y % 2 == 0, y == 3].astype(int)
    ours = MLPClassifier((16,), solver="sgd", random_state=0)
    theirs = sk.MLPClassifier((16,), solver="sgd", random_state=0)
    for start in range(0, 1200, 300):
        rows = slice(start, start + 300)
        ours.partial_fit(X[rows], Y[rows], classes=[0, 1, 2])
        theirs.partial_fit(X[rows], Y[rows], classes=[0, 1, 2])
    assert ours.out_activation_ == "logistic" and ours.n_outputs_ == 3
    _assert_same_weights(ours, theirs)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


def test_partial_fit_grows_the_batch(digits):
    X, y = digits
    ours = MLPRegressor(hidden_layer_sizes=(8,), batch_size=300, solver="sgd", random_state=0)
    theirs = sk.MLPRegressor(hidden_layer_sizes=(8,), batch_size=300, solver="sgd", random_state=0)
    target = _regression_targets(X)[:, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "batch_size ... clipped"
        for rows in (slice(0, 50), slice(50, 800), slice(800, 1000)):
            ours.partial_fit(X[rows], target[rows])
            theirs.partial_fit(X[rows], target[rows])
    _assert_same_weights(ours, theirs)


def test_warm_start_matches_sklearn(digits):
    X, y = digits
    ours = MLPClassifier((16,), solver="sgd", warm_start=True, max_iter=2, random_state=0)
    theirs = sk.MLPClassifier((16,), solver="sgd", warm_start=True, max_iter=2,
                              random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(2):
            ours.fit(X, y)
            theirs.fit(X, y)
    _assert_same_weights(ours, theirs)
    assert ours.t_ == theirs.t_ and len(ours.loss_curve_) == 4
    with pytest.raises(ValueError, match="warm_start can only be used"):
        ours.fit(X[y < 5], y[y < 5])


def test_convergence_warning_and_verbose(digits, capsys):
    X, y = digits
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(2\\) reached"):
        MLPClassifier((5,), max_iter=2, verbose=True).fit(X, y)
    assert "Iteration 2, loss = " in capsys.readouterr().out


def test_stopping_rule(digits):
    X, y = digits
    a, b = _fit_both(MLPClassifier, sk.MLPClassifier, X, y, hidden_layer_sizes=(5,),
                     solver="sgd", max_iter=500, tol=0.05, n_iter_no_change=2, random_state=0)
    assert a.n_iter_ == b.n_iter_ < 500  # stopped by tol, as scikit-learn
    assert a.best_loss_ == min(a.loss_curve_)


def test_diverging_training_raises(digits):
    X, _ = digits
    with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
        MLPRegressor(hidden_layer_sizes=(8,), activation="identity", solver="sgd",
                     learning_rate_init=1.0, max_iter=5).fit(X, 1e3 * X[:, 20])


# -- bad input: clear exceptions, as scikit-learn raises them ----------------------------


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_bad_input(digits, Estimator):
    X, y = digits
    X, y = X[:100], y[:100]
    est = Estimator(hidden_layer_sizes=(4,), max_iter=2)
    with pytest.raises(NotFittedError):
        est.predict(X)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.fit(X, y[:-1])
    with pytest.raises(ValueError, match="0 sample"):
        est.fit(X[:0], y[:0])
    X_nan = X.copy()
    X_nan[3, 4] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        est.fit(X_nan, y)
    X_inf = X.copy()
    X_inf[3, 4] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        est.fit(X_inf, y)
    est.fit(X, y)
    with pytest.raises(ValueError, match="X has 63 features, but .* is expecting 64"):
        est.predict(X[:, 1:])
    with pytest.raises(ValueError, match="Input X contains NaN"):
        est.predict(X_nan)


@pytest.mark.parametrize("params, match", [
    (dict(learning_rate_init=-0.1), "'learning_rate_init' parameter"),
    (dict(batch_size=0), "'batch_size' parameter"),
    (dict(solver="newton"), "'solver' parameter"),
    (dict(activation="softmax"), "'activation' parameter"),
    (dict(alpha=-1.0), "'alpha' parameter"),
    (dict(momentum=1.5), "'momentum' parameter"),
    (dict(hidden_layer_sizes=(10, 0)), "hidden_layer_sizes must be > 0"),
])
def test_invalid_hyper_parameters(digits, params, match):
    X, y = digits
    with pytest.raises(ValueError, match=match):
        MLPClassifier(**params).fit(X[:50], y[:50])


# -- lbfgs, sample_weight, poisson: against scikit-learn itself ------------------------

# L-BFGS amplifies rounding as it iterates: compare early, as the target does
LBFGS_EARLY_RTOL = 1e-8


def _max_relative_gap(a, b):
    return max(float(np.max(np.abs(x - y)) / np.max(np.abs(y)))
               for x, y in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_))


@pytest.mark.parametrize("activation", ["relu", "logistic", "tanh", "identity"])
def test_lbfgs_classifier_matches_sklearn(digits, activation):
    X, y = digits
    params = dict(hidden_layer_sizes=(20,), solver="lbfgs", activation=activation,
                  random_state=0, alpha=1e-3)
    mine, theirs = _fit_both(MLPClassifier, sk.MLPClassifier, X[:600], y[:600], max_iter=5,
                             **params)
    assert mine.n_iter_ == theirs.n_iter_ == 5
    assert _max_relative_gap(mine, theirs) < LBFGS_EARLY_RTOL
    assert mine.loss_ == pytest.approx(theirs.loss_, rel=1e-10)
    # lbfgs keeps no loss curve and no stochastic state, as scikit-learn's
    for name in ("loss_curve_", "best_loss_", "validation_scores_"):
        assert hasattr(mine, name) == hasattr(theirs, name) is False
    mine, theirs = _fit_both(MLPClassifier, sk.MLPClassifier, X[:600], y[:600], max_iter=60,
                             **params)
    assert mine.loss_ == pytest.approx(theirs.loss_, rel=1e-4)
    assert abs(mine.score(X[600:], y[600:]) - theirs.score(X[600:], y[600:])) < 0.005


@pytest.mark.parametrize("target", ["binary", "multilabel"])
def test_lbfgs_binary_and_multilabel_match_sklearn(digits, target):
    X, y = digits
    Y = (y % 2) if target == "binary" else np.c_[y % 2, y > 4, y % 3 == 0]
    mine, theirs = _fit_both(MLPClassifier, sk.MLPClassifier, X[:500], Y[:500], max_iter=5,
                             hidden_layer_sizes=(15,), solver="lbfgs", random_state=1)
    assert _max_relative_gap(mine, theirs) < LBFGS_EARLY_RTOL


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_lbfgs_regressor_matches_sklearn(digits, loss, n_outputs):
    X, _ = digits
    Y = _regression_targets(X[:400])[:, :n_outputs]
    if loss == "poisson":
        Y = np.abs(Y) * 3
    Y = Y.ravel() if n_outputs == 1 else Y
    mine, theirs = _fit_both(MLPRegressor, sk.MLPRegressor, X[:400], Y, max_iter=5,
                             loss=loss, hidden_layer_sizes=(12,), solver="lbfgs",
                             random_state=0, alpha=0.01)
    assert _max_relative_gap(mine, theirs) < LBFGS_EARLY_RTOL
    assert mine.loss_ == pytest.approx(theirs.loss_, rel=1e-10)
    np.testing.assert_allclose(mine.predict(X[400:450]), theirs.predict(X[400:450]),
                               rtol=1e-7)


def test_lbfgs_warm_start_and_convergence_warning(digits):
    X, y = digits
    params = dict(hidden_layer_sizes=(10,), solver="lbfgs", max_iter=3, random_state=0,
                  warm_start=True)
    mine, theirs = MLPClassifier(**params), sk.MLPClassifier(**params)
    for est in (mine, theirs):
        with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge after 3"):
            est.fit(X[:300], y[:300])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X[:300], y[:300])  # continues from the weights
    assert _max_relative_gap(mine, theirs) < LBFGS_EARLY_RTOL
    # partial_fit: the classifier's needs a stochastic solver; the regressor's runs lbfgs
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    assert hasattr(MLPRegressor(solver="lbfgs"), "partial_fit") == hasattr(
        sk.MLPRegressor(solver="lbfgs"), "partial_fit")


@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
def test_sample_weight_matches_sklearn(digits, solver):
    X, y = digits
    w = np.random.default_rng(0).uniform(0.1, 3.0, 500)
    params = dict(hidden_layer_sizes=(16,), solver=solver, random_state=0, alpha=0.01,
                  max_iter=5, batch_size=64)
    mine = MLPClassifier(**params).fit(X[:500], y[:500], sample_weight=w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = sk.MLPClassifier(**params).fit(X[:500], y[:500], sample_weight=w)
    if solver == "sgd":
        _assert_same_weights(mine, theirs)
        np.testing.assert_allclose(mine.loss_curve_, theirs.loss_curve_, rtol=1e-10)
    else:
        assert _max_relative_gap(mine, theirs) < LBFGS_EARLY_RTOL
    # integer weights are repeated rows (one full batch, no shuffling)
    counts = np.random.default_rng(1).integers(1, 4, 100)
    one = dict(hidden_layer_sizes=(8,), solver=solver, random_state=0, max_iter=3,
               batch_size=1000, shuffle=False, alpha=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # batch_size clipped to the rows
        a = MLPClassifier(**one).fit(X[:100], y[:100], sample_weight=counts)
        b = MLPClassifier(**one).fit(np.repeat(X[:100], counts, axis=0),
                                     np.repeat(y[:100], counts))
    _assert_same_weights(a, b, atol=1e-9)


def test_sample_weight_in_the_early_stopping_split_and_partial_fit(digits):
    X, y = digits
    w = np.random.default_rng(2).uniform(0.5, 2.0, len(X))
    params = dict(hidden_layer_sizes=(10,), solver="sgd", random_state=0, max_iter=4,
                  early_stopping=True, n_iter_no_change=100)
    mine, theirs = MLPClassifier(**params), sk.MLPClassifier(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mine.fit(X, y, sample_weight=w)
        theirs.fit(X, y, sample_weight=w)
    np.testing.assert_allclose(mine.validation_scores_, theirs.validation_scores_)
    _assert_same_weights(mine, theirs)
    # partial_fit(X, y, sample_weight, classes): scikit-learn's argument order
    mine = MLPRegressor(hidden_layer_sizes=(5,), solver="sgd", random_state=0)
    theirs = sk.MLPRegressor(hidden_layer_sizes=(5,), solver="sgd", random_state=0)
    T = _regression_targets(X)[:, 0]
    for est in (mine, theirs):
        est.partial_fit(X[:200], T[:200], w[:200])
    _assert_same_weights(mine, theirs)
    mine = MLPClassifier((5,), solver="sgd", random_state=0).partial_fit(
        X[:200], y[:200], w[:200], np.arange(10))
    theirs = sk.MLPClassifier((5,), solver="sgd", random_state=0).partial_fit(
        X[:200], y[:200], w[:200], np.arange(10))
    _assert_same_weights(mine, theirs)


def test_bad_sample_weight_is_refused_as_sklearn_does(digits):
    X, y = digits
    X, y = X[:50], y[:50]
    for bad, match in [(np.ones(49), r"sample_weight.shape == \(49,\), expected \(50,\)"),
                       (np.ones((50, 1)), "Sample weights must be 1D array or scalar"),
                       (np.zeros(50), "at least one non-zero"),
                       (np.r_[np.nan, np.ones(49)], "NaN"),
                       (np.array(["a"] * 50), "could not convert")]:
        for Estimator in (MLPClassifier, sk.MLPClassifier):
            with pytest.raises(ValueError, match=match):
                Estimator(max_iter=1).fit(X, y, sample_weight=bad)
    # a batch whose weights sum to 0 or less: refused clearly (scikit-learn divides by it)
    w = np.r_[np.ones(25), -np.ones(25)]
    with pytest.raises(ValueError, match="sample_weight: the weights of batch 0 sum to"):
        MLPClassifier(max_iter=1, shuffle=False, batch_size=50).fit(X, y, sample_weight=w)
    # a scalar weight and a list are accepted, as scikit-learn accepts them
    MLPClassifier(max_iter=1).fit(X, y, sample_weight=2.0)
    MLPClassifier(max_iter=1).fit(X, y, sample_weight=[1.0] * 50)


def test_sample_weight_is_routed_as_metadata(digits):
    X, y = digits
    w = np.random.default_rng(3).uniform(0.5, 2.0, len(X))
    with sklearn.config_context(enable_metadata_routing=True):
        est = MLPClassifier(hidden_layer_sizes=(5,), max_iter=2).set_fit_request(
            sample_weight=True).set_score_request(sample_weight=True)
        search = GridSearchCV(est, {"alpha": [1e-4, 1e-2]}, cv=2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(X, y, sample_weight=w)
    assert search.best_estimator_.n_iter_ == 2


def test_poisson_regressor_matches_sklearn(digits):
    X, _ = digits
    counts = np.random.default_rng(0).poisson(np.exp(X[:, 20] + X[:, 30]))
    mine, theirs = _fit_both(MLPRegressor, sk.MLPRegressor, X[:400], counts[:400],
                             loss="poisson", hidden_layer_sizes=(10,), solver="sgd",
                             random_state=0, max_iter=3, learning_rate_init=0.01)
    assert mine.out_activation_ == theirs.out_activation_ == "exp"
    _assert_same_weights(mine, theirs)
    np.testing.assert_allclose(mine.loss_curve_, theirs.loss_curve_, rtol=1e-10)
    np.testing.assert_allclose(mine.predict(X[400:]), theirs.predict(X[400:]), rtol=1e-9)
    with pytest.raises(ValueError, match="loss='poisson'.* y >= 0"):
        MLPRegressor(loss="poisson").fit(X[:10], -np.ones(10))


# -- fastmlp's extensions (declined by scikit-learn; defaults keep its behaviour) ------


def test_extension_activations_per_layer_dropout_and_dtype(digits):
    X, y = digits
    params = dict(hidden_layer_sizes=(12, 8), solver="sgd", random_state=0, max_iter=3)
    # one name per hidden layer, all the same: exactly scikit-learn's single name
    mine = MLPClassifier(activation=["logistic", "logistic"], **params).fit(X, y)
    theirs = sk.MLPClassifier(activation="logistic", **params).fit(X, y)
    _assert_same_weights(mine, theirs)
    mixed = MLPClassifier(activation=["leaky_relu", "tanh"], hidden_layer_sizes=(12, 8),
                          random_state=0, max_iter=40).fit(X, y)
    assert mixed._plan.activations == ["leaky_relu", "tanh", "identity"]
    assert mixed.score(X, y) > 0.8
    new = MLPClassifier(activation=["gelu", "silu"], hidden_layer_sizes=(12, 8),
                        random_state=0, max_iter=40).fit(X, y)
    assert new._plan.activations == ["gelu", "swish", "identity"]
    assert new.score(X, y) > 0.8
    with pytest.raises(ValueError, match="one per hidden layer"):
        MLPClassifier(activation=["relu"], **params).fit(X, y)
    # dropout trains another model; refused with lbfgs
    dropped = MLPClassifier(dropout=0.3, **params).fit(X, y)
    plain = MLPClassifier(**params).fit(X, y)
    assert not np.allclose(dropped.coefs_[0], plain.coefs_[0])
    with pytest.raises(ValueError, match="dropout: not with solver='lbfgs'"):
        MLPClassifier(dropout=0.3, solver="lbfgs").fit(X, y)
    # dtype: float64 X trained in float32
    small = MLPClassifier(dtype="float32", **params).fit(X, y)
    assert small.coefs_[0].dtype == np.float32 and small.predict_proba(X).dtype == np.float32


def test_set_params_after_fit_changes_the_network_at_once(digits):
    """scikit-learn reads `activation` at every forward pass: so does the drop-in."""
    X, y = digits
    params = dict(hidden_layer_sizes=(10,), solver="sgd", random_state=0, max_iter=2)
    mine, theirs = _fit_both(MLPClassifier, sk.MLPClassifier, X, y, **params)
    for est in (mine, theirs):
        est.set_params(activation="tanh")
    np.testing.assert_allclose(mine.predict_proba(X), theirs.predict_proba(X), rtol=1e-9)


def test_partial_fit_labels(digits):
    X, y = digits
    est = MLPClassifier((4,))
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        est.partial_fit(X, y)
    est.partial_fit(X[y < 5], y[y < 5], classes=np.arange(5))
    with pytest.raises(ValueError, match="`y` has classes not in `self.classes_`"):
        est.partial_fit(X, y)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=np.arange(10))


def test_classifier_rejects_continuous_targets(digits):
    X, _ = digits
    with pytest.raises(ValueError, match="Unknown label type"):
        MLPClassifier().fit(X, X[:, 20] + 0.5)


def test_warnings_point_at_the_callers_line(digits):
    X, y = digits
    with pytest.warns(ConvergenceWarning) as record:
        MLPClassifier(hidden_layer_sizes=(3,), max_iter=1).fit(X[:100], y[:100])
    assert record[0].filename == __file__
    with pytest.warns(UserWarning, match="clipped") as record:
        MLPClassifier(hidden_layer_sizes=(3,), max_iter=1, batch_size=1000).fit(X[:100],
                                                                                 y[:100])
    assert [r.filename for r in record if "clipped" in str(r.message)] == [__file__]


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_extension_losses_absolute_error_and_huber_resist_outliers(solver):
    X, y, clean = outlier_regression(0)  # one row in ten is a gross outlier
    errors = {}
    for loss in ("squared_error", "absolute_error", "huber"):
        est = MLPRegressor(loss=loss, hidden_layer_sizes=(16,), solver=solver, max_iter=300,
                           random_state=0, learning_rate_init=0.01).fit(X, y)
        errors[loss] = float(np.median(np.abs(est.predict(X) - clean)))
        assert np.isfinite(est.loss_)
    assert errors["absolute_error"] < 0.5 * errors["squared_error"]
    assert errors["huber"] < 0.5 * errors["squared_error"]
    with pytest.raises(ValueError, match="loss"):
        MLPRegressor(loss="cauchy").fit(X, y)
