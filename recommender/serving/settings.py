"""Runtime settings of the serving layer, read from ``RECOMMENDER_*`` environment variables.

These are host facts (which executable runs vLLM, where model folders go, how long a start may take), not
knobs: they never change what is measured, only how the tool gets there.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from recommender.errors import InputError

#: How vLLM's OpenAI server is started when nothing else is configured; ``serve`` args follow.
DEFAULT_VLLM_COMMAND: tuple[str, ...] = (sys.executable, "-m", "vllm.entrypoints.cli.main", "serve")


class ServingSettings(BaseSettings):
    """Serving-layer settings; each field reads ``RECOMMENDER_<FIELD>`` (case-insensitive).

    Attributes:
        vllm_cmd: command that runs ``vllm serve`` (everything before the model argument), as a shell-quoted
            string or a JSON list, e.g. ``"/tmp/site/bin/vllm serve"``. Empty means
            :data:`DEFAULT_VLLM_COMMAND` (this interpreter's ``python -m vllm.entrypoints.cli.main serve``).
        server_start_timeout_s: seconds to wait for ``GET /health`` before the start counts as ``timeout``.
        server_stop_timeout_s: seconds between SIGTERM and SIGKILL of the server's process group.
        model_cache_dir: where dummy-weight model folders are written.
        vllm_version: vLLM version whose flag spellings to use when it cannot be detected (``"0.26.0"``).
    """

    model_config = SettingsConfigDict(env_prefix="RECOMMENDER_", extra="ignore")

    vllm_cmd: str = ""
    server_start_timeout_s: float = Field(default=600.0, gt=0)
    server_stop_timeout_s: float = Field(default=30.0, gt=0)
    model_cache_dir: Path = Path.home() / ".cache" / "llm-energy-recommender" / "models"
    vllm_version: str = "0.26.0"

    def vllm_command(self) -> list[str]:
        """The vLLM command as an argv list (see :func:`parse_command`)."""
        return parse_command(self.vllm_cmd) if self.vllm_cmd.strip() else list(DEFAULT_VLLM_COMMAND)


def parse_command(text: str, field: str = "RECOMMENDER_VLLM_CMD") -> list[str]:
    """Parse a command given as a JSON list of strings or a shell-quoted string into an argv list.

    Raises:
        InputError: the text is empty, not valid JSON when it starts with ``[``, or not splittable.
    """
    text = text.strip()
    try:
        if text.startswith("["):
            argv = json.loads(text)
            if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
                raise ValueError("not a list of strings")
        else:
            argv = shlex.split(text)
    except ValueError as e:
        raise InputError(field, text, f"give a shell-quoted command or a JSON list of strings ({e})") from e
    if not argv:
        raise InputError(field, text, "give the command that runs `vllm serve`, e.g. 'vllm serve'")
    return argv


def get_settings() -> ServingSettings:
    """Fresh settings from the current environment (cheap; not cached so tests can set variables)."""
    return ServingSettings()
