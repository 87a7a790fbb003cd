"""Export a chosen config: ``vllm serve --config`` YAML, a Kubernetes manifest, and a JSON report.

The vLLM YAML comes from :func:`recommender.serving.args.to_vllm_config_yaml`, the same table the measured
server is launched from, so what we measured is what operators deploy. GPU knobs are not vLLM options: the
YAML carries them as comments with the ``nvidia-smi`` commands an operator (with the rights) would run, and
the Kubernetes manifest as a documented, opt-in privileged init container.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import yaml

from recommender.config import Scenario, ServingConfig
from recommender.errors import InputError
from recommender.measurement import Recommendation

Format = Literal["vllm", "k8s", "json"]
FORMATS: tuple[str, ...] = ("vllm", "k8s", "json")
DEFAULT_IMAGE = "vllm/vllm-openai:v0.26.0"


def gpu_commands(config: ServingConfig) -> list[str]:
    """The ``nvidia-smi`` commands that apply the GPU knobs (empty when both are at their defaults)."""
    cmds = []
    if config.gpu_clock_mhz is not None:
        cmds.append(f"nvidia-smi --lock-gpu-clocks={config.gpu_clock_mhz},{config.gpu_clock_mhz}")
    if config.power_limit_w is not None:
        cmds.append(f"nvidia-smi --power-limit={config.power_limit_w:g}")
    return cmds


def vllm_yaml(config: ServingConfig, scenario: Scenario, model: str | None = None) -> str:
    """``vllm serve --config`` file text for one replica, with a header naming replicas and GPU knobs."""
    from recommender.serving.args import to_vllm_config_yaml

    body = yaml.safe_dump(to_vllm_config_yaml(config, scenario, model=model), sort_keys=False)
    head = [
        "# vLLM serving config exported by llm-energy-recommender",
        f"# scenario: {scenario.model} on {scenario.hardware.count} x {scenario.hardware.gpu}, "
        f"workload {scenario.workload.name}",
        f"# run: vllm serve --config this.yaml   ({config.replicas} replica(s), each on "
        f"{config.tensor_parallel_size} GPU(s))",
    ]
    cmds = gpu_commands(config)
    if cmds:
        head.append("# GPU knobs (not vLLM options; need admin rights; restore with nvidia-smi -rgc / -pl default):")
        head += [f"#   {c}" for c in cmds]
    return "\n".join(head) + "\n" + body


def k8s_manifest(config: ServingConfig, scenario: Scenario, name: str = "vllm", image: str = DEFAULT_IMAGE,
                 model: str | None = None) -> str:
    """A Deployment (``replicas`` pods, each with ``tensor_parallel_size`` GPUs) and a Service on port 8000."""
    from recommender.serving.args import options_to_argv, to_vllm_config_yaml

    opts = to_vllm_config_yaml(config, scenario, model=model)
    args = [str(opts.pop("model")), *options_to_argv(opts), "--host", "0.0.0.0", "--port", "8000"]
    safe = "".join(c if c.isalnum() or c == "-" else "-" for c in name.lower()).strip("-") or "vllm"
    labels = {"app": safe}
    container: dict[str, Any] = {
        "name": "vllm", "image": image, "command": ["vllm", "serve"], "args": args,
        "ports": [{"containerPort": 8000, "name": "http"}],
        "resources": {"limits": {"nvidia.com/gpu": config.tensor_parallel_size}},
        "readinessProbe": {"httpGet": {"path": "/health", "port": 8000}, "periodSeconds": 10,
                           "failureThreshold": 60},
        "env": [{"name": "NCCL_NVLS_ENABLE", "value": "0"}],
        "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}],
    }
    pod: dict[str, Any] = {
        "containers": [container],
        "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}],
    }
    cmds = gpu_commands(config)
    if cmds:
        pod["initContainers"] = [{
            "name": "gpu-knobs", "image": "nvidia/cuda:12.4.1-base-ubuntu22.04",
            "command": ["sh", "-c", " && ".join(cmds)],
            "securityContext": {"privileged": True},
            "resources": {"limits": {"nvidia.com/gpu": config.tensor_parallel_size}},
        }]
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": safe, "labels": labels, "annotations": {
            "llm-energy-recommender/config": config.short(),
            "llm-energy-recommender/scenario": f"{scenario.model} {scenario.hardware.gpu} {scenario.workload.name}",
        }},
        "spec": {"replicas": config.replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": pod}},
    }
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": safe, "labels": labels},
               "spec": {"selector": labels, "ports": [{"port": 8000, "targetPort": "http", "name": "http"}]}}
    header = ("# Kubernetes manifest exported by llm-energy-recommender. The gpu-knobs init container runs "
              "privileged;\n# delete it if your cluster manages clocks/power limits itself.\n")
    return header + yaml.safe_dump_all([deployment, service], sort_keys=False)


def json_report(rec: Recommendation) -> str:
    """The whole Recommendation as JSON (every number with its provenance and source)."""
    return json.dumps(rec.model_dump(mode="json"), indent=1)


def export(rec: Recommendation, fmt: str, name: str = "vllm", image: str = DEFAULT_IMAGE, model: str | None = None) -> str:
    """Render ``rec``'s chosen config as ``fmt`` (vllm, k8s or json).

    Raises:
        InputError: unknown format, or no chosen config (for vllm/k8s).
    """
    if fmt not in FORMATS:
        raise InputError("format", fmt, f"use one of {FORMATS}")
    if fmt == "json":
        return json_report(rec)
    if rec.chosen is None:
        raise InputError("recommendation.chosen", None, f"nothing to export: {rec.reason or 'no config meets the SLO'}")
    if fmt == "vllm":
        return vllm_yaml(rec.chosen.config, rec.scenario, model=model)
    return k8s_manifest(rec.chosen.config, rec.scenario, name=name, image=image, model=model)
