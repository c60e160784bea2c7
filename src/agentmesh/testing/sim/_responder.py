"""Deterministic answers for the simulator: pure functions of the request body, no I/O and no clock.

Routing words and tool calls follow fixed rules; agent prose picks its sentences with a `random.Random`
seeded from a hash of the request's model, system, messages and tools. So the same request always yields
the same content, streamed or not (ids are the caller's business).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from dataclasses import dataclass
from typing import Any, Literal

from agentmesh.testing.sim._specialists import GENERALISTS, specialist

__all__ = [
    "Answer",
    "Kind",
    "ToolFault",
    "answer_request",
    "classify",
    "count_input_tokens",
    "fit_max_tokens",
    "output_tokens",
]

Kind = Literal["route", "agent", "tool", "guard"]
ToolFault = Literal["invent", "malformed"]
Block = dict[str, Any]

ROUTING_PHRASE = "reply with exactly one word"
# The guard's tier-two classifier prompt says this; the answer is one word, by a fixed rule on typical
# injection wording (a stand-in for a model, deterministic so that tests can rely on it).
GUARD_PHRASE = "prompt-injection classifier"
_GUARD_INJECTION_RE = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass)\s+(?:\w+\s+){0,3}?(?:instructions|rules|prompt|guidelines|directives)\b"
    r"|\bsystem\s+prompt\b|\bjailbr\w+|\bDAN\b|\bdeveloper\s+mode\b|\bdo\s+anything\s+now\b"
    r"|\b(?:no|without)\s+(?:any\s+)?(?:restrictions|limits|filters|rules)\b|\breveal\s+your\b|\bnew\s+instructions\b",
    re.IGNORECASE,
)
INVENTED_TOOL = "delete_all_files"
INVALID_ROUTE = "banana"
_CHARS_PER_TOKEN = 4
_IMAGE_CHARS = 6000  # an image costs ~1,500 tokens on the real API

_ACTION_RE = re.compile(
    r"\b(?:calculat\w*|comput\w*|convert\w*|add|adding|multipl\w*|sum|run|execut\w*|book|send|schedul\w*|"
    r"date|today|what\s+time)\b|\d\s*[-+*/x\u00d7\u00f7]\s*\d",
    re.IGNORECASE,
)
_EXPR_RE = re.compile(r"\(?-?\d+(?:\.\d+)?\)?(?:\s*[-+*/%^x\u00d7\u00f7]\s*\(?-?\d+(?:\.\d+)?\)?)+")
_TIME_RE = re.compile(r"\b(?:time|date|today|now|clock|timezone|day)\b", re.IGNORECASE)
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z0-9'-]*")
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
_PLACEHOLDER_RE = re.compile(r"<[A-Z][A-Z_]*_\d+>")
_STOPWORDS = frozenset(
    """a about above after again all also am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her
    here hers him his how i if in into is it its itself just me more most my no nor not now of off on once one
    only or other our out over own same she should so some such than that the their them then there these they
    this those through to too two three under until up very was we were what when where which while who whom
    why will with would you your yours please tell calculate compute give show find list explain describe compare
    recommend write make help need want know like using use let lets get into onto request task question answer
    reply short brief word words""".split()
)

# Sentence templates per role; {t} is the topic, {a} {b} {c} are key words of the request.
_TEMPLATES: dict[str, tuple[str, ...]] = {
    "research": (
        "Research on {t} points to a few consistent findings.",
        "The sources I reviewed agree that {a} and {b} are the main factors to weigh.",
        "Published comparisons of {a} highlight differences in cost, reliability and support.",
        "Evidence on {c} is thinner, so that finding should be treated as provisional.",
        "Key findings: {a} matters most, {b} varies by vendor, and {c} is rarely documented.",
        "Recent reports on {t} suggest the landscape is stable, with incremental changes to {b}.",
    ),
    "analysis": (
        "Weighing {a} against {b}, the stronger option depends on how much {c} matters to you.",
        "My analysis of {t} favours the option with the better track record on {a}.",
        "On balance I recommend prioritising {a}, then validating {b} with a small pilot.",
        "The trade-off is clear: {a} lowers risk, while {b} lowers cost.",
        "I recommend the option that handles {c} best, since it carries the least long-term risk.",
        "Taken together, the findings on {t} support a cautious but positive recommendation.",
    ),
    "execute": (
        "I carried out the requested action on {t}.",
        "The operation on {a} completed without errors.",
        "Result: the step involving {a} and {b} finished as requested.",
        "No further action is needed for {c}.",
        "The output was checked once more for consistency with {a}.",
    ),
    "summary": (
        "In summary, {t} comes down to {a} and {b}.",
        "The team's work shows that {a} is the deciding factor.",
        "Overall, the answer on {t} is well supported, with open questions about {c}.",
        "To conclude: focus on {a}, keep an eye on {b}, and revisit {c} later.",
    ),
    "general": (
        "Here is a short answer about {t}.",
        "The most relevant points are {a} and {b}.",
        "It also helps to consider {c} before deciding.",
        "Overall, {t} is manageable with a clear plan around {a}.",
        "A good next step is to look more closely at {b}.",
    ),
}
# Nouns that fill the slots when the request has fewer than three key words of its own.
_FILLERS: dict[str, tuple[str, ...]] = {
    "research": ("cost", "reliability", "adoption"),
    "analysis": ("risk", "cost", "long-term fit"),
    "execute": ("the input", "the result", "the follow-up"),
    "summary": ("cost", "risk", "timing"),
    "general": ("the context", "the constraints", "the next steps"),
}
_ROLE_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("research", ("research", "finding", "source", "investigat", "gather")),
    ("analysis", ("analy", "recommend", "evaluat", "compar", "assess")),
    ("execute", ("execut", "tool", "action", "calculat", "operat")),
    ("summary", ("summar", "synthes", "final answer", "combine")),
)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the model says: content blocks (text / tool_use) and why it stopped."""

    kind: Kind
    blocks: tuple[Block, ...]
    stop_reason: str


# --- reading the request ------------------------------------------------------------------------


def system_text(system: object) -> str:
    """The system prompt as one string (it may be a string or a list of text blocks)."""
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n".join(b.get("text", "") for b in system if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


def _result_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


def content_text(content: object) -> str:
    """Visible text of a message's content: text blocks and tool results, not tool calls."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    if isinstance(content, list):
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                parts.append(block["text"])
            elif block.get("type") == "tool_result":
                parts.append(_result_text(block.get("content")))
    return "\n".join(parts)


def _content_chars(content: object) -> int:
    if isinstance(content, str):
        return len(content)
    total = 0
    if isinstance(content, list):
        for block in content:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "text":
                total += len(block.get("text") or "")
            elif kind == "tool_use":
                total += len(str(block.get("name", ""))) + len(json.dumps(block.get("input", {})))
            elif kind == "tool_result":
                total += len(_result_text(block.get("content")))
            elif kind in ("image", "document"):
                total += _IMAGE_CHARS
            else:
                total += len(json.dumps(block))
    return total


def count_input_tokens(body: dict[str, Any]) -> int:
    """About ceil(chars / 4) of system, messages and the tools' JSON, like the real tokenizer on English."""
    chars = len(system_text(body.get("system")))
    chars += sum(_content_chars(m.get("content")) for m in body.get("messages", ()))
    if body.get("tools"):
        chars += len(json.dumps(body["tools"], separators=(",", ":")))
    return max(1, math.ceil(chars / _CHARS_PER_TOKEN))


def _last_message(body: dict[str, Any]) -> dict[str, Any]:
    last: dict[str, Any] = body["messages"][-1]
    return last


def _tool_results(message: dict[str, Any]) -> list[Block]:
    content = message.get("content")
    if message.get("role") != "user" or not isinstance(content, list):
        return []
    return [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]


def classify(body: dict[str, Any]) -> Kind:
    """route: the supervisor's one-word routing call; guard: the guard's injection classifier; tool: a call
    offering tools; agent: anything else."""
    system = system_text(body.get("system")).lower()
    if ROUTING_PHRASE in system:
        return "route"
    if GUARD_PHRASE in system:
        return "guard"
    if body.get("tools") and _last_message(body).get("role") == "user" and _tool_choice(body).get("type") != "none":
        return "tool"
    return "agent"


def _tool_choice(body: dict[str, Any]) -> dict[str, Any]:
    choice = body.get("tool_choice")
    return choice if isinstance(choice, dict) else {}


def _seed(body: dict[str, Any]) -> int:
    key = json.dumps(
        [body.get("model"), body.get("system"), body.get("messages"), body.get("tools")],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def _keywords(text: str) -> list[str]:
    """Content words in order of appearance (an arithmetic expression counts as one), deduplicated."""
    seen: dict[str, str] = {}
    expression = find_expression(text)
    if expression is not None:
        seen[expression] = expression
    for match in _WORD_RE.finditer(text):
        word = match.group(0).strip("'-")
        low = word.lower()
        if len(low) < 3 or low in _STOPWORDS or low in seen:
            continue
        # Sentence-initial capitals are not names: "Compare ..." -> "compare", but "AWS" and "Stripe" mid-sentence stay.
        before = text[: match.start()].rstrip()
        if word[1:].islower() and (not before or before[-1] in ".!?:\n"):
            word = low
        seen[low] = word
    return list(seen.values())


def _focus_text(text: str) -> str:
    """The request line of a templated prompt when there is one, else the whole text."""
    for line in text.splitlines():
        head, sep, rest = line.partition(":")
        if sep and head.strip().lower() in ("request", "task", "question", "user request") and rest.strip():
            return rest.strip()
    return text


# --- routing ------------------------------------------------------------------------------------


def _field(text: str, name: str) -> str | None:
    prefix = name.lower() + ":"
    for line in text.splitlines():
        if line.strip().lower().startswith(prefix):
            return line.strip()[len(prefix) :].strip()
    return None


def _names(value: str | None) -> list[str]:
    if not value or value.strip().lower() in ("(none)", "none", "-"):
        return []
    return [n.strip() for n in value.split(",") if n.strip()]


def needs_action(text: str) -> bool:
    """Whether a request asks for something the executor does (arithmetic, time, sending, booking...)."""
    return _ACTION_RE.search(text) is not None


def route(text: str, *, invalid: bool = False) -> str:
    """The next agent for a routing prompt with `Request:`, `Allowed:` and `Done:` lines (and `Agent NAME:
    description` lines), or FINISH. A catalog agent whose description fits the request goes first and its
    answer ends the run (see _specialists); otherwise researcher, analyst, executor when an action is asked."""
    allowed = _names(_field(text, "Allowed"))
    if invalid:
        return next(w for w in (INVALID_ROUTE, "pineapple", "kumquat") if w not in allowed)
    done = {n.lower() for n in _names(_field(text, "Done"))}
    request = _field(text, "Request") or text
    chosen = specialist(text, request, allowed, done)
    if chosen is not None:
        return chosen
    action = needs_action(request)
    shipped = any(g in allowed for g in GENERALISTS)
    for name in allowed:
        low = name.lower()
        if low == "finish" or low in done or (low == "executor" and not action) or (shipped and low not in GENERALISTS):
            continue
        return name
    return "FINISH"


# --- tools --------------------------------------------------------------------------------------


def _tool_words(tool: dict[str, Any]) -> set[str]:
    name_words = re.split(r"[_\-\s.]+", str(tool.get("name", "")).lower())
    desc_words = [w.lower() for w in _WORD_RE.findall(str(tool.get("description", "")))]
    return {w for w in (*name_words, *desc_words) if len(w) >= 3 and w not in _STOPWORDS}


def choose_tool(tools: list[dict[str, Any]], text: str) -> dict[str, Any]:
    """The tool that fits the request: calculator for arithmetic, clock for time, else most words in common."""
    named = [t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)]
    if not named:
        return {"name": "tool", "input_schema": {"type": "object"}}
    if _EXPR_RE.search(text):
        for tool in named:
            if re.search(r"calc|math|arith|expr|comput|eval", tool["name"], re.IGNORECASE):
                return tool
    if _TIME_RE.search(text):
        for tool in named:
            if re.search(r"time|clock|date", tool["name"], re.IGNORECASE):
                return tool
    words = {w.lower() for w in _WORD_RE.findall(text)}
    best, best_score = named[0], 0
    for tool in named:
        score = len(_tool_words(tool) & words)
        if score > best_score:
            best, best_score = tool, score
    return best


def find_expression(text: str) -> str | None:
    """The first arithmetic expression in the text, normalised to Python-ish operators."""
    match = _EXPR_RE.search(text)
    if match is None:
        return None
    return match.group(0).replace("\u00d7", "*").replace("x", "*").replace("\u00f7", "/").strip()


def _schema_type(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if isinstance(kind, str):
        return kind
    if "properties" in schema:
        return "object"
    return "string"


def _string_for(name: str, schema: dict[str, Any], text: str) -> str:
    low = name.lower()
    fmt = schema.get("format")
    if re.search(r"expr|formula|equation|calculation", low):
        value = find_expression(text) or "2 + 2"
    elif re.search(r"timezone|^tz$|_tz$", low):
        value = "UTC"
    elif fmt == "date-time":
        value = "2025-01-01T09:00:00Z"
    elif fmt == "date" or low.endswith("date"):
        value = "2025-01-01"
    elif fmt == "email" or "email" in low:
        value = "user@example.com"
    elif fmt == "uri" or "url" in low:
        value = "https://example.com"
    elif re.search(r"query|question|text|prompt|topic|message|body|content|input", low):
        value = _focus_text(text).strip()[:200] or "example"
    else:
        words = _keywords(_focus_text(text))
        value = " ".join(words[:3]) or "example"
    max_len = schema.get("maxLength")
    if isinstance(max_len, int) and max_len >= 1:
        value = value[:max_len]
    return value


def fit_schema(name: str, schema: Any, text: str, depth: int = 0) -> Any:
    """A value that validates against a JSON schema (required properties, types, enums), drawn from the text."""
    if not isinstance(schema, dict):
        return "example"
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        low = text.lower()
        return next((v for v in enum if isinstance(v, str) and v.lower() in low), enum[0])
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return fit_schema(name, options[0], text, depth)
    kind = _schema_type(schema)
    if kind == "object":
        props = schema.get("properties") or {}
        if depth >= 4 or not isinstance(props, dict):
            return {}
        required = [p for p in schema.get("required", ()) if p in props]
        chosen = required or list(props)
        return {p: fit_schema(p, props[p], text, depth + 1) for p in chosen}
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1) or 1))
        return [fit_schema(name, schema.get("items", {}), text, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        numbers = [float(n) for n in _NUMBER_RE.findall(_focus_text(text))]
        value = numbers[0] if numbers else float(schema.get("minimum", 1))
        if "minimum" in schema:
            value = max(value, float(schema["minimum"]))
        if "maximum" in schema:
            value = min(value, float(schema["maximum"]))
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string_for(name, schema, text)


def _malformed(schema: Any, good: dict[str, Any]) -> dict[str, Any]:
    """Input that breaks the schema: a required property missing, else one property of the wrong type."""
    props = schema.get("properties") if isinstance(schema, dict) else None
    required = [p for p in (schema.get("required", ()) if isinstance(schema, dict) else ()) if p in good]
    if required:
        return {k: v for k, v in good.items() if k != required[0]}
    if isinstance(props, dict) and props:
        name = next(iter(props))
        wrong: Any = 12345 if _schema_type(props[name]) == "string" else "not-a-valid-value"
        return {**good, name: wrong}
    return {"unexpected_argument": 12345}


def _tool_use(body: dict[str, Any], tool_id: str, fault: ToolFault | None) -> Answer:
    text = content_text(_last_message(body).get("content"))
    tools = body["tools"]
    choice = _tool_choice(body)
    forced = [
        t for t in tools if isinstance(t, dict) and choice.get("type") == "tool" and t.get("name") == choice.get("name")
    ]
    tool = forced[0] if forced else choose_tool(tools, text)
    schema = tool.get("input_schema", {"type": "object"})
    args = fit_schema("input", schema, text)
    if not isinstance(args, dict):
        args = {"input": args}
    name = tool["name"]
    if fault == "invent":
        existing = {t.get("name") for t in tools if isinstance(t, dict)}
        name = next(n for n in (INVENTED_TOOL, INVENTED_TOOL + "_now", "rm_rf") if n not in existing)
    elif fault == "malformed":
        args = _malformed(schema, args)
    call: Block = {"type": "tool_use", "id": tool_id, "name": name, "input": args}
    if choice.get("type") in ("any", "tool"):
        # A forced tool call starts straight with the tool_use block, as the real API does.
        return Answer("tool", (call,), "tool_use")
    return Answer("tool", ({"type": "text", "text": f"I'll use the {name} tool to handle this."}, call), "tool_use")


def _tool_names(messages: list[dict[str, Any]]) -> dict[str, str]:
    names: dict[str, str] = {}
    for message in messages:
        content = message.get("content")
        if message.get("role") == "assistant" and isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_use":
                    names[str(block.get("id"))] = str(block.get("name"))
    return names


def _tool_summary(body: dict[str, Any], results: list[Block]) -> str:
    names = _tool_names(body["messages"])
    sentences: list[str] = []
    for result in results:
        name = names.get(str(result.get("tool_use_id")), "tool")
        output = _result_text(result.get("content")).strip()[:1000] or "(no output)"
        if result.get("is_error"):
            sentences.append(f"The {name} tool reported an error: {output}")
        else:
            sentences.append(f"The {name} tool returned: {output}")
    sentences.append("That completes the requested step.")
    return " ".join(sentences)


# --- agent prose --------------------------------------------------------------------------------


def _role(system: str) -> str:
    low = system.lower()
    for role, words in _ROLE_WORDS:
        if any(w in low for w in words):
            return role
    return "general"


def paragraph(system: str, text: str, rng: random.Random) -> str:
    """2-4 plausible sentences about the request's key words, in the voice the system prompt asks for."""
    role = _role(system)
    keywords = _keywords(_focus_text(text))
    topic = " ".join(keywords[:3]) or "the request"
    a, b, c = [*keywords, *(f for f in _FILLERS[role] if f not in keywords)][:3]
    templates = list(_TEMPLATES[role])
    rng.shuffle(templates)
    count = rng.randint(2, min(4, len(templates)))
    return " ".join(t.format(t=topic, a=a, b=b, c=c) for t in templates[:count])


# --- the answer ---------------------------------------------------------------------------------


def answer_request(
    body: dict[str, Any],
    *,
    tool_id: str,
    tool_fault: ToolFault | None = None,
    invalid_route: bool = False,
    reply_suffix: str = "",
) -> Answer:
    """The model's answer to a validated Messages request. `tool_id` names a tool_use block if one is made;
    `reply_suffix` is appended to agent answers."""
    kind = classify(body)
    last = _last_message(body)
    text = content_text(last.get("content"))
    if kind == "route":
        word = route(text, invalid=invalid_route)
        return Answer("route", ({"type": "text", "text": word},), "end_turn")
    if kind == "guard":
        word = "INJECTION" if _GUARD_INJECTION_RE.search(text) else "BENIGN"
        return Answer("guard", ({"type": "text", "text": word},), "end_turn")
    if kind == "tool":
        results = _tool_results(last)
        if not results:
            return _tool_use(body, tool_id, tool_fault)
        return Answer("tool", ({"type": "text", "text": _tool_summary(body, results) + reply_suffix},), "end_turn")
    rng = random.Random(_seed(body))
    prose = paragraph(system_text(body.get("system")), text, rng)
    # A model keeps the guard's redaction placeholders when it refers to the values they stand for.
    placeholders = list(dict.fromkeys(_PLACEHOLDER_RE.findall(text)))
    if placeholders:
        prose += f" I will use {', '.join(placeholders)} as given."
    prose += reply_suffix
    return Answer("agent", ({"type": "text", "text": prose},), "end_turn")


def _block_chars(block: Block) -> int:
    if block["type"] == "tool_use":
        return len(block["name"]) + len(json.dumps(block["input"], separators=(",", ":")))
    return len(block["text"])


def output_tokens(blocks: tuple[Block, ...]) -> int:
    """About ceil(chars / 4) of the answer (text, tool name and arguments)."""
    return max(1, math.ceil(sum(_block_chars(b) for b in blocks) / _CHARS_PER_TOKEN))


def fit_max_tokens(answer: Answer, max_tokens: int) -> tuple[tuple[Block, ...], str, int]:
    """Cut the answer to max_tokens (about 4 chars a token): (blocks, stop_reason, output_tokens)."""
    budget = max_tokens * _CHARS_PER_TOKEN
    if sum(_block_chars(b) for b in answer.blocks) <= budget:
        return answer.blocks, answer.stop_reason, min(max_tokens, output_tokens(answer.blocks))
    kept: list[Block] = []
    for block in answer.blocks:
        size = _block_chars(block)
        if size <= budget:
            kept.append(block)
            budget -= size
            continue
        # A tool call cut short is useless (the real API's would be unparseable), so it is dropped.
        if block["type"] == "text" and budget > 0:
            kept.append({"type": "text", "text": block["text"][:budget]})
        break
    if not kept:
        kept.append({"type": "text", "text": ""})
    return tuple(kept), "max_tokens", max_tokens
