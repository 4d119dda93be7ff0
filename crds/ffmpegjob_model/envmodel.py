"""Settings models read from the environment with pydantic alone (no pydantic-settings).

The contract's own settings (`S3Settings`, `URLRules`) are read by every worker at start-up,
where importing pydantic-settings cost ~40 ms of CPU on a quiet machine (its sources pull in
dotenv, the email parser, ...). Their fields are plain strings and booleans, so the part of
pydantic-settings they used is small and kept here: a field's value comes from the keyword
argument if given, else from the environment variable `<env_prefix><FIELD NAME>` (or the field's
`validation_alias`, without the prefix), matched case-insensitively, else from the default;
pydantic validates the result as usual (`"true"`/`"1"`/`"yes"` -> True). As with
pydantic-settings, `model_validate` reads the environment too (pydantic calls an overridden
`__init__` when validating); tests/unit/test_envmodel.py pins the behaviour."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class EnvModel(BaseModel):
    model_config = ConfigDict(extra="ignore")

    env_prefix: ClassVar[str] = ""

    def __init__(self, **values: Any) -> None:
        super().__init__(**{**self.from_environment(), **values})

    @classmethod
    def from_environment(cls) -> dict[str, str]:
        """The values the environment sets, keyed as validation expects them."""
        env = {k.lower(): v for k, v in os.environ.items()}
        found: dict[str, str] = {}
        for name, info in cls.model_fields.items():
            key = info.validation_alias if isinstance(info.validation_alias, str) else None
            var = (key or f"{cls.env_prefix}{name}").lower()
            if var in env:
                found[key or name] = env[var]
        return found
