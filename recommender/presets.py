"""Named workload presets built from the public traces and benchmarks in ``../shared/data``.

Each preset is a function of a few overrides (request count, rate, concurrency) returning a validated
:class:`~recommender.workload.Workload`. The numbers that define them are derived in
``scripts/derive_workload_presets.py`` or quoted from the data's SOURCE.md; see each description.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from recommender.errors import InputError, suggest
from recommender.workload import (
    ClosedLoop,
    ConversationLength,
    EmpiricalLength,
    FixedLength,
    LognormalLength,
    PoissonArrivals,
    TraceArrivals,
    Workload,
    load_trace,
)


def _trace_rate(trace: str) -> float:
    t = load_trace(trace).arrival_s
    return float(len(t) / (t[-1] - t[0]))


def _azure(kind: str) -> Callable[..., Workload]:
    trace = f"azure-{kind}-2023"

    def make(num_requests: int = 500, rate_rps: float | None = None, max_tokens: int = 8192, seed: int = 0) -> Workload:
        rate = rate_rps if rate_rps is not None else _trace_rate(trace)
        return Workload(
            name=trace,
            description=(
                f"Azure LLM inference trace 2023 ({kind}) lengths, Poisson arrivals at {rate:.2f} req/s "
                "(the trace's mean rate unless overridden). Patel et al., Splitwise, ISCA'24; CC-BY-4.0."
            ),
            input_tokens=EmpiricalLength(trace=trace, column="input_tokens", max_tokens=max_tokens),
            output_tokens=EmpiricalLength(trace=trace, column="output_tokens", max_tokens=max_tokens),
            arrivals=PoissonArrivals(rate_rps=rate),
            num_requests=num_requests,
            seed=seed,
        )

    return make


def _replay(trace: str, label: str) -> Callable[..., Workload]:
    def make(duration_s: float = 300.0, time_scale: float = 1.0, start_s: float = 0.0, max_tokens: int = 8192,
             seed: int = 0) -> Workload:
        return Workload(
            name=f"{trace}-replay",
            description=f"{label}: replay of the trace's own timestamps and lengths (time scale {time_scale:g}).",
            input_tokens=EmpiricalLength(trace=trace, column="input_tokens", max_tokens=max_tokens),
            output_tokens=EmpiricalLength(trace=trace, column="output_tokens", max_tokens=max_tokens),
            arrivals=TraceArrivals(trace=trace, time_scale=time_scale, start_s=start_s),
            duration_s=duration_s,
            seed=seed,
        )

    return make


# LMSYS-Chat-1M (Zheng et al., ICLR 2024, Table 1): 2.0 turns per conversation, 69.5 tokens per user prompt,
# 214.5 tokens per model response. The closest published statistics of Chatbot Arena conversations, the source of
# ML.ENERGY's lm-arena-chat (lmarena-ai/arena-human-preference-100k).
LMSYS_TURNS_PER_CONVERSATION = 2.0
LMSYS_USER_TOKENS_MEAN = 69.5
LMSYS_REPLY_TOKENS_MEAN = 214.5
# Llama 3.1 chat template: <|begin_of_text|>, the default system block (knowledge/today dates) and the closing
# assistant header ~28 tokens once; <|start_header_id|>role<|end_header_id|>\n\n ... <|eot_id|> 5 per message.
CHAT_TEMPLATE_TOKENS = 28
CHAT_TEMPLATE_TOKENS_PER_MESSAGE = 5


def mlenergy_chat(num_requests: int = 1024, concurrency: int | None = None, seed: int = 0) -> Workload:
    """The ML.ENERGY v3 ``lm-arena-chat`` setting as closely as the public export allows.

    All requests are submitted at once (closed loop with concurrency = num_requests) and the server's
    ``max_num_seqs`` caps the batch, as the ML.ENERGY benchmark does. Inputs: ML.ENERGY turns every turn of an
    LMArena conversation into one request whose prompt is the whole history so far (user prompts and earlier
    replies; ml-energy/benchmark ``LMArenaHumanPreferenceDataset``). The export has no input lengths, so the
    history is modelled (:class:`~recommender.workload.ConversationLength`) with LMSYS-Chat-1M's published
    means: 2.0 turns per conversation, 69.5 tokens per prompt, 214.5 per reply, plus the Llama 3.1 chat template;
    mean ~395 tokens, median ~205, p99 ~2230, clipped at 4096. Outputs: the export gives only the mean generated
    length (Llama-3.1-8B-Instruct: 388-405 tokens over its 11 H100 rows, mean ~396); we force a lognormal with
    that mean (median 310, sigma 0.7, clipped to [16, 2048]) since our client fixes lengths with ``ignore_eos``.
    """
    return Workload(
        name="mlenergy-chat",
        description=mlenergy_chat.__doc__.split("\n\n")[0] if mlenergy_chat.__doc__ else "",
        input_tokens=ConversationLength(
            mean_turns=LMSYS_TURNS_PER_CONVERSATION, user_mean_tokens=LMSYS_USER_TOKENS_MEAN, user_sigma=1.0,
            reply_mean_tokens=LMSYS_REPLY_TOKENS_MEAN, reply_sigma=0.8, template_tokens=CHAT_TEMPLATE_TOKENS,
            template_tokens_per_message=CHAT_TEMPLATE_TOKENS_PER_MESSAGE, min_tokens=8, max_tokens=4096,
        ),
        output_tokens=LognormalLength(median_tokens=310, sigma=0.7, min_tokens=16, max_tokens=2048),
        arrivals=ClosedLoop(concurrency=concurrency or num_requests),
        num_requests=num_requests,
        seed=seed,
    )


def fixed(input_tokens: int = 256, output_tokens: int = 400, num_requests: int = 192, concurrency: int | None = None,
          seed: int = 0) -> Workload:
    """Fixed lengths, closed loop (all at once unless ``concurrency`` is given)."""
    return Workload(
        name=f"fixed-{input_tokens}-{output_tokens}",
        description=f"{input_tokens} input and {output_tokens} output tokens per request, closed loop.",
        input_tokens=FixedLength(tokens=input_tokens),
        output_tokens=FixedLength(tokens=output_tokens),
        arrivals=ClosedLoop(concurrency=concurrency or num_requests),
        num_requests=num_requests,
        seed=seed,
    )


PRESETS: dict[str, Callable[..., Workload]] = {
    "azure-code-2023": _azure("code"),
    "azure-conv-2023": _azure("conv"),
    "azure-code-2023-replay": _replay("azure-code-2023", "Azure 2023 code trace"),
    "azure-conv-2023-replay": _replay("azure-conv-2023", "Azure 2023 conversation trace"),
    "mooncake-conversation-replay": _replay("mooncake-conversation", "Mooncake FAST'25 conversation trace"),
    "mlenergy-chat": mlenergy_chat,
    "fixed": fixed,
}


def get_preset(name: str, **overrides: Any) -> Workload:
    """Build preset ``name`` with keyword overrides (e.g. ``num_requests=200``).

    Raises:
        InputError: unknown preset (with suggestion) or an override the preset does not take.
    """
    if name not in PRESETS:
        raise InputError("workload", name, f"use one of {sorted(PRESETS)}{suggest(name, PRESETS)} or a YAML file")
    try:
        return PRESETS[name](**overrides)
    except TypeError as e:
        raise InputError(f"workload.{name}", overrides, f"this preset does not take these options ({e})") from e
