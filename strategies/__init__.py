"""The strategy registry: an explicit table of lazy "module:attr" strings.

Each entry points at a `(StrategyClass, ConfigClass)` pair's factory `build(options)`.
"""
from bench.registry import Registry

STRATEGIES = Registry("strategy", {
    "prompting": "strategies.prompting:build",
    "rag": "strategies.rag:build",
    "lora": "strategies.lora:build",
})
