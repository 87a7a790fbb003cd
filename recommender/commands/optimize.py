"""``recommender optimize``: search a knob space for the energy/latency Pareto front of one scenario.

Several workers: run the same command on several machines with the same ``--storage`` PostgreSQL URL; they
share one study and together spend ``--n-evals`` evaluations. Re-running the same command resumes.
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from recommender.errors import InputError, suggest

if TYPE_CHECKING:
    from recommender.config import Scenario
    from recommender.evaluators.base import Evaluator
    from recommender.search.result import StudyResult
    from recommender.slo import SLO

logger = logging.getLogger(__name__)
EVALUATORS = ("vllm", "surrogate", "replay")
_REPLAY_DATA = typer.Option(None, "--replay-data", help="Measurement files/folders or an ML.ENERGY CSV.")


def _split(values: list[str]) -> list[str]:
    return [p for v in values for p in v.split(",") if p.strip()]


def build_evaluator(kind: str, replay_data: list[str], model: str | None, gpu: str, gpus: int,
                    replay_task: str, dataset_root: Path | None = None, slo: SLO | None = None,
                    allow_gpu_tuning: bool = False) -> Evaluator:
    """The evaluator named by ``--evaluator`` (lazy imports; a missing optional part is a clear error).

    ``dataset_root``, ``slo`` and ``allow_gpu_tuning`` go to the vLLM evaluator, which saves every repeat it
    measures under ``dataset_root``.
    """
    if kind == "vllm":
        try:
            from recommender.evaluators.vllm import VLLMEvaluator
        except ModuleNotFoundError as e:
            raise InputError("--evaluator", kind, f"the vLLM evaluator is not available here ({e.name} missing); "
                             "use --evaluator surrogate or replay") from None
        return VLLMEvaluator(dataset_root=dataset_root, slo=slo, allow_gpu_tuning=allow_gpu_tuning)
    if kind == "surrogate":
        return _load_surrogate(required=True)  # type: ignore[return-value]
    if kind == "replay":
        from recommender.evaluators.replay import ReplayEvaluator

        paths = _split(replay_data)
        if not paths:
            raise InputError("--replay-data", None, "give measurement JSON files/folders or an ML.ENERGY v3 CSV")
        csvs = [p for p in paths if p.endswith(".csv")]
        if csvs:
            if len(paths) > 1:
                raise InputError("--replay-data", paths, "give one ML.ENERGY CSV, or measurement files/folders")
            if not model:
                raise InputError("--model", None, "name the model of the ML.ENERGY group to replay")
            return ReplayEvaluator.from_mlenergy_v3(csvs[0], model, replay_task, gpus, gpu)
        return ReplayEvaluator.from_files(paths)
    raise InputError("--evaluator", kind, f"use one of {EVALUATORS}{suggest(kind, EVALUATORS)}")


def _load_surrogate(required: bool) -> Evaluator | None:
    try:
        from recommender.evaluators.surrogate import SurrogateEvaluator

        return SurrogateEvaluator.load_default()
    except (ModuleNotFoundError, AttributeError, OSError, InputError) as e:
        if required:
            raise InputError("--evaluator", "surrogate", f"no trained surrogate is available ({e}); train one "
                             "with `recommender train` or use --evaluator replay") from None
        return None
    except Exception as e:  # noqa: BLE001 - ArtifactError and friends: warm start is optional
        if required:
            raise
        logger.info("no surrogate for warm start: %s", e)
        return None


def _scenario(evaluator: Evaluator | None, model: str | None, gpu: str, gpus: int, workload: str | None,
              num_requests: int | None) -> Scenario:
    from recommender.commands._common import build_scenario, build_workload

    if workload is None and evaluator is not None and getattr(evaluator, "name", "") == "replay":
        scen = evaluator.scenarios()  # type: ignore[attr-defined]
        if len(scen) == 1:
            return scen[0]
        raise InputError("--workload", None, f"the replay table holds {len(scen)} scenarios; choose with --model, "
                         "--gpu, --gpus and --workload")
    if workload is None or model is None:
        raise InputError("--model/--workload", None, "give the model and a workload preset or YAML file")
    return build_scenario(model, gpu, gpus, build_workload(workload, num_requests=num_requests))


def _command_line(ctx: typer.Context) -> str:
    """The running ``recommender optimize`` command rebuilt from its parsed options (the resume command)."""
    parts = ["recommender", ctx.info_name or "optimize"]
    for p in ctx.command.params:
        if getattr(p, "param_type_name", "") != "option" or p.name not in ctx.params:
            continue
        v = ctx.params[p.name]
        if v == p.default or v is None or v == [] or v == ():
            continue
        flag = getattr(p, "is_flag", False)
        if flag and p.secondary_opts:
            parts.append(p.opts[0] if v else p.secondary_opts[0])
        elif flag:
            parts.append(p.opts[0])
        elif isinstance(v, (list, tuple)):
            for item in v:
                parts += [p.opts[0], str(item)]
        else:
            parts += [p.opts[0], str(v)]
    return shlex.join(parts)


def _boundary_hint(result: StudyResult) -> None:
    """Say that the best config meets the SLO by less than run-to-run noise, and how to repeat it: its ServingConfig
    is written to ``best_config.yaml`` in the run dir for ``recommender measure --config``."""
    import yaml

    from recommender.search.result import BOUNDARY_HEADROOM

    assert result.best is not None and result.best_headroom is not None
    path = Path(result.run_dir) / "best_config.yaml"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(result.best.config.model_dump(mode="json", exclude_none=True), sort_keys=False))
    except OSError as e:
        logger.warning("could not write %s: %s", path, e)
        path = Path("<a ServingConfig YAML of the best config>")
    typer.echo(f"note: the best config meets the SLO with {result.best_headroom:.1%} headroom on its closest target, "
               f"less than the {BOUNDARY_HEADROOM:.0%} a repeat of the same config can move; measure it again before "
               f"deploying it: recommender measure --config {path} --repeats 3 --slo '{result.slo}' (with this "
               "study's --model, --gpu, --gpus and workload flags)")


def register(app: typer.Typer) -> None:
    @app.command("optimize")
    def optimize(
        ctx: typer.Context,
        model: Optional[str] = typer.Option(None, "--model", help="Catalog name, HF id or config.json path."),
        gpu: str = typer.Option("H100", "--gpu", help="GPU type (catalog name or alias)."),
        gpus: int = typer.Option(1, "--gpus", help="GPUs available to the server(s)."),
        workload: Optional[str] = typer.Option(None, "--workload", help="Workload preset or YAML file."),
        num_requests: Optional[int] = typer.Option(None, "--num-requests", help="Override the preset's requests."),
        space: Optional[str] = typer.Option(None, "--space",
                                            help="smoke | vllm-default | FILE (replay default: the table's configs)."),
        slo: str = typer.Option(..., "--slo", help="e.g. 'ttft:p99<=500ms,tpot:p90<=50ms'."),
        objective: Optional[str] = typer.Option(None, "--objective", help="Latency objective (default: tightest SLO)."),
        evaluator: str = typer.Option("vllm", "--evaluator", help="vllm | surrogate | replay."),
        replay_data: Optional[list[str]] = _REPLAY_DATA,
        replay_task: str = typer.Option("lm-arena-chat", "--replay-task", help="ML.ENERGY task to replay."),
        n_evals: int = typer.Option(20, "--n-evals", help="Total evaluations of the study (reruns add the rest)."),
        sampler: str = typer.Option("tpe", "--sampler", help="tpe | gp | nsga2 | random."),
        seed: int = typer.Option(0, "--seed"),
        storage: Optional[str] = typer.Option(None, "--storage", help="RDB URL shared by workers (default SQLite)."),
        study_name: Optional[str] = typer.Option(None, "--study-name"),
        run_dir: Optional[str] = typer.Option(None, "--run-dir"),
        runs_root: str = typer.Option("runs", "--runs-root", help="Parent of the default run directories."),
        warm_start: Optional[bool] = typer.Option(None, "--warm-start/--no-warm-start",
                                                  help="Let the surrogate guide the search: its predictions, "
                                                       "corrected by every measurement, propose configs between the "
                                                       "sampler's (default: on when a surrogate exists and the "
                                                       "evaluator is not it)."),
        batch_size: Optional[int] = typer.Option(None, "--batch-size",
                                                 help="Configs per step sharing server starts (default 4 for vllm, "
                                                      "else 1)."),
        heartbeat_interval: int = typer.Option(30, "--heartbeat-interval", help="Seconds between heartbeats."),
        grace_period: Optional[int] = typer.Option(None, "--grace-period", help="Seconds before a silent trial "
                                                   "is failed and retried (default 3 x heartbeat)."),
        no_feasibility_check: bool = typer.Option(False, "--no-feasibility-check",
                                                  help="Evaluate configs the static check would reject."),
        allow_gpu_tuning: bool = typer.Option(False, "--allow-gpu-tuning",
                                              help="vllm: let the evaluator lock SM clocks / set power limits."),
        confirm_repeats: Optional[int] = typer.Option(
            None, "--confirm-repeats", help="After the budget, run the best config up to N more times while it meets "
                                            "the SLO with under 10% headroom, and judge it on the median of its runs "
                                            "(default 2 for vllm; surrogate and replay answers do not vary: 0)."),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        """Search for the least-energy configs under the SLO; prints the feasible Pareto front."""
        import optuna

        from recommender.commands._common import render_table
        from recommender.search import run_study
        from recommender.slo import SLO

        if logging.getLogger("recommender").getEffectiveLevel() > logging.DEBUG:
            optuna.logging.set_verbosity(optuna.logging.WARNING)  # the CLI owns logging; study logs are ours
        slo_obj = SLO.parse(slo, "--slo")
        if evaluator not in EVALUATORS:
            raise InputError("--evaluator", evaluator, f"use one of {EVALUATORS}{suggest(evaluator, EVALUATORS)}")
        if space == "table" and evaluator != "replay":
            raise InputError("--space", space, "'table' is only for --evaluator replay")
        save = True
        if evaluator == "replay":
            ev = build_evaluator(evaluator, replay_data or [], model, gpu, gpus, replay_task)
            scenario = _scenario(ev, model, gpu, gpus, workload, num_requests)
            sp: Any = ev.space(scenario) if space in (None, "table") else space  # type: ignore[attr-defined]
        else:
            from recommender.search import default_study_name, resolve_location, resolve_objective
            from recommender.space import load_space

            scenario = _scenario(None, model, gpu, gpus, workload, num_requests)
            sp = load_space(space or "vllm-default")
            name = study_name or default_study_name(scenario, sp.name, sp.hash(), resolve_objective(objective, slo_obj),
                                                    slo_obj, sampler, seed)
            loc = resolve_location(scenario, name, storage, run_dir, runs_root)
            ev = build_evaluator(evaluator, [], model, gpu, gpus, replay_task, loc.measurements_dir, slo_obj,
                                 allow_gpu_tuning)
            save = evaluator != "vllm"  # the vLLM evaluator saves every repeat itself, into the same folder
        with ev:
            ws = None
            if warm_start is not False and evaluator != "surrogate":
                ws = _load_surrogate(required=bool(warm_start))
            result = run_study(
                scenario, sp, slo_obj, ev, n_evals, objective=objective, sampler=sampler, seed=seed, storage=storage,
                study_name=study_name, run_dir=run_dir, runs_root=runs_root, warm_start=ws,
                batch_size=batch_size or (4 if evaluator == "vllm" else 1), check_feasible=not no_feasibility_check,
                heartbeat_interval_s=heartbeat_interval, grace_period_s=grace_period, progress=progress,
                save_measurements=save, resume_command=_command_line(ctx),
                confirm_repeats=(2 if evaluator == "vllm" else 0) if confirm_repeats is None else confirm_repeats,
            )
        typer.echo(f"study {result.study_name}: {result.evaluations}/{result.n_evals} evaluations "
                   f"({result.failed} failed), {result.infeasible} infeasible skipped, stop: {result.stop_reason}")
        typer.echo(f"storage {result.storage_url}; run dir {result.run_dir}")
        if result.repeats:
            typer.echo(f"{len(result.repeats)} repeat run(s) of configs at the SLO boundary (not counted above); a "
                       "config run more than once is judged on the median of its runs (column runs)")
        rows = result.summary().to_dict("records")
        for r in rows:
            r["best"] = "*" if r["best"] else ""
            if result.runs:
                r["runs"] = result.runs.get(str(r.get("measurement_id")), 1)
        render_table(rows, title=f"feasible Pareto front (energy J/tok vs {result.objective}, seconds):")
        if result.best is None:
            typer.echo(f"no evaluated config meets the SLO {result.slo}")
        elif result.best_at_boundary:
            _boundary_hint(result)
        if result.storage_url.startswith(("sqlite", "postgresql")):
            typer.echo(f"dashboard: optuna-dashboard {result.storage_url}")
