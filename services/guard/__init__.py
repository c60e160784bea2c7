"""The guard: tier-one detectors (PII, secrets, prompt injection), the policy that turns findings into an
action and a redacted text, and the GuardService servicer."""

from services.guard.detectors import FINDING_TYPES, Finding, detect
from services.guard.policy import (
    Action,
    Decision,
    Direction,
    Policy,
    PolicyError,
    PolicyFinding,
    Rule,
    decide,
    load_policy,
)
from services.guard.servicer import GuardServicer

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
    "Rule",
    "decide",
    "detect",
    "load_policy",
]
