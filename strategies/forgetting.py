"""The forgetting probe: what a weight-changing strategy costs the model's general skills.

PEFT's method_comparison (MetaMathQA) measures forgetting as the cross-entropy loss on
a small fixed sample of general text (finewiki), after training minus before, computed
on the *base* model before training (not the freshly wrapped one: prompt tuning's
random virtual tokens are no identity, peft#3419). We keep that loss and add a skill
that is scored like the bench's own tasks:

- `probe_accuracy`: zero-shot accuracy on fixed general-knowledge true/false statements
  (below; half true, half false, so a model that always says one word scores 0.5),
  prompted and scored (label log-likelihood) exactly as the bench's classification tasks;
- `probe_lm_loss`: mean next-token loss on fixed general-text paragraphs.

`forgetting` = base accuracy minus adapted accuracy (higher: more forgotten), with a
95% paired bootstrap interval over the statements; `forgetting_lm_loss` = adapted loss
minus base loss, with its interval over the paragraphs. The probe is fixed text in this
module (no data set to load, nothing from a hub), and small: `probe_examples`
statements (32 by default) and eight paragraphs, a few seconds on a CPU. The base
model's scores are computed once per model fingerprint per process.
"""
from __future__ import annotations

from typing import Any, Mapping

STATEMENTS = [  # (statement, true?)
    ("Paris is the capital of France.", True), ("Water freezes at 0 degrees Celsius.", True),
    ("The sun rises in the east.", True), ("A week has seven days.", True),
    ("Fish live in water.", True), ("Two plus two is four.", True),
    ("The Pacific is an ocean.", True), ("Ice is frozen water.", True),
    ("Birds have feathers.", True), ("The moon orbits the Earth.", True),
    ("A triangle has three sides.", True), ("Tokyo is in Japan.", True),
    ("Humans need oxygen to live.", True), ("Summer is warmer than winter.", True),
    ("Cats are mammals.", True), ("Ten is greater than five.", True),
    ("Paris is the capital of Italy.", False), ("Water boils at 10 degrees Celsius.", False),
    ("The sun rises in the west.", False), ("A week has three days.", False),
    ("Fish live in the desert sand.", False), ("Two plus two is seven.", False),
    ("The Sahara is an ocean.", False), ("Ice is made of sand.", False),
    ("Dogs have feathers.", False), ("The Earth orbits the moon.", False),
    ("A square has five sides.", False), ("Tokyo is in Brazil.", False),
    ("Humans can breathe under water without help.", False), ("Winter is warmer than summer.", False),
    ("Snakes are birds.", False), ("Three is greater than nine.", False),
]
# Interleaved so any prefix (a smaller probe_examples) stays balanced.
STATEMENTS = [s for pair in zip(STATEMENTS[:16], STATEMENTS[16:]) for s in pair]

PARAGRAPHS = [
    "The river flows through the valley and reaches the sea after many miles. Farmers along its banks grow "
    "wheat and vegetables, and small boats carry goods between the towns.",
    "A library lends books to the people of a town. Readers can borrow novels, histories and maps, and "
    "return them a few weeks later so that others may read them too.",
    "The heart pumps blood through the body. Arteries carry blood away from the heart, and veins bring it "
    "back, while the lungs add oxygen to it with every breath.",
    "Trains connect the large cities of the country. Many people travel by rail to work each morning and "
    "return home in the evening, reading or resting on the way.",
    "In spring the trees grow new leaves and the days become longer. Gardeners plant seeds, and by summer "
    "the fields are green and full of flowers.",
    "A computer stores information as numbers. Programs tell it what to do with those numbers, from "
    "adding up prices to showing pictures on a screen.",
    "The city council met on Tuesday to discuss the new bridge. Members agreed that the old one was too "
    "narrow for the traffic and voted to build a wider one next year.",
    "Bread is made from flour, water, salt and yeast. The dough rises for an hour, is shaped into loaves "
    "and then baked in a hot oven until the crust turns brown.",
]
_BASE: dict[tuple[str, int], dict[str, Any]] = {}  # (model fingerprint, n) -> base scores


def scores(lm: Any, module: Any, n: int) -> dict[str, Any]:
    """Per-statement correctness and per-paragraph loss of `lm` (whose torch module is
    `module`, trained or not)."""
    import torch

    from strategies import lora_data as data

    from strategies.prompts import build_prompt, reserve_tokens

    task = probe_task(n)
    prompts = [build_prompt(lm, task, ex.input, reserve=reserve_tokens(task)) for ex in task.test]
    scored = lm.score_choices(prompts, list(task.labels), batch_size=16) if prompts else []
    correct = [float(task.labels[sc.best] == ex.target) for sc, ex in zip(scored, task.test)]
    losses = []
    was_training = module.training
    module.eval()
    with torch.no_grad():
        for text in PARAGRAPHS:
            seqs = data.encode_corpus(lm, [_Doc(text)], 128)
            loss, count = data.batch_loss(module, data.collate(seqs, lm.pad_token_id), lm.device)
            losses.append(float(loss) / max(count, 1))
    module.train(was_training)
    return {"correct": correct, "losses": losses}


def probe_task(n: int = len(STATEMENTS)):
    """The statements as a classification task (prompted as the bench's own tasks are)."""
    from tasks.model import Example, Task

    items = [Example(f"probe{i}", text, "true" if truth else "false")
             for i, (text, truth) in enumerate(STATEMENTS[:max(0, min(n, len(STATEMENTS)))])]
    return Task(name="forgetting-probe", kind="classification", instruction="Is this statement true or false?",
                labels=("true", "false"), train=[], validation=[], test=items, metric="accuracy")


def base_scores(base: Any, n: int) -> dict[str, Any]:
    key = (base.fingerprint, n)
    if key not in _BASE:
        _BASE[key] = scores(base, base.torch_model, n)
    return _BASE[key]


def compare(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The facts a cell records: both scores and their paired differences."""
    from bench.stats import paired_bootstrap_diff

    out: dict[str, Any] = {"probe_n": len(before["correct"])}
    if before["correct"]:
        drop, low, high = paired_bootstrap_diff(before["correct"], after["correct"])
        out.update(probe_base_accuracy=_mean(before["correct"]), probe_accuracy=_mean(after["correct"]),
                   forgetting=round(drop, 4), forgetting_ci_low=round(low, 4), forgetting_ci_high=round(high, 4))
    rise, low, high = paired_bootstrap_diff(after["losses"], before["losses"])
    out.update(probe_base_lm_loss=round(_mean(before["losses"]), 4), probe_lm_loss=round(_mean(after["losses"]), 4),
               forgetting_lm_loss=round(rise, 4), forgetting_lm_loss_ci_low=round(low, 4),
               forgetting_lm_loss_ci_high=round(high, 4))
    return out


def _mean(values) -> float:
    return round(sum(values) / len(values), 4) if values else float("nan")


class _Doc:
    def __init__(self, text: str) -> None:
        self.text, self.title = text, ""
