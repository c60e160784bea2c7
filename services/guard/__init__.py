"""The guard: tier-one detectors (PII, secrets, prompt injection), the reloadable policy that turns findings
into an action and a redacted text, tier two (an LLM on grey-zone findings), restore tokens, the review
queue, and the GuardService and ReviewService servicers."""

from services.guard.detectors import FINDING_TYPES, Finding, detect
from services.guard.policy import (
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
from services.guard.servicer import GuardServicer, ReviewServicer

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
