"""The executor's allow-list. A tool is a pydantic model of its arguments (the JSON schema the LLM sees and
the validator of what it sends back) plus a pure function. Anything not in the registry is refused."""

from __future__ import annotations

import ast
import datetime as dt
import logging
import math
import operator
import zoneinfo
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentmesh.agent import ToolOutcome

log = logging.getLogger(__name__)


class CalculatorArgs(BaseModel):
    """Evaluate an arithmetic expression: numbers, + - * / // % ** and parentheses."""

    model_config = ConfigDict(extra="forbid")
    expression: str = Field(min_length=1, max_length=200, description="e.g. '17 * 23 + 4'")


class ClockArgs(BaseModel):
    """The current date and time in a time zone."""

    model_config = ConfigDict(extra="forbid")
    timezone: str = Field(default="UTC", max_length=64, description="IANA zone such as 'UTC' or 'Europe/Paris'")


_BINOPS: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[float], float]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


class ToolError(Exception):
    """The tool ran but could not produce a result from valid arguments (e.g. division by zero)."""


# Results beyond this many digits are refused: Python's int-to-str limit is 4,300 digits, and nobody asks a
# calculator for more.
_MAX_DIGITS = 1_000
# Errors an expression of valid syntax can still raise: float overflow (1e6**64), int-to-str limits, division
# by zero, a result too big for memory, parentheses nested past the parser's stack.
_ARITHMETIC_ERRORS = (ArithmeticError, ValueError, MemoryError, RecursionError)


def _digits(value: float | int) -> int:
    return value.bit_length() * 3 // 10 if isinstance(value, int) else 0


def _eval(node: ast.AST) -> float | int:
    # Walk the AST ourselves: eval() would run arbitrary code the model wrote.
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    # Numbers only: a bool is an int too, and True + True is no arithmetic a user wrote.
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 1e6):
            raise ToolError("exponent too large")
        if isinstance(node.op, ast.Mult) and _digits(left) + _digits(right) > 2 * _MAX_DIGITS:
            raise ToolError(f"the result has more than {_MAX_DIGITS} digits")
        return _BINOPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    raise ToolError(f"unsupported syntax: {type(node).__name__}")


def _format(value: float | int | complex) -> str:
    if isinstance(value, complex):
        raise ToolError("the result is not a real number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ToolError("the result is too large")
        if value.is_integer() and abs(value) < 10**_MAX_DIGITS:
            value = int(value)
    if isinstance(value, int) and abs(value) >= 10**_MAX_DIGITS:
        raise ToolError(f"the result has more than {_MAX_DIGITS} digits")
    return str(value)


async def calculator(args: CalculatorArgs) -> str:
    try:
        tree = ast.parse(args.expression.replace("^", "**"), mode="eval")
        return f"{args.expression} = {_format(_eval(tree))}"
    except SyntaxError as exc:
        raise ToolError("not an arithmetic expression") from exc
    except ZeroDivisionError as exc:
        raise ToolError("division by zero") from exc
    except OverflowError as exc:
        raise ToolError("the result is too large") from exc
    except _ARITHMETIC_ERRORS as exc:
        raise ToolError(f"cannot compute this expression ({type(exc).__name__})") from exc


async def clock(args: ClockArgs) -> str:
    try:
        zone = zoneinfo.ZoneInfo(args.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ToolError(f"unknown time zone {args.timezone!r}") from exc
    return dt.datetime.now(zone).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Tool:
    name: str
    args: type[BaseModel]
    fn: Callable[[Any], Awaitable[str]]

    def spec(self) -> dict[str, Any]:
        schema = self.args.model_json_schema()
        schema.pop("title", None)
        return {"name": self.name, "description": (self.args.__doc__ or "").strip(), "input_schema": schema}


DEFAULT_TOOLS: tuple[Tool, ...] = (
    Tool("calculator", CalculatorArgs, calculator),
    Tool("clock", ClockArgs, clock),
)


class Registry:
    """The executor's Toolbox: only registered tools run, only with arguments their schema accepts."""

    def __init__(self, tools: tuple[Tool, ...] = DEFAULT_TOOLS) -> None:
        self._tools = {t.name: t for t in tools}
        self._specs = [t.spec() for t in tools]

    def specs(self) -> list[dict[str, Any]]:
        return self._specs

    async def run(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        tool = self._tools.get(name)
        if tool is None:
            return ToolOutcome(
                False, f"refused: '{name[:64]}' is not an allowed tool (allowed: {', '.join(self._tools)})"
            )
        try:
            args = tool.args.model_validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors())
            return ToolOutcome(False, f"refused: invalid arguments for {name}: {problems}")
        try:
            return ToolOutcome(True, await tool.fn(args))
        except ToolError as exc:
            return ToolOutcome(True, f"error: {exc}")
        except Exception as exc:  # a tool's own bug must reach the model as a tool error, never fail the step
            log.exception("tool failed", extra={"tool": name})
            return ToolOutcome(False, f"error: the tool {name} failed ({type(exc).__name__})")
