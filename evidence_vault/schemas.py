"""The JSON Schemas of every format (``schemas/*.schema.json``), loaded from the installed package.

A wheel ships them as ``evidence_vault/schemas/``; an editable install or a checkout reads the top-level
``schemas/`` directory. ``validate`` needs ``jsonschema``, which is a test-only dependency.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

from .errors import UsageError, VaultFormatError

SUFFIX = ".schema.json"


def _directory() -> Traversable:
    packaged = resources.files("evidence_vault") / "schemas"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[1] / "schemas"


def names() -> list[str]:
    """Names of all shipped schemas (``event``, ``vault``, ...)."""
    return sorted(p.name.removesuffix(SUFFIX) for p in _directory().iterdir() if p.name.endswith(SUFFIX))


@cache
def load(name: str) -> dict[str, Any]:
    """The schema called ``name`` (e.g. ``"event"`` for ``event.schema.json``)."""
    try:
        text = (_directory() / f"{name}{SUFFIX}").read_text("utf-8")
    except FileNotFoundError:
        raise UsageError(f"no schema named {name!r}") from None
    value: dict[str, Any] = json.loads(text)
    return value


def validate(name: str, value: Any) -> bool:
    """Check ``value`` against schema ``name``; False if jsonschema is not installed.

    Raises ``VaultFormatError`` naming the first offending location when ``value`` does not conform.
    """
    try:
        import jsonschema  # type: ignore[import-untyped,unused-ignore]
        from referencing import Registry, Resource
    except ImportError:
        return False
    registry: Registry[Any] = Registry().with_resources(
        (load(n)["$id"], Resource.from_contents(load(n))) for n in names()
    )
    validator = jsonschema.Draft202012Validator(
        load(name), registry=registry, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        raise VaultFormatError(f"does not match schema {name!r} at {where}: {error.message}")
    return True
