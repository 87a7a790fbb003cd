"""The CLI end to end in a subprocess: good paths work, bad input exits non-zero with one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "recommender.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_help_on_every_subcommand() -> None:
    top = run("--help")
    assert top.returncode == 0
    for cmd in ("spaces", "catalog", "check"):
        assert cmd in top.stdout
        r = run(cmd, "--help")
        assert r.returncode == 0 and "Usage" in r.stdout, cmd


def test_spaces_show_and_catalog() -> None:
    r = run("spaces", "show", "vllm-default")
    assert r.returncode == 0 and "tensor_parallel_size" in r.stdout and "--max-num-seqs" in r.stdout
    r = run("catalog", "models")
    assert r.returncode == 0 and "Llama-3.1-70B" in r.stdout
    r = run("catalog", "gpus")
    assert r.returncode == 0 and "H100-SXM" in r.stdout


def test_check_feasible_and_infeasible_exit_codes() -> None:
    bad = run("check", "--model", "Llama-3.1-70B", "--gpu", "H100", "--gpus", "1")
    assert bad.returncode == 1 and "INFEASIBLE" in bad.stdout and "exceed" in bad.stdout
    good = run("check", "--model", "Llama-3.1-70B", "--gpu", "H100", "--gpus", "4", "--tp", "4")
    assert good.returncode == 0 and "FEASIBLE" in good.stdout


def _local_config(tmp_path: Path, **over: object) -> Path:
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
           "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
           "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192}
    cfg.update(over)
    d = tmp_path / "m"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def test_local_config_json_works(tmp_path: Path) -> None:
    r = run("check", "--model", str(_local_config(tmp_path)), "--gpu", "L40S")
    assert r.returncode == 0, r.stderr


BAD_CASES = [
    (("check", "--model", "Llama-3.1-8C"), "model", "did you mean"),
    (("check", "--model", "Llama-3.1-8B", "--gpu", "H1000"), "gpu", "did you mean"),
    (("check", "--model", "Llama-3.1-8B", "--gpus", "0"), "--gpu/--gpus:count", "greater than or equal to 1"),
    (("check", "--model", "Llama-3.1-8B", "--max-num-seqs", "0"), "config:max_num_seqs", "greater than or equal to 1"),
    (("check", "--model", "Llama-3.1-8B", "--precision", "int4"), "config:precision", "'bf16' or 'fp8'"),
    (("check", "--model", "Llama-3.1-8B", "--gpu-memory-utilization", "1.5"), "gpu_memory_utilization", "0.99"),
    (("check", "--model", "Llama-3.1-8B", "--workload", "azure-chat"), "workload", "one of"),
    (("check", "--model", "Llama-3.1-8B", "--workload", "missing.yaml"), "--workload", "existing YAML"),
    (("check", "--model", "Llama-3.1-8B", "--config", "nope.yaml"), "--config", "existing YAML"),
    (("check", "--model", "Llama-3.1-8B", "--space", "smoek"), "space", "did you mean 'smoke'"),
    (("spaces", "show", "does-not-exist"), "space", "one of"),
]


@pytest.mark.parametrize(("args", "field", "hint"), BAD_CASES)
def test_bad_flags_give_one_line_errors(args: tuple[str, ...], field: str, hint: str) -> None:
    r = run(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and field in r.stderr and hint in r.stderr, r.stderr


def test_bad_config_yaml_and_config_json(tmp_path: Path) -> None:
    y = tmp_path / "c.yaml"
    y.write_text("max_num_seqs: 64\nmax_num_seq: 32\n")
    r = run("check", "--model", "Llama-3.1-8B", "--config", str(y))
    assert r.returncode == 2 and "max_num_seq" in r.stderr and "unknown field" in r.stderr
    y.write_text("max_num_seqs: [64\n")
    r = run("check", "--model", "Llama-3.1-8B", "--config", str(y))
    assert r.returncode == 2 and "not valid YAML" in r.stderr and "Traceback" not in r.stderr
    w = tmp_path / "w.yaml"
    w.write_text("input_tokens: {kind: fixed, tokens: 10}\noutput_tokens: {kind: fixed, tokens: 10}\n"
                 "arrivals: {kind: poisson, rate_rps: 0}\nnum_requests: 10\n")
    r = run("check", "--model", "Llama-3.1-8B", "--workload", str(w))
    assert r.returncode == 2 and "arrivals" in r.stderr and "rate_rps" in r.stderr
    d = _local_config(tmp_path, hidden_size=-5)
    r = run("check", "--model", str(d))
    assert r.returncode == 2 and "hidden_size" in r.stderr and "Traceback" not in r.stderr
    (d / "config.json").write_text("{not json")
    r = run("check", "--model", str(d))
    assert r.returncode == 2 and "JSON" in r.stderr


def test_unknown_option_is_a_usage_error() -> None:
    r = run("check", "--modle", "x")
    assert r.returncode == 2 and "Traceback" not in r.stderr
