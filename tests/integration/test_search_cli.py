"""``recommender optimize`` end to end over a replay table: front printed, SQLite run dir, resume, errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from recommender.config import Hardware, Scenario, ServingConfig
from recommender.dataset import load_measurements, save_measurement
from recommender.measurement import Measurement, Metrics
from recommender.presets import fixed

pytestmark = pytest.mark.integration
MLENERGY = Path(__file__).resolve().parents[3] / "shared" / "data" / "mlenergy-leaderboard-v3" / "llm_configs_flat.csv"


def _table(root: Path) -> Path:
    sc = Scenario(model="Llama-3.1-8B", hardware=Hardware(gpu="H100", count=1), workload=fixed(num_requests=64))
    for seqs in (8, 16, 32, 64, 128, 256):
        for chunk in (True, False):
            m = Measurement(scenario=sc, provenance="measured",
                            config=ServingConfig(max_num_seqs=seqs, enable_chunked_prefill=chunk),
                            metrics=Metrics(energy_per_output_token_j=0.05 + 1.0 / seqs + 0.01 * (not chunk),
                                            tpot_p90_s=0.01 + 0.0004 * seqs, ttft_p99_s=0.2))
            save_measurement(m, root)
    return root


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run([sys.executable, "-m", "recommender.cli", "optimize", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_optimize_replay_then_resume(tmp_path: Path) -> None:
    data = _table(tmp_path / "data")
    args = ["--evaluator", "replay", "--replay-data", str(data), "--slo", "tpot:p90<=50ms", "--no-progress",
            "--no-feasibility-check", "--seed", "3"]
    r1 = _run([*args, "--n-evals", "4"], tmp_path)
    assert r1.returncode == 0, r1.stderr
    assert "4/4 evaluations" in r1.stdout and "feasible Pareto front" in r1.stdout
    dbs = list((tmp_path / "runs").rglob("study.db"))
    assert len(dbs) == 1
    url = f"sqlite:///{dbs[0]}"
    (name,) = optuna.study.get_all_study_names(url)  # readable by optuna-dashboard
    first = {t.number: t.values for t in optuna.load_study(study_name=name, storage=url).trials
             if t.user_attrs.get("kind") == "evaluated"}
    r2 = _run([*args, "--n-evals", "7"], tmp_path)
    assert r2.returncode == 0, r2.stderr
    assert "7/7 evaluations" in r2.stdout
    study = optuna.load_study(study_name=name, storage=url)
    after = {t.number: t.values for t in study.trials if t.user_attrs.get("kind") == "evaluated"}
    assert len(after) == 7 and {k: after[k] for k in first} == first
    saved = load_measurements([dbs[0].parent / "measurements"])
    assert len(saved) == 7 and {m.provenance for m in saved} == {"measured"}
    assert {t.user_attrs["provenance"] for t in study.trials if "provenance" in t.user_attrs} == {"measured"}
    best = [line for line in r2.stdout.splitlines() if line.startswith("*")]
    assert len(best) == 1 and "seqs=64" in best[0]  # least energy with TPOT p90 <= 50 ms


def _main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from recommender.cli import main

    rc = main(["optimize", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_optimize_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _main(["--evaluator", "replay", "--replay-data", str(tmp_path / "nope"), "--slo", "tpot:p90<=50ms"],
                       capsys)
    assert rc == 2 and err.startswith("error: ") and "Traceback" not in err
    rc, _, err = _main(["--evaluator", "replay", "--replay-data", str(_table(tmp_path / "d")), "--slo",
                        "tpot:p90<=50ms", "--sampler", "tpee", "--storage", "memory"], capsys)
    assert rc == 2 and "did you mean 'tpe'" in err
    rc, _, err = _main(["--evaluator", "vlm", "--slo", "tpot:p90<=50ms"], capsys)
    assert rc == 2 and "did you mean 'vllm'" in err


@pytest.mark.skipif(not MLENERGY.is_file(), reason="ML.ENERGY v3 data not present")
def test_optimize_over_mlenergy_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _main(["--evaluator", "replay", "--replay-data", str(MLENERGY), "--model", "Llama-3.1-8B", "--slo",
                          "itl:p99<=50ms", "--n-evals", "5", "--no-progress", "--no-feasibility-check",
                          "--storage", f"sqlite:///{tmp_path / 'm.db'}"], capsys)
    assert rc == 0, err
    assert "5/5 evaluations" in out and "public" in out


def test_a_best_config_at_the_slo_boundary_is_flagged_with_a_repeat_command(tmp_path: Path) -> None:
    """tpot_p90 of the table is 0.01 + 0.0004 * seqs: at seqs 256 it is 112.4 ms, 2.3 % under a 115 ms limit."""
    data = _table(tmp_path / "data")
    base = ["--evaluator", "replay", "--replay-data", str(data), "--no-progress", "--no-feasibility-check",
            "--sampler", "random", "--n-evals", "12"]
    tight = _run([*base, "--slo", "tpot:p90<=115ms", "--run-dir", str(tmp_path / "tight")], tmp_path)
    assert tight.returncode == 0, tight.stderr
    assert "seqs=256" in tight.stdout and "slo_headroom" in tight.stdout
    assert "2.3% headroom" in tight.stdout and "--repeats 3" in tight.stdout
    saved = (tmp_path / "tight" / "best_config.yaml").read_text()
    from recommender.commands._common import build_config

    cfg = build_config(str(tmp_path / "tight" / "best_config.yaml"), {})
    assert cfg.max_num_seqs == 256 and cfg.enable_chunked_prefill is True, saved
    loose = _run([*base, "--slo", "tpot:p90<=200ms", "--run-dir", str(tmp_path / "loose")], tmp_path)
    assert loose.returncode == 0, loose.stderr
    assert "headroom on its closest target" not in loose.stdout  # 112.4 of 200 ms: 44 % to spare
    assert not (tmp_path / "loose" / "best_config.yaml").exists()


def test_confirm_repeats_rerun_the_boundary_best_and_show_its_runs(tmp_path: Path) -> None:
    data = _table(tmp_path / "data")
    base = ["--evaluator", "replay", "--replay-data", str(data), "--no-progress", "--no-feasibility-check",
            "--sampler", "random", "--n-evals", "12", "--slo", "tpot:p90<=115ms"]
    r = _run([*base, "--confirm-repeats", "2", "--run-dir", str(tmp_path / "rep")], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "12/12 evaluations" in r.stdout and "2 repeat run(s)" in r.stdout
    assert "runs" in r.stdout and "2.3% headroom" in r.stdout  # a replay repeats the same numbers: still flagged
    bad = _run([*base, "--confirm-repeats", "-1", "--run-dir", str(tmp_path / "bad")], tmp_path)
    assert bad.returncode != 0 and "--confirm-repeats" in bad.stderr and "Traceback" not in bad.stderr
