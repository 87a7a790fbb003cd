#!/usr/bin/env bash
# Probe the lent GPU machine (read-only): vLLM flags/defaults and NVML capabilities. Writes to $OUT.
# Never changes clocks, power limits or any GPU setting.
set -uo pipefail
OUT=${OUT:-/tmp/probe}; mkdir -p "$OUT"
PY=${PY:-python3}
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
nvidia-smi -q -d POWER,CLOCK,PERFORMANCE,SUPPORTED_CLOCKS > "$OUT/nvidia-smi-q.txt" 2>&1
$PY -m vllm.entrypoints.cli.main serve --help=all > "$OUT/vllm-serve-help.txt" 2>&1 || \
  $PY -m vllm.entrypoints.cli.main serve --help > "$OUT/vllm-serve-help.txt" 2>&1
$PY - > "$OUT/vllm-facts.txt" 2>&1 <<'PYEOF'
import importlib.metadata as md, inspect, re
print("vllm", md.version("vllm"))
import vllm.engine.arg_utils as au
src = inspect.getsource(au)
for m in re.finditer(r"default_max_num_(seqs|batched_tokens)[^\n]*\n(?:[^\n]*\n){0,6}", src):
    print(m.group(0))
i = src.find("def _set_default_args")
print(src[i:i+4000] if i >= 0 else "no _set_default_args")
PYEOF
$PY - > "$OUT/nvml-facts.txt" 2>&1 <<'PYEOF'
import time, pynvml as n
n.nvmlInit()
print("driver", n.nvmlSystemGetDriverVersion(), "nvml", n.nvmlSystemGetNVMLVersion())
h = n.nvmlDeviceGetHandleByIndex(0)
print("name", n.nvmlDeviceGetName(h))
print("power limit constraints mW", n.nvmlDeviceGetPowerManagementLimitConstraints(h), "current", n.nvmlDeviceGetPowerManagementLimit(h), "default", n.nvmlDeviceGetPowerManagementDefaultLimit(h))
print("max clocks sm", n.nvmlDeviceGetMaxClockInfo(h, n.NVML_CLOCK_SM), "mem", n.nvmlDeviceGetMaxClockInfo(h, n.NVML_CLOCK_MEM))
try:
    mems = n.nvmlDeviceGetSupportedMemoryClocks(h); print("supported mem clocks", mems)
    g = n.nvmlDeviceGetSupportedGraphicsClocks(h, mems[0]); print("supported sm clocks", len(g), g[:5], g[-5:])
except Exception as e: print("supported clocks err", e)
# energy counter update period: poll fast for 2 s, record distinct changes
e0 = n.nvmlDeviceGetTotalEnergyConsumption(h); t0 = time.monotonic(); changes = []; last = e0
while time.monotonic() - t0 < 2.0:
    e = n.nvmlDeviceGetTotalEnergyConsumption(h)
    if e != last: changes.append((time.monotonic() - t0, e - last)); last = e
print("energy counter changes in 2 s:", len(changes), "first:", changes[:6])
p = []; t0 = time.monotonic()
while time.monotonic() - t0 < 3.0:
    p.append(n.nvmlDeviceGetPowerUsage(h) / 1e3); time.sleep(0.1)
print("idle power W mean %.1f min %.1f max %.1f" % (sum(p)/len(p), min(p), max(p)))
print("sm clock now", n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM), "temp", n.nvmlDeviceGetTemperature(h, 0))
try: print("throttle reasons", hex(n.nvmlDeviceGetCurrentClocksEventReasons(h)))
except Exception as e: print("event reasons err", e)
print("persistence", n.nvmlDeviceGetPersistenceMode(h))
PYEOF
grep -E -- "--(max-num-seqs|max-num-batched-tokens|enable-chunked-prefill|enable-prefix-caching|kv-cache-dtype|quantization|enforce-eager|gpu-memory-utilization|load-format|skip-tokenizer-init|disable-log-requests|enable-log-requests|max-model-len|served-model-name|dtype|config)\b" "$OUT/vllm-serve-help.txt" | head -40
cat "$OUT/nvml-facts.txt"; head -60 "$OUT/vllm-facts.txt"
