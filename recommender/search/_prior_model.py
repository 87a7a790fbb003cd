"""The corrected prior behind :mod:`recommender.search.guided`: knob features, a Gaussian process over the log
ratio measured / predicted, and the acquisition functions (pure numpy).

For a metric ``m`` the model is ``log measured_m(x) = log predicted_m(x) + r_m(x)`` with a Gaussian-process
prior on the residual ``r_m``: a constant term (the prior's overall multiplicative bias), a Matern-5/2 term
with one length scale per feature (bias that depends on the knobs, or on the prediction's own scale, since
the prior's log prediction is a feature too) and white noise (measurement noise). With no measurement the
residual is ``0 +- prior_sigma``: the prior is trusted as it is. Hyperparameters are fitted by maximum
marginal likelihood (scikit-learn's ``GaussianProcessRegressor``, always from the same initial kernel), refitted
at every new measurement up to 10, then whenever the data grew by 20 % (in between only the posterior is
updated, with the last fitted kernel, which is cheap).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from recommender.catalog.gpu import GPUSpec
    from recommender.config import ServingConfig

MIN_FIT = 3  # measurements before hyperparameters are fitted; fewer use the initial kernel as it is
MAX_ITER = 40  # L-BFGS iterations per hyperparameter fit
REFIT_GROWTH = 1.2  # past 10 measurements, hyperparameters are refitted once the data grew by this factor


def knob_features(configs: Sequence[ServingConfig], gpu: GPUSpec) -> np.ndarray:
    """One row per config, one column per knob: sizes on a log2 scale, flags as 0/1, clock and power limit as a
    fraction of the GPU's maximum boost clock and default limit (``None``, unlocked/default, counts as 1).
    Batch limits left at ``None`` take vLLM's defaults for ``gpu``."""
    rows = []
    for c in configs:
        r = c.resolved(gpu)
        rows.append([
            math.log2(c.tensor_parallel_size), math.log2(c.replicas), math.log2(r.max_num_seqs or 1),
            math.log2(r.max_num_batched_tokens or 1), float(c.enable_chunked_prefill), float(c.precision == "fp8"),
            float(c.kv_cache_dtype == "fp8"), float(c.enable_prefix_caching), float(c.enforce_eager),
            float(c.enable_expert_parallel),
            c.gpu_memory_utilization, (c.gpu_clock_mhz or gpu.sm_clock_max_mhz) / gpu.sm_clock_max_mhz,
            (c.power_limit_w or gpu.tdp_w) / gpu.tdp_w,
        ])
    return np.asarray(rows, dtype=float).reshape(len(rows), 13)


class Standardizer:
    """Centre and scale columns by a reference set's mean and spread; constant columns are dropped."""

    def __init__(self, reference: np.ndarray) -> None:
        sd = reference.std(axis=0) if len(reference) else np.zeros(reference.shape[1])
        self.keep = sd > 1e-12
        self.mean = reference.mean(axis=0)[self.keep] if len(reference) else np.zeros(0)
        self.scale = sd[self.keep]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x[:, self.keep] - self.mean) / self.scale


class ResidualModel:
    """Gaussian process over the log residual of one metric (see the module docstring).

    Not thread-safe; one per metric and worker. ``fit`` keeps the fitted kernel for the fits in between.
    """

    def __init__(self, prior_sigma: float = 0.2, noise: float = 1e-3) -> None:
        self.prior_sigma, self.noise = prior_sigma, noise
        self._kernel: Any = None
        self._gp: Any = None
        self._x = np.zeros((0, 0))
        self._y = np.zeros(0)
        self._n_opt = 0  # measurements at the last hyperparameter fit

    def _initial_kernel(self, dims: int) -> Any:
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        s2 = self.prior_sigma ** 2
        return (ConstantKernel(s2 / 2, (1e-4, 4.0))
                + ConstantKernel(s2 / 2, (1e-4, 4.0)) * Matern(np.full(dims, 2.0), (0.1, 100.0), nu=2.5)
                + WhiteKernel(self.noise, (1e-6, 0.5)))

    def fit(self, x: np.ndarray, y: np.ndarray) -> ResidualModel:
        """Fit to features ``x`` (n, d) and log residuals ``y`` (n,); with ``n == 0`` the prior is kept."""
        self._x, self._y = x, y
        if len(y) == 0:
            self._gp = None
            return self
        n = len(y)
        known = self._kernel is not None and self._kernel_dims() == x.shape[1]
        optimize = n >= MIN_FIT and (not known or n <= 10 or n >= REFIT_GROWTH * self._n_opt)
        # every hyperparameter fit starts from the same initial kernel: the fit depends on the data, not on the
        # path (warm starts from the previous fit got stuck in poor optima on few, noisy points)
        kernel = self._initial_kernel(x.shape[1]) if optimize or not known else self._kernel
        self._gp = _fit_gp(kernel, optimize, x, y)
        self._n_opt = n if optimize else self._n_opt
        self._kernel = self._gp.kernel_
        return self

    def condition(self, x: np.ndarray, y: np.ndarray) -> ResidualModel:
        """A copy that also believes ``y`` at ``x`` (fantasies for pending configs), hyperparameters unchanged."""
        out = ResidualModel(self.prior_sigma, self.noise)
        out._kernel = self._kernel if self._kernel is not None else self._initial_kernel(x.shape[1])
        out._x = np.vstack([self._x, x]) if len(self._y) else x
        out._y = np.concatenate([self._y, y])
        out._gp = _fit_gp(out._kernel, False, out._x, out._y)
        return out

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the log residual at ``x``."""
        if self._gp is None:
            return np.zeros(len(x)), np.full(len(x), self.prior_sigma)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mean, std = self._gp.predict(x, return_std=True)
        return np.asarray(mean, dtype=float), np.maximum(np.asarray(std, dtype=float), 1e-4)

    def _kernel_dims(self) -> int:
        k = self._kernel.k1.k2.k2  # (bias + amplitude * Matern) + white
        return int(np.size(k.length_scale))


def _fit_gp(kernel: Any, optimize: bool, x: np.ndarray, y: np.ndarray) -> Any:
    """A fitted ``GaussianProcessRegressor``; scikit-learn's warnings (a bound hit on tiny data) are silenced."""
    from sklearn.gaussian_process import GaussianProcessRegressor

    gp = GaussianProcessRegressor(kernel, optimizer=_lbfgs if optimize else None, normalize_y=False, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gp.fit(x, y)


def _lbfgs(obj_func: Any, initial_theta: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, float]:
    """scikit-learn's default optimizer (L-BFGS-B on the log marginal likelihood), capped at :data:`MAX_ITER`
    iterations (the fit is redone as data arrive; a rough optimum is enough)."""
    from scipy.optimize import minimize

    res = minimize(obj_func, initial_theta, method="L-BFGS-B", jac=True, bounds=bounds, options={"maxiter": MAX_ITER})
    return res.x, float(res.fun)


# ---- acquisition --------------------------------------------------------------------------------------------
def p_feasible(mu: np.ndarray, sd: np.ndarray, columns: dict[int, float]) -> np.ndarray:
    """P(every modelled SLO target holds): ``columns`` maps a column of ``mu``/``sd`` to its log limit."""
    from scipy.stats import norm

    pof = np.ones(len(mu))
    for i, limit in columns.items():
        pof *= norm.cdf((limit - mu[:, i]) / sd[:, i])
    return pof


def expected_improvement(mu: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    """Expected decrease of a normal(``mu``, ``sd``) variable below ``best``."""
    from scipy.stats import norm

    z = (best - mu) / sd
    return sd * (z * norm.cdf(z) + norm.pdf(z))


def hv_improvement(points: np.ndarray, front: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Hypervolume each of ``points`` (m, 2) adds to the 2-D ``front`` (k, 2) inside ``reference`` (minimized)."""
    inside = front[(front[:, 0] < reference[0]) & (front[:, 1] < reference[1])]
    inside = inside[np.argsort(inside[:, 0], kind="stable")]
    edges, levels = [-np.inf], [reference[1]]
    for x, y in inside:  # the staircase: for x in [edges[j], edges[j+1]) the front dominates y >= levels[j]
        if y < levels[-1]:
            edges.append(x)
            levels.append(y)
    e = np.array([*edges, reference[0]])
    lv = np.array(levels)
    lo = np.maximum(e[None, :-1], points[:, :1])
    width = np.clip(e[None, 1:] - lo, 0.0, None)
    height = np.clip(lv[None, :] - points[:, 1:2], 0.0, None)
    return (width * height).sum(axis=1)
