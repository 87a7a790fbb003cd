"""Shared pydantic base for the models at the edges (strict, frozen, versioned where persisted)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

SCHEMA_VERSION = 1


class StrictModel(BaseModel):
    """Frozen pydantic model that rejects unknown fields (typos fail loudly, with the field's name)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
