"""One running engine (a vLLM server per replica) and the measurement loop that uses it.

:class:`ServingSession` starts the servers for one engine configuration, measures idle power once, and then
:meth:`~ServingSession.measure` runs workloads against them: GPU knobs applied (operator opt-in only),
warm-up requests (excluded from everything), then ``repeats`` runs, each with energy windows ``whole_run``
and ``steady_state`` from the energy meter, a power timeline, per-request records and the server log, saved
as one :class:`~recommender.measurement.Measurement` per repeat. Configs and scenarios that share the
engine (same ``engine_key()``, model, GPUs and ``max_model_len``) reuse the servers.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np

from recommender.config import Scenario, ServingConfig
from recommender.errors import ActuatorError, EnergyMeterError, InputError
from recommender.measurement import Measurement, Metrics
from recommender.serving.args import build_serve_args
from recommender.serving.loadgen import RunResult, make_prompts, run_load, save_results
from recommender.serving.metrics import compute_metrics
from recommender.serving.server import VLLMServer, detect_vllm_version, free_port
from recommender.serving.spec import EnergyBackend, EngineSpec, SessionOptions, default_energy_backend
from recommender.serving.steady import SteadyStateTracker, saturation_batch, steady_state_counts
from recommender.workload import RequestPlan

__all__ = ["EnergyBackend", "EngineSpec", "ServingSession", "SessionOptions", "default_energy_backend"]

logger = logging.getLogger(__name__)
MODEL_NAME = "model"


def _engine_identity(config: ServingConfig, scenario: Scenario) -> tuple[Any, ...]:
    return (config.engine_key(), config.replicas, scenario.model, scenario.hardware, scenario.effective_max_model_len())


class ServingSession:
    """Servers for one engine configuration, started on ``__enter__`` and stopped (groups killed) on exit.

    Args:
        config: the engine's knobs (GPU knobs may differ between :meth:`measure` calls).
        scenario: model, hardware and ``max_model_len`` (its workload may differ between calls).
        engine: model folder, GPU groups and launch details.
        options: measurement options.
        root: dataset root where measurements and artifacts are saved (None: keep in memory only).
        energy: energy backend (default: :func:`default_energy_backend`).

    Raises:
        ServerStartError: from ``__enter__`` when a server does not become healthy (all are stopped).
        EnergyMeterError: ``require_energy`` and no energy meter on this host.
    """

    def __init__(self, config: ServingConfig, scenario: Scenario, engine: EngineSpec, options: SessionOptions,
                 root: str | Path | None = None, energy: EnergyBackend | None = None) -> None:
        self.config, self.scenario, self.engine, self.options = config, scenario, engine, options
        self.root = Path(root) if root is not None else None
        self.energy = energy or default_energy_backend()
        self.servers: list[VLLMServer] = []
        self.started_at_s: float | None = None
        self.idle_power_w: float | None = None
        self.versions: dict[str, str] = {}
        self.last_runs: list[RunResult] = []
        self._stack = ExitStack()
        self._log_dir = (self.root / ".server_logs") if self.root else Path(tempfile.mkdtemp(prefix="vllm-logs-"))
        meter = self.energy.get_energy_meter(engine.gpus, strict=options.require_energy)
        if not meter.available:
            if options.require_energy:
                raise EnergyMeterError(getattr(meter, "message", "no energy meter on this host"))
            meter = None
        self.meter = meter

    # ---- lifecycle -------------------------------------------------------------------------------------
    def __enter__(self) -> ServingSession:
        self.started_at_s = time.monotonic()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        try:
            for k, gpus in enumerate(self.engine.gpu_groups):
                port = free_port()
                args = build_serve_args(
                    self.config, self.scenario, self.engine.model_path, port, served_model_name=MODEL_NAME,
                    dummy_weights=self.engine.dummy_weights, skip_tokenizer_init=self.engine.skip_tokenizer_init,
                    vllm_version=self.engine.vllm_version, extra_args=self.engine.extra_args,
                )  # fmt: skip
                log = self._log_dir / f"{stamp}-{uuid.uuid4().hex[:6]}-replica{k}.log"
                server = VLLMServer(args, port, log, command=self.engine.command, gpu_indices=gpus,
                                    start_timeout_s=self.engine.start_timeout_s, env=self.engine.env)
                self._stack.callback(server.stop)
                server.launch()  # replicas start in parallel ...
                self.servers.append(server)
            for server in self.servers:
                server.wait_healthy()  # ... and each must become healthy
            self._describe()
            if self.meter is not None and self.options.idle_power_s > 0:
                try:
                    self.idle_power_w = float(self.meter.measure_idle_power_w(self.options.idle_power_s))
                except EnergyMeterError as e:
                    logger.warning("idle power not measured: %s", e)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stack.close()

    def _describe(self) -> None:
        from recommender import __version__

        server = self.servers[0]
        self.versions = {"recommender": __version__,
                         "vllm": detect_vllm_version(server.command, server.environment())}
        try:
            inv = self.energy.gpu_inventory()
        except EnergyMeterError as e:
            logger.warning("no GPU inventory: %s", e)
            inv = []
        used = [g for g in inv if g.get("index") in self.engine.gpus]
        if used:
            g = used[0]
            self.versions.update(driver=str(g.get("driver_version", "")), nvml=str(g.get("nvml_version", "")),
                                 gpu_name=str(g.get("name", "")))

    # ---- measuring -------------------------------------------------------------------------------------
    def compatible(self, config: ServingConfig, scenario: Scenario) -> bool:
        """True when ``config`` in ``scenario`` runs on these servers (same engine, model, GPUs, max_model_len)."""
        return _engine_identity(config, scenario) == _engine_identity(self.config, self.scenario)

    def measure(self, config: ServingConfig, scenario: Scenario, repeats: int | None = None,
                label: str = "", deadline_s: float | None = None) -> list[Measurement]:
        """Run ``scenario.workload`` ``repeats`` times on the running servers; one Measurement per repeat.

        Failures (GPU knobs refused, no request succeeding, a server dying) come back as failed
        Measurements. Each is saved under the dataset root as soon as it is complete. With ``deadline_s``
        (a ``time.monotonic()`` value), a repeat that would likely end after it (judged by the previous
        repeat's duration) is skipped, so fewer Measurements than ``repeats`` may come back.

        Raises:
            InputError: ``config``/``scenario`` need a different engine than this session runs.
        """
        if not self.compatible(config, scenario):
            raise InputError("config", config.short(), "needs a different server start than this session's engine")
        repeats = repeats or self.options.repeats
        if config.gpu_clock_mhz is not None or config.power_limit_w is not None:
            if not self.options.allow_gpu_tuning:
                detail = "the config locks the GPU clock or power limit; rerun with --allow-gpu-tuning to apply it"
                return [self._failed(config, scenario, "gpu_tuning_not_allowed", detail, label)]
        with ExitStack() as stack:
            if config.gpu_clock_mhz is not None or config.power_limit_w is not None:
                try:
                    stack.enter_context(self.energy.gpu_actuator(
                        self.engine.gpus, config.gpu_clock_mhz, config.power_limit_w, enabled=True))
                except (ActuatorError, InputError) as e:
                    return [self._failed(config, scenario, "gpu_control_failed", str(e), label)]
            plan = scenario.workload.sample(max_total_tokens=scenario.effective_max_model_len())
            self._warmup(plan, self._prompts(plan, scenario, salt=999_983))
            out: list[Measurement] = []
            last_s = 0.0
            for rep in range(repeats):
                if deadline_s is not None and out and time.monotonic() + 1.1 * last_s + 5.0 > deadline_s:
                    logger.warning("skipping repeats %d-%d of %s: they would end after the deadline",
                                   rep + 1, repeats, config.short())
                    break
                note = f"repeat {rep + 1}/{repeats}" + (f"; {label}" if label else "")
                t = time.monotonic()
                out.append(self._run_once(config, scenario, plan, self._prompts(plan, scenario, salt=rep), note))
                last_s = time.monotonic() - t
        return out

    def _prompts(self, plan: RequestPlan, scenario: Scenario, salt: int) -> list[list[int]]:
        """Token ids for ``plan``'s exact lengths. Each repeat (and the warm-up) draws other ids, so no run can
        hit a prefix cached by an earlier one even if resetting the cache fails; lengths stay identical."""
        return make_prompts(plan.input_tokens, self.engine.vocab_size, self.engine.avoid_ids,
                            seed=scenario.workload.seed * 1_000_003 + salt)

    def _warmup(self, plan: RequestPlan, prompts: list[list[int]]) -> None:
        n = min(self.options.warmup_requests, len(plan))
        if n <= 0:
            return
        warm = RequestPlan(plan.input_tokens[:n].copy(), np.full(n, self.options.warmup_output_tokens, np.int64),
                           None, n)
        run = run_load([s.base_url for s in self.servers], MODEL_NAME, warm, prompts[:n],
                       request_timeout_s=self.options.request_timeout_s, request_id_prefix="warmup")
        bad = [r.error for r in run.results if not r.success]
        if bad:
            logger.warning("%d of %d warm-up requests failed (first: %s)", len(bad), n, bad[0])

    def _run_once(self, config: ServingConfig, scenario: Scenario, plan: RequestPlan, prompts: list[list[int]],
                  note: str) -> Measurement:
        mid = uuid.uuid4().hex[:12]
        if not all([s.reset_prefix_cache() for s in self.servers]):
            note += "; prefix cache not reset"
        resolved = config.resolved(scenario.hardware.spec)
        batch = saturation_batch(len(plan), plan.concurrency, resolved.max_num_seqs, config.replicas)
        counts = steady_state_counts(len(plan), batch)
        meter, whole, steady = self.meter, f"{mid}:whole_run", f"{mid}:steady_state"
        windows: dict[str, Any] = {}

        def begin_steady(t: float) -> None:
            if meter is not None:
                meter.begin_window(steady)

        def end_steady(t: float) -> None:
            if meter is not None:
                windows["steady_state"] = meter.end_window(steady)

        sampler = None
        if meter is not None and self.energy.power_sampler is not None:
            sampler = self.energy.power_sampler(self.engine.gpus, self.options.power_interval_s)
            sampler.start()
        tracker = SteadyStateTracker(counts, begin_steady, end_steady)
        started: list[float] = []

        def on_start(t: float) -> None:
            if meter is not None:
                meter.begin_window(whole)
            started.append(t)

        def on_end(t: float) -> None:
            if meter is not None and "whole_run" not in windows:
                windows["whole_run"] = meter.end_window(whole)

        try:
            run = run_load(
                [s.base_url for s in self.servers], MODEL_NAME, plan, prompts, tracker=tracker,
                on_start=on_start, on_end=on_end, request_timeout_s=self.options.request_timeout_s,
                stall_timeout_s=self.options.stall_timeout_s, run_timeout_s=self.options.run_timeout_s,
                poll_metrics_s=self.options.poll_metrics_s, request_id_prefix=mid,
            )  # fmt: skip
        finally:
            if meter is not None and started and "whole_run" not in windows:
                windows["whole_run"] = meter.end_window(whole)
                if tracker.open:
                    meter.end_window(steady)  # incomplete window: its energy is not used
            if sampler is not None:
                sampler.stop()
        self.last_runs.append(run)
        return self._build(config, scenario, mid, run, tracker, windows, sampler, note, batch)

    def _build(self, config: ServingConfig, scenario: Scenario, mid: str, run: RunResult, tracker: SteadyStateTracker,
               windows: dict[str, Any], sampler: Any, note: str, batch: int) -> Measurement:
        slo = self.options.slo
        running = [(t, r) for t, r, _ in run.server_samples] or None
        whole = self._with_energy(
            compute_metrics(run.results, slo, duration_s=run.duration_s, server_running=running),
            windows.get("whole_run"), sampler, (run.start_s, run.end_s), run)
        steady_win = windows.get("steady_state")
        bounds = (steady_win.start_s, steady_win.end_s) if steady_win is not None else tracker.window
        steady = None
        if bounds is not None:
            steady = self._with_energy(compute_metrics(run.results, slo, window=bounds, server_running=running),
                                       steady_win, sampler, bounds, run)
        n_ok = sum(r.success for r in run.results)
        status: Literal["ok", "failed"] = "ok"
        reason: str | None = None
        detail = ""
        dead = [s.base_url for s in self.servers if not s.alive]
        if n_ok == 0:
            status, reason = "failed", ("server_crashed" if dead else "requests_failed")
            errors = sorted({r.error for r in run.results if r.error})[:5]
            detail = "no request succeeded; errors: " + "; ".join(errors) + "\n--- server log tail ---\n" + \
                self.servers[0].log_tail(4000)
        elif n_ok < len(run.results):
            note += f"; {len(run.results) - n_ok} of {len(run.results)} requests failed"
        assert self.started_at_s is not None
        info = {
            "measurement_id": mid, "note": note, "steady_batch": batch, "server_argv": self.servers[0].argv,
            "server_startup_s": self.servers[0].startup_s, "idle_power_w": self.idle_power_w,
            "run_start_since_server_start_s": run.start_s - self.started_at_s,
            "run_end_since_server_start_s": run.end_s - self.started_at_s,
            "run_duration_s": run.duration_s, "client_cpu_s": run.client_cpu_s,
            "steady_window_since_run_start_s": [b - run.start_s for b in bounds] if bounds else None,
            "energy_windows": {k: _window_json(w) for k, w in windows.items()},
            "server_samples": [[round(t - run.start_s, 3), r, w] for t, r, w in run.server_samples],
        }  # fmt: skip
        artifacts = self._save_artifacts(config, scenario, mid, run, sampler, info)
        m = Measurement(
            id=mid, scenario=scenario, config=config, status=status, failure_reason=reason, failure_detail=detail,
            provenance="measured", source=f"vllm {self.versions.get('vllm', 'unknown')} (recommender.serving)",
            metrics=whole, steady_state=steady, versions=self.versions, artifacts=artifacts,
            notes=f"{note}; finished {run.end_s - self.started_at_s:.1f} s after server start",
        )  # fmt: skip
        return self._save(m)

    def _with_energy(self, m: Metrics, window: Any, sampler: Any, bounds: tuple[float, float],
                     run: RunResult) -> Metrics:
        update: dict[str, Any] = {"idle_power_w": self.idle_power_w}
        if window is not None and window.energy_j is not None:
            update["energy_j"] = window.energy_j
            update["avg_power_w"] = window.avg_power_w
            if m.output_tokens:
                update["energy_per_output_token_j"] = window.energy_j / m.output_tokens
        if sampler is not None:
            clocks = [s.sm_clock_mhz for s in sampler.samples() if s.sm_clock_mhz is not None
                      and bounds[0] <= s.t_s <= bounds[1]]
            update["mean_sm_clock_mhz"] = float(np.mean(clocks)) if clocks else None
        return m.model_copy(update=update)

    def _save_artifacts(self, config: ServingConfig, scenario: Scenario, mid: str, run: RunResult, sampler: Any,
                        info: dict[str, Any]) -> dict[str, str]:
        if self.root is None:
            return {}
        from recommender.dataset import artifact_dir

        draft = Measurement(id=mid, scenario=scenario, config=config, provenance="measured")
        d = artifact_dir(draft, self.root)
        files: dict[str, Path] = {"run_info": d / "run.json"}
        (d / "run.json").write_text(json.dumps(info, indent=1, default=str))
        if self.options.save_requests:
            files["requests"] = save_results(d / "requests.jsonl.gz", run.results)
        if sampler is not None:
            files["power_timeline"] = sampler.to_csv(d / "power.csv")
        for k, s in enumerate(self.servers):
            dst = d / ("server.log" if k == 0 else f"server_replica{k}.log")
            try:
                shutil.copyfile(s.log_path, dst)
                files["server_log" if k == 0 else f"server_log_replica{k}"] = dst
            except OSError as e:
                logger.warning("could not copy the server log: %s", e)
        return {k: str(Path(p).relative_to(self.root)) for k, p in files.items()}

    def _failed(self, config: ServingConfig, scenario: Scenario, reason: str, detail: str, label: str) -> Measurement:
        m = Measurement(scenario=scenario, config=config, status="failed", failure_reason=reason,
                        failure_detail=detail, provenance="measured", source="recommender.serving",
                        versions=self.versions, notes=label)
        return self._save(m)

    def _save(self, m: Measurement) -> Measurement:
        if self.root is not None:
            from recommender.dataset import save_measurement

            save_measurement(m, self.root)
        return m


def _window_json(w: Any) -> dict[str, Any]:
    keys = ("duration_s", "energy_j", "avg_power_w", "method", "status", "note", "per_gpu_energy_j")
    return {k: getattr(w, k, None) for k in keys}
