"""`agentmesh trace RUN_ID --html FILE`: the run's steps and their LLM calls as a waterfall, in one HTML file
with no scripts and nothing fetched (it opens offline, and can be attached to an incident). Metadata only."""

from __future__ import annotations

from html import escape

from agentmesh.cli._trace import RunView, call_line

_CSS = """
body{font:13px/1.4 system-ui,sans-serif;margin:24px;color:#1d2330}
h1{font-size:16px;margin:0 0 4px} .summary{color:#555;margin:0 0 16px}
.wf{display:grid;grid-template-columns:minmax(220px,30%) 1fr minmax(200px,22%);row-gap:3px;align-items:center}
.label{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;padding-right:8px}
.call .label{padding-left:18px;color:#555}
.lane{position:relative;height:16px;background:#f3f4f7;border-radius:2px}
.bar{position:absolute;top:2px;height:12px;border-radius:2px;min-width:2px}
.route .bar{background:#7a8ad6} .agent .bar{background:#3c9a6b} .guard .bar{background:#d69a3c}
.call .bar{background:#9fb2c7;top:4px;height:8px} .retried .bar{background:#c75b5b}
.meta{padding-left:8px;color:#555;white-space:nowrap}
.axis{position:relative;height:16px;color:#888;font-size:11px}
.axis span{position:absolute;white-space:nowrap}
"""


def _pct(ms: float, total_ms: float) -> float:
    return round(100 * ms / total_ms, 3)


def _row(css: str, label: str, start_ms: float, duration_ms: float, total_ms: float, meta: str, title: str) -> str:
    left = min(_pct(start_ms, total_ms), 100.0)
    width = max(0.0, min(_pct(duration_ms, total_ms), 100.0 - left))
    return (
        f'<div class="row {css}" style="display:contents"><div class="label" title="{escape(title)}">{escape(label)}'
        f'</div><div class="lane"><div class="bar" style="left:{left}%;width:{width}%" title="{escape(title)}">'
        f'</div></div><div class="meta">{escape(meta)}</div></div>'
    )


def render_html(view: RunView) -> str:
    total = max([view.wall_ms, 1.0] + [s.start_ms + s.duration_ms for s in view.steps])
    # The first and last labels are aligned inside the lane, so they are never cut off.
    shift = {0: "0", 4: "-100%"}
    ticks = "".join(
        f'<span style="left:{_pct(total * i / 4, total)}%;transform:translateX({shift.get(i, "-50%")})">'
        f"{total * i / 4:.0f} ms</span>"
        for i in range(5)
    )
    rows = [f'<div></div><div class="axis">{ticks}</div><div></div>']
    for s in view.steps:
        label = f"{s.idx} {s.kind} {s.agent} {s.detail}".strip()
        meta = f"{s.duration_ms:.0f} ms" + (
            f" · {s.input_tokens}/{s.output_tokens} tok · ${s.cost_usd:.6f}" if s.llm_calls else ""
        )
        rows.append(_row(s.kind, label, s.start_ms, s.duration_ms, total, meta, f"{label} · {meta}"))
        for n, c in enumerate(s.calls, 1):
            # Calls are placed inside their step from the offset the calling service recorded.
            start = s.start_ms + min(c.start_ms, max(0.0, s.duration_ms - c.duration_ms))
            meta = f"{c.duration_ms:.0f} ms · {c.input_tokens}/{c.output_tokens} tok" + (
                f" · {c.retries} retr{'y' if c.retries == 1 else 'ies'}" if c.retries else ""
            )
            rows.append(
                _row(
                    "call retried" if c.retries else "call",
                    f"LLM call {n} {c.model}",
                    start,
                    c.duration_ms,
                    total,
                    meta,
                    call_line(n, c),
                )
            )
    summary = (
        f"{view.status} · tenant {view.tenant} · {view.wall_ms:.0f} ms · {view.iterations} iterations · "
        f"{view.llm_calls} LLM calls · tokens {view.input_tokens}/{view.output_tokens} · ${view.cost_usd:.6f}"
    )
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>run {escape(view.id)}</title>'
        f"<style>{_CSS}</style></head>\n<body><h1>run {escape(view.id)}</h1>"
        f'<p class="summary">{escape(summary)}</p>\n<div class="wf">\n' + "\n".join(rows) + "\n</div></body></html>\n"
    )
