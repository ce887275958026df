"""Test doubles: a tiny in-process causal LM with its own tokenizer (no hub, no
assets), a fake model handle returning fixed text, a hashing embedder, a toy task."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from bench.lm import Capabilities, ChoiceScores, Generation
from tasks.model import Document, Example, Task

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny_tokenizer():
    """A byte-level BPE tokenizer trained in-process on a few sentences."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = ["good great fine bad awful poor movie film review", "the capital of France is Paris",
              "Options: Input: Question: Answer Context", "positive negative yes no"] * 20
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token="<|im_start|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_model(vocab_size: int, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def tiny_handle(seed: int = 0, max_context: int = 256):
    from bench.backends.hf import HFBackend

    tok = tiny_tokenizer()
    model = tiny_model(len(tok), seed)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return HFBackend(model=model, tokenizer=tok, name="tiny-llama", fingerprint=f"tiny:{seed}",
                       device="cpu", max_context=max_context)


@dataclass(frozen=True)
class FakeHandle:
    """Answers every prompt with `reply` and the first label for classification."""

    reply: str = "Paris"
    choice: int = 0
    name: str = "fake"
    fingerprint: str = "fake:0"
    device: str = "cpu"
    max_context: int = 512
    system_prompt: str | None = None
    extra: dict = field(default_factory=dict)
    has_chat_template: bool = False
    end_of_answer: str = "\n"
    model: object = None
    tokenizer: object = None

    def render(self, user: str, shots: Sequence[tuple[str, str]] = (), system: str | None = None) -> str:
        return "".join(f"{q}\nAnswer: {a}\n\n" for q, a in shots) + f"{user}\nAnswer: "

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def encode(self, text: str) -> list[int]:
        return [hash(w) % 1000 for w in text.split()]

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(prompt_logprobs=True, trainable=False, adapters=False, chat=False)

    def generate(self, prompts, max_new_tokens=32, batch_size=8, progress=None):
        if progress:
            progress(len(prompts))
        return [Generation(self.reply, self.count_tokens(p), len(self.reply.split()), 0.001) for p in prompts]

    def score_choices(self, prompts, choices, batch_size=16, progress=None):
        if progress:
            progress(len(prompts))
        lp = tuple(0.0 if j == self.choice else -1.0 for j in range(len(choices)))
        return [ChoiceScores(self.choice, lp, self.count_tokens(p), 0.001) for p in prompts]


class HashingEmbedder:
    """Bag-of-words hashed into `dim` buckets, L2-normalised: deterministic, no model."""

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.name = f"hashing-{dim}"

    def encode(self, texts: Sequence[str], batch_size: int = 32, **_: object) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                word = word.strip(".,?!:;\"'")
                bucket = int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim
                out[i, bucket] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)


def toy_classification(n: int = 8) -> Task:
    words = {"positive": ["great", "good", "fine"], "negative": ["awful", "bad", "poor"]}
    examples = []
    for i in range(n * 3):
        label = "positive" if i % 2 == 0 else "negative"
        examples.append(Example(f"t{i}", f"a {words[label][i % 3]} movie number {i}", label))
    return Task(name="toy-sentiment", kind="classification", instruction="Is the review positive or negative?",
                labels=("positive", "negative"), train=examples[:n], validation=examples[n:2 * n],
                test=examples[2 * n:], metric="accuracy")


def toy_qa() -> Task:
    facts = [("Zorblat", "blue"), ("Quenix", "green"), ("Vartop", "red"), ("Mildrun", "yellow"),
             ("Trosk", "black"), ("Pellar", "white"), ("Gundo", "orange"), ("Hiveb", "purple")]
    corpus = [Document(f"d{i}", f"The {name} gadget is {colour} in colour.", name) for i, (name, colour) in enumerate(facts)]
    examples = [Example(f"q{i}", f"What colour is the {name} gadget?", colour, {"doc_ids": [f"d{i}"]})
                for i, (name, colour) in enumerate(facts)]
    return Task(name="toy-facts", kind="qa", instruction="Answer the question.", train=examples[:4],
                validation=examples[4:6], test=examples[6:], corpus=corpus, metric="f1", max_new_tokens=8)


@dataclass(frozen=True)
class NoOptions:
    """The config of a test strategy that takes none."""


def fake_definition(name: str, build, **kw):
    """A `StrategyDef` for a test double strategy built by `build(options)`."""
    from strategies.base import StrategyDef

    def checked(options):
        from bench.options import config_from

        config_from(NoOptions, options or {}, name)
        return build(options)

    return StrategyDef(name=name, config=NoOptions, build=checked, **kw)
