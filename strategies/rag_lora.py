"""RAG + LoRA, RAFT-style (Zhang et al. 2024): train the adapter on prompts that hold
retrieved passages, then answer with retrieval exactly as `rag` does.

- Corpus tasks: each training question gets `distractors` retrieved passages that are
  not from its gold documents; for a share `p_oracle` of the questions (seeded) the gold
  passage (the chunk of a gold document that holds the answer) is added, at a seeded
  position; the rest train with distractors only, which teaches the model to rely on
  its weights when the context does not help. RAFT found p_oracle around 0.8 best.
- Tasks without a corpus: each training example gets the dynamic few-shot
  demonstrations `rag` would show it (its nearest other train examples).
- Prediction is `rag`'s: the same index, retriever, prompts and passages, through the
  adapted weights. Retrieval and prompts are `strategies/rag.py`'s plain functions;
  training is the shared path in `strategies/training.py`.
- `shots` defaults to 0 here: the adapter learns the answer format, and prompts stay short.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Mapping

from bench.options import config_from
from strategies import lora, rag, training, training_config
from strategies.base import Artifacts, Budget, StrategyDef
from strategies.prompts import build_prompt, reserve_tokens

_RAG_FIELDS = ("top_k", "chunk_tokens", "chunk_overlap", "embedder", "index", "demos_k", "shots", "retriever",
               "rrf_k", "cache")


@dataclass(frozen=True)
class RagLoraConfig(lora.LoraStrategyConfig):
    PREFIX: ClassVar[str] = "rag-lora"
    top_k: int = 3
    chunk_tokens: int = 180
    chunk_overlap: int = 30
    embedder: str = "minilm-l6-v2"
    index: str = "auto"
    demos_k: int = 4
    shots: int = 0
    retriever: str = "dense"
    rrf_k: int = 60
    cache: bool = True
    distractors: int = 2  # retrieved non-gold passages per training question
    p_oracle: float = 0.8  # share of training questions that also see their gold passage

    def __post_init__(self) -> None:
        lora.check_lora(self)
        training_config.check_training(self, ints={"distractors": 0})
        if isinstance(self.p_oracle, bool) or not isinstance(self.p_oracle, (int, float)) \
                or not 0 <= self.p_oracle <= 1:
            raise training_config.bad(self, "p_oracle", "a number in [0, 1]")
        rag_config(self)  # the retrieval options validate as rag's


def rag_config(cfg: RagLoraConfig) -> rag.RagConfig:
    return rag.RagConfig(**{name: getattr(cfg, name) for name in _RAG_FIELDS}, batch_size=cfg.predict_batch_size)


def raft_sequences(st: Mapping[str, Any], rcfg: rag.RagConfig, cfg: RagLoraConfig):
    """An `encode` for training.train_artifacts: retrieval-augmented training prompts."""
    from strategies import lora_data as data

    def encode(lm, task, examples, _cfg, rng: random.Random) -> list:
        if not examples:
            return []
        if st["mode"] != "corpus":
            prompts, _, _ = rag.retrieval_prompts(st, rcfg, task, lm, examples, exclude_self=True)
        else:
            prompts = corpus_prompts(st, rcfg, cfg, task, lm, examples, rng)
        return [data.encode_pair(lm, p, ex.target + lm.end_of_answer, cfg.max_length)
                for p, ex in zip(prompts, examples)]

    return encode


def corpus_prompts(st, rcfg: rag.RagConfig, cfg: RagLoraConfig, task, lm, examples, rng: random.Random) -> list[str]:
    by_doc: dict[str, list[str]] = {}
    for doc_id, text in zip(st["ids"], st["texts"]):
        by_doc.setdefault(doc_id, []).append(text)
    rows = rag.search(st, rcfg, [ex.input for ex in examples], rag.fetch_size(st, cfg.distractors + 4))
    prompts = []
    for ex, hits in zip(examples, rows):
        gold_ids = set(ex.meta.get("doc_ids") or ())
        ranked = rag.distinct_documents(st, hits, len(hits))
        distract = [st["texts"][r] for d, r in ranked.items() if d not in gold_ids][:cfg.distractors]
        gold = [t for d in gold_ids for t in by_doc.get(d, [])]
        holding = [t for t in gold if ex.target.lower() in t.lower()] or gold
        passages = list(distract)
        if holding and rng.random() < cfg.p_oracle:
            passages.insert(rng.randrange(len(passages) + 1), holding[0])
        prompts.append(build_prompt(lm, task, ex.input, passages=passages, reserve=reserve_tokens(task),
                                    shots=st.get("shots", ())))
    return prompts


class RagLoraStrategy:
    name = "rag-lora"

    def __init__(self, config: RagLoraConfig, embedder: Any = None) -> None:
        self.config, self.rag = config, rag.RagStrategy(rag_config(config), embedder=embedder)

    def prepare(self, task, model, budget: Budget) -> Artifacts:
        retrieval = self.rag.prepare(task, model, budget)
        encode = raft_sequences(retrieval.state, self.rag.config, self.config)
        trained = training.train_artifacts(self.name, METHOD, self.config, task, model, budget, encode=encode,
                                           state=retrieval.state)
        rebuild = {"seed": budget.seed, "max_train_examples": budget.max_train_examples}
        info = {**retrieval.info, **trained.info, "rag_rebuild": rebuild,
                "rag_options": asdict(self.rag.config), "p_oracle": self.config.p_oracle,
                "distractors": self.config.distractors}
        return replace(trained, info=info)

    def predict(self, artifacts: Artifacts, examples, progress=None):
        # rag's prediction, through the adapted weights.
        adapted = replace(artifacts, model=artifacts.state["model"])
        return self.rag.predict(adapted, examples, progress=progress)

    def latency_variants(self, artifacts: Artifacts):
        yield from training.merged_variant(METHOD, artifacts)


METHOD = training.peft_method("rag-lora", lora.lora_config, servable=True)


def _save_rebuild(artifacts: Artifacts, folder: Path) -> dict:
    return {"rag_options": artifacts.info.get("rag_options"), "rag_rebuild": artifacts.info.get("rag_rebuild")}


def _restore_retrieval(folder: Path, task, lm, facts: Mapping[str, Any]) -> dict:
    """The retrieval state again (the index comes from rag's own cache: cheap)."""
    known = {f.name for f in fields(rag.RagConfig)}
    options = {k: v for k, v in (facts.get("rag_options") or {}).items() if k in known}
    rebuild = facts.get("rag_rebuild") or {}
    return rag.RagStrategy(rag.RagConfig(**options)).prepare(
        task, lm, Budget(seed=rebuild.get("seed", 0), max_train_examples=rebuild.get("max_train_examples"))).state


def build(options: Mapping[str, Any] | None = None) -> RagLoraStrategy:
    return RagLoraStrategy(config_from(RagLoraConfig, options or {}, "strategies.rag-lora"))


STRATEGY = StrategyDef(
    name="rag-lora", config=RagLoraConfig, build=build, predict_batch="predict_batch_size",
    code=("strategies.rag_lora", "strategies.rag", "strategies.chunking", "strategies.lexical", "strategies.index_update", "strategies.lora", "bench.embedder", *training.CODE),
    artifacts=training.WeightsStore("rag-lora", METHOD, extra=_save_rebuild, restore=_restore_retrieval),
    needs=frozenset({"trainable"}), resources=training.RESOURCES, changes_weights=True, learns_from_train=True)
