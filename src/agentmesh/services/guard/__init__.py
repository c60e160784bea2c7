"""The guard: tier-one detectors (PII, secrets, prompt injection), the reloadable policy that turns findings
into an action and a redacted text, tier two (an LLM on grey-zone findings), restore tokens, the review
queue, and the GuardService and ReviewService servicers.

Names load on first use: importing the package (for its plugin or migrations) must not compile the detectors."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentmesh.services.guard.detectors import FINDING_TYPES, Finding, detect
    from agentmesh.services.guard.policy import (
        Action,
        Decision,
        Direction,
        Policy,
        PolicyError,
        PolicyFinding,
        PolicySource,
        Rule,
        decide,
        load_policy,
        restore,
    )
    from agentmesh.services.guard.servicer import GuardServicer, ReviewServicer

_WHERE = {
    "detectors": ("FINDING_TYPES", "Finding", "detect"),
    "policy": (
        "Action",
        "Decision",
        "Direction",
        "Policy",
        "PolicyError",
        "PolicyFinding",
        "PolicySource",
        "Rule",
        "decide",
        "load_policy",
        "restore",
    ),
    "servicer": ("GuardServicer", "ReviewServicer"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = [
    "FINDING_TYPES",
    "Action",
    "Decision",
    "Direction",
    "Finding",
    "GuardServicer",
    "Policy",
    "PolicyError",
    "PolicyFinding",
    "PolicySource",
    "ReviewServicer",
    "Rule",
    "decide",
    "detect",
    "load_policy",
    "restore",
]


def __getattr__(name: str) -> object:
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
