"""Rendering of the self-contained HTML pages (report.html, compare.html).

Safety: model outputs and user data are hostile text. Jinja autoescapes everything
(`autoescape=True`, not by extension); SVG is built with `Markup.format`, which escapes
too; and each page carries a Content-Security-Policy with `default-src 'none'`, so even
an escaping bug could fetch nothing and run no script but ours. Our own stylesheet and
script are inlined and allowed by their sha256 hashes, never by 'unsafe-inline'; they
are constant files, so no data can change what the hash admits.
"""
from __future__ import annotations

import base64
import hashlib
import math
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from reports.costs import fmt_usd
from reports.frame import is_missing

TEMPLATES = Path(__file__).parent / "templates"
TEXT_LIMIT = 300


def fmt_num(value: Any, spec: str = "{:.3f}", scale: float = 1.0) -> str:
    if is_missing(value):
        return "–"
    try:
        return spec.format(float(value) * scale)
    except (TypeError, ValueError):
        return str(value)


def fmt_ratio(value: Any) -> str:
    if is_missing(value) or not math.isfinite(float(value)):
        return "–"
    return f"{float(value):.2f}x"


def clip(value: Any, limit: int = TEXT_LIMIT) -> str:
    if is_missing(value):
        return ""
    text = " | ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = fmt_num
    env.filters["usd"] = fmt_usd
    env.filters["ratio"] = fmt_ratio
    return env


def sha256_source(text: str) -> str:
    """The CSP source expression that admits exactly this inline <style> or <script>."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def csp(styles: list[str], scripts: list[str]) -> str:
    policy = ["default-src 'none'", f"style-src {' '.join(map(sha256_source, styles))}", "img-src data:"]
    if scripts:
        policy.append(f"script-src {' '.join(map(sha256_source, scripts))}")
    # No frame-ancestors: a <meta> policy cannot carry it, and Chromium logs an error.
    return "; ".join(policy + ["base-uri 'none'", "form-action 'none'"])


def render(template: str, css: str, scripts: tuple[str, ...] = (), **ctx: Any) -> str:
    """Render `template` with the named stylesheet and scripts (files in templates/)
    inlined as `css` and `js`, and the matching CSP as `csp`."""
    style = (TEMPLATES / css).read_text(encoding="utf-8")
    code = [(TEMPLATES / s).read_text(encoding="utf-8") for s in scripts]
    # Markup keeps our own files byte-for-byte as hashed (escaping would change them).
    return environment().get_template(template).render(
        css=Markup(style), js=[Markup(c) for c in code], csp=csp([style], code), **ctx)
