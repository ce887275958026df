"""The strategy registry: an explicit table of lazy "module:attr" strings.

Each entry points at a strategy module's `STRATEGY`, a `strategies.base.StrategyDef`:
a new strategy is one module plus one line here.
"""
from bench.registry import Registry

STRATEGIES = Registry("strategy", {
    "prompting": "strategies.prompting:STRATEGY",
    "rag": "strategies.rag:STRATEGY",
    "lora": "strategies.lora:STRATEGY",
    "dora": "strategies.dora:STRATEGY",
    "ia3": "strategies.ia3:STRATEGY",
    "prompt-tuning": "strategies.prompt_tuning:STRATEGY",
    "full-ft": "strategies.full_ft:STRATEGY",
    "qlora": "strategies.qlora:STRATEGY",
    "rag-lora": "strategies.rag_lora:STRATEGY",
})


def definition(name: str):
    """The `StrategyDef` registered under `name` (a typo gets close matches)."""
    return STRATEGIES.load(name)
