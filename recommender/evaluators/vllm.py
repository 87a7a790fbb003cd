"""VLLMEvaluator: measure configs on a real ``vllm serve`` with NVML energy.

For each config: feasibility first (``recommender.feasibility``/``recommender.space.check_feasibility`` when
present), then a model folder (dummy weights by default), the server(s), and
:meth:`recommender.serving.session.ServingSession.measure` for ``repeats`` runs. Every repeat is saved as its
own Measurement under ``dataset_root``; :meth:`evaluate` returns the median repeat (by energy per output
token, else output throughput). Configs that differ only in client-side or GPU knobs share a server start
(:meth:`evaluate_many` groups by :meth:`ServingConfig.engine_key`). Failures (infeasible, OOM, timeouts,
failed requests) come back as failed Measurements; the server log tail is in ``failure_detail``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from recommender.config import Scenario, ServingConfig
from recommender.errors import ServerStartError
from recommender.evaluators.base import Evaluator
from recommender.measurement import Measurement
from recommender.serving.args import plan_replica_gpus
from recommender.serving.model_folder import special_tokens, write_model_folder
from recommender.serving.session import EnergyBackend, EngineSpec, ServingSession, SessionOptions
from recommender.serving.settings import get_settings
from recommender.slo import SLO

logger = logging.getLogger(__name__)


def _feasibility_checker() -> Callable[[ServingConfig, Scenario], Any] | None:
    for module in ("recommender.feasibility", "recommender.space"):
        try:
            mod = __import__(module, fromlist=["check_feasibility"])
        except ImportError:  # absent, or its optional dependencies (optuna) are not installed here
            continue
        fn = getattr(mod, "check_feasibility", None)
        if fn is not None:
            return fn  # type: ignore[no-any-return]
    return None


def representative(repeats: Sequence[Measurement]) -> Measurement:
    """The median successful repeat (lower median) by energy per output token, else by output throughput;
    the first repeat when none succeeded."""
    ok = [m for m in repeats if m.ok]
    if not ok:
        return repeats[0]
    key = "energy_per_output_token_j" if all(m.value("energy_per_output_token_j") is not None for m in ok) \
        else "throughput_output_tok_s"
    ranked = sorted(ok, key=lambda m: m.value(key) or 0.0)
    return ranked[(len(ranked) - 1) // 2]


class VLLMEvaluator(Evaluator):
    """Measures configs on vLLM servers it starts itself.

    Args:
        dataset_root: folder where every Measurement (and its artifacts) is saved; None keeps nothing on disk.
        gpu_indices: NVML indices this evaluator may use, in order (default ``0 .. num_gpus-1``).
        repeats: runs per config (one Measurement each).
        dummy_weights: random weights from a local model folder (``--load-format dummy``); False serves
            ``scenario.model`` as given (a hub id in the local cache or a folder with weights).
        require_energy: refuse (EnergyMeterError) on hosts without NVML; False measures latency only.
        allow_gpu_tuning: the operator's opt-in to apply ``gpu_clock_mhz``/``power_limit_w``.
        slo: targets for ``slo_attainment``/goodput.
        vllm_command: argv prefix that runs ``vllm serve`` (default: settings / ``RECOMMENDER_VLLM_CMD``).
        vllm_version: flag spellings to use (default: settings, ``0.26.0``).
        start_timeout_s: seconds to wait for ``/health`` (default: settings, 600).
        model_cache_dir: where model folders are written (default: settings).
        skip_tokenizer_init: start vLLM with ``--skip-tokenizer-init`` (prompts are token ids anyway).
        extra_serve_args: appended to every ``vllm serve`` command line.
        check_feasibility: run the feasibility check before starting a server.
        energy_backend: replaces :mod:`recommender.energy` (tests).
        options: further :class:`SessionOptions` fields (warmup_requests, idle_power_s, timeouts, ...).
    """

    name: ClassVar[str] = "vllm"

    def __init__(
        self,
        dataset_root: str | Path | None = "runs/measurements",
        *,
        gpu_indices: Sequence[int] | None = None,
        repeats: int = 1,
        dummy_weights: bool = True,
        require_energy: bool = True,
        allow_gpu_tuning: bool = False,
        slo: SLO | None = None,
        vllm_command: Sequence[str] | None = None,
        vllm_version: str | None = None,
        start_timeout_s: float | None = None,
        model_cache_dir: str | Path | None = None,
        skip_tokenizer_init: bool = False,
        extra_serve_args: Sequence[str] = (),
        check_feasibility: bool = True,
        energy_backend: EnergyBackend | None = None,
        **options: Any,
    ) -> None:
        settings = get_settings()
        self.dataset_root = Path(dataset_root) if dataset_root is not None else None
        self.gpu_indices = None if gpu_indices is None else [int(i) for i in gpu_indices]
        self.dummy_weights = dummy_weights
        self.vllm_command = list(vllm_command) if vllm_command is not None else settings.vllm_command()
        self.vllm_version = vllm_version or settings.vllm_version
        self.start_timeout_s = start_timeout_s or settings.server_start_timeout_s
        self.model_cache_dir = Path(model_cache_dir) if model_cache_dir else settings.model_cache_dir
        self.skip_tokenizer_init = skip_tokenizer_init
        self.extra_serve_args = list(extra_serve_args)
        self.check_feasibility = check_feasibility
        self.energy_backend = energy_backend
        self.options = SessionOptions(repeats=repeats, require_energy=require_energy,
                                      allow_gpu_tuning=allow_gpu_tuning, slo=slo, **options)
        self.server_starts = 0

    # ---- building blocks -------------------------------------------------------------------------------
    def engine_spec(self, config: ServingConfig, scenario: Scenario) -> EngineSpec:
        """Model folder, GPU groups and launch details for ``config`` in ``scenario``.

        Raises:
            InputError: not enough GPUs for ``tp x replicas``, or an unknown model.
        """
        spec = scenario.model_spec
        groups = plan_replica_gpus(config.tensor_parallel_size, config.replicas, self.gpu_indices)
        if self.dummy_weights:
            model_path = str(write_model_folder(spec, self.model_cache_dir))
        else:
            p = Path(scenario.model)
            local = str(p.parent if p.name == "config.json" else p)
            model_path = local if p.exists() else (spec.hf_id or scenario.model)
        special = special_tokens(spec.to_hf_config(), int(spec.vocab_size))
        return EngineSpec(
            model_path=model_path, gpu_groups=groups, vocab_size=int(spec.vocab_size), avoid_ids=special.all_ids,
            dummy_weights=self.dummy_weights, command=self.vllm_command, vllm_version=self.vllm_version,
            start_timeout_s=self.start_timeout_s, skip_tokenizer_init=self.skip_tokenizer_init,
            extra_args=self.extra_serve_args,
        )  # fmt: skip

    def serve(self, config: ServingConfig, scenario: Scenario) -> ServingSession:
        """A session for ``config``'s engine; use as ``with evaluator.serve(c, s) as session: session.measure(...)``.

        Raises (on ``__enter__``): ServerStartError; EnergyMeterError when energy is required but absent.
        """
        self.server_starts += 1
        return ServingSession(config, scenario, self.engine_spec(config, scenario), self.options,
                              self.dataset_root, self.energy_backend)

    def infeasible(self, config: ServingConfig, scenario: Scenario) -> Measurement | None:
        """A failed Measurement (reason ``infeasible``) when the feasibility check rejects ``config``."""
        check = _feasibility_checker() if self.check_feasibility else None
        if check is None:
            return None
        result = check(config, scenario)
        if getattr(result, "ok", True):
            return None
        reasons = "; ".join(getattr(result, "reasons", ()) or ("rejected by the feasibility check",))
        return self.failed(config, scenario, "infeasible", reasons)

    # ---- Evaluator API ---------------------------------------------------------------------------------
    def evaluate(self, config: ServingConfig, scenario: Scenario) -> Measurement:
        """Measure one config; returns the median repeat (all repeats are saved)."""
        return self.evaluate_many([config], scenario)[0]

    def evaluate_many(self, configs: Sequence[ServingConfig], scenario: Scenario) -> list[Measurement]:
        """One representative Measurement per config, in input order (see :func:`representative`)."""
        return [representative(ms) for ms in self.measure_many(configs, scenario)]

    def measure_many(self, configs: Sequence[ServingConfig], scenario: Scenario) -> list[list[Measurement]]:
        """Every repeat of every config, in input order; one server start per distinct engine."""
        out: list[list[Measurement] | None] = [None] * len(configs)
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, c in enumerate(configs):
            bad = self.infeasible(c, scenario)
            if bad is not None:
                out[i] = [bad]
            else:
                groups.setdefault((c.engine_key(), c.replicas), []).append(i)
        for members in groups.values():
            first = configs[members[0]]
            try:
                with self.serve(first, scenario) as session:
                    for i in members:
                        out[i] = session.measure(configs[i], scenario)
            except ServerStartError as e:
                logger.warning("server for %s did not start (%s): %s", first.short(), e.reason, e.detail)
                detail = f"{e.detail}\n--- server log tail ---\n{e.log_tail}"
                for i in members:
                    out[i] = out[i] or [self.failed(configs[i], scenario, e.reason, detail)]
        return [m for m in out if m is not None]

    def failed(self, config: ServingConfig, scenario: Scenario, reason: str, detail: str) -> Measurement:
        """A failed Measurement (``failure_reason=reason``), saved under the dataset root when there is one."""
        m = Measurement(scenario=scenario, config=config, status="failed", failure_reason=reason,
                        failure_detail=detail, provenance="measured", source="recommender.serving")
        if self.dataset_root is not None:
            from recommender.dataset import save_measurement

            save_measurement(m, self.dataset_root)
        return m
