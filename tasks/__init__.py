"""The task registry: built-in task names -> lazy loader functions `load(seed) -> Task`.
A path ending in .yaml/.yml names a user task spec instead (see tasks/user_spec.py)."""
from bench.registry import Registry

TASKS = Registry("task", {
    "rotten-tomatoes": "tasks.rotten_tomatoes:load",
    "bbc-news": "tasks.bbc_news:load",
    "squad": "tasks.squad:load",
    "product-facts": "tasks.product_facts:load",
})


def load_task(name: str, seed: int = 0):
    """A built-in task by name, or a user task from a YAML spec path; degenerate data
    (one class, labels equal up to case) is warned about (`tasks.checks`)."""
    from tasks.checks import warn_degenerate

    if name.endswith((".yaml", ".yml")):
        from tasks.user_spec import load_spec

        return warn_degenerate(load_spec(name, seed=seed))
    return warn_degenerate(TASKS.load(name)(seed=seed))
