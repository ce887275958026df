"""The `vllm` case of `bench perf`: the same prompts through the managed vLLM server and
through the in-process hf backend, in one run, on the same weights and dtype (float32).

The prompts are SQuAD questions with their gold paragraph (RAG-sized prompts, ~250
tokens), greedy, 24 new tokens. hf runs length-sorted batches of 16; vLLM gets the
requests 16 at a time (the openai backend's `max_connections`) and batches them itself
(continuous batching). The value is vLLM's throughput over hf's; the goal is the bench's
in-process generation within 1.5x of the served engine (a team weighing the two should
not lose more than that by staying in process). The server's start-up is reported, not
counted: a run pays it once. Skipped, with the reason, when the vLLM venv is absent
(`make vllm`)."""
from __future__ import annotations

from typing import Any

from bench.perf import CaseResult, stopwatch

CASE = "vllm vs hf"
GOAL = 1.5  # vLLM at most this many times faster than the bench, on the same cores


def squad_prompts(lm: Any, n: int) -> list[str]:
    """`n` SQuAD test questions, each with its gold paragraph, rendered for `lm`."""
    from strategies.prompts import build_prompt, reserve_tokens
    from tasks import load_task

    task = load_task("squad", seed=0)
    docs = {d.id: d.text for d in task.corpus}
    examples = [ex for ex in task.test if ex.meta.get("doc_ids")][:n]
    return [build_prompt(lm, task, ex.input, passages=[docs[ex.meta["doc_ids"][0]]], reserve=reserve_tokens(task))
            for ex in examples]


def vllm_case(ctx: Any, n_prompts: int | None = None, max_new_tokens: int = 24, concurrency: int = 16,
              batch_size: int = 16) -> CaseResult:
    from bench.vllm_server import venv_dir, vllm_python

    if vllm_python() is None:
        return CaseResult(CASE, "throughput ratio", None, f"<= {GOAL:g}x", None,
                          note=f"skipped: the vLLM venv is absent ({venv_dir()}); build it with `make vllm`")
    from bench.backends import ModelSpec, close_lm, load_lm

    hf = ctx.handle
    n = n_prompts or ctx.n(64, 8)
    prompts = squad_prompts(hf, n)
    entry = {"backend": "vllm", "model": "smollm2-135m", "max_connections": concurrency, "dtype": "float32"}
    ctx.log("perf: vllm: starting the server (minutes on a CPU) ...")
    engine = load_lm(ModelSpec.parse(entry, "bench perf vllm"), device="cpu", log=lambda *a, **k: None,
                     run_dir=ctx.workdir)
    try:
        startup = engine.extra.get("server_startup_s")
        assert engine.render("x") == hf.render("x"), "the engine renders prompts differently from hf"
        hf.generate(prompts[:1], max_new_tokens=2, batch_size=1)  # warm-up, paid by neither side
        with stopwatch() as t_hf:
            ref = hf.generate(prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
        with stopwatch() as t_engine:
            got = engine.generate(prompts, max_new_tokens=max_new_tokens)
        version = engine.extra.get("engine")
    finally:
        close_lm(engine)
    same = sum(a.text == b.text for a, b in zip(ref, got))
    tok_hf, tok_engine = sum(g.completion_tokens for g in ref), sum(g.completion_tokens for g in got)
    # Throughput in the tokens each side generated (greedy answers may end at different lengths).
    ratio = (tok_engine / t_engine[0]) / (tok_hf / t_hf[0])
    mean_prompt = sum(g.prompt_tokens for g in ref) // len(ref)
    latency = sorted(g.latency_s for g in got)
    return CaseResult(
        CASE, "throughput ratio", ratio, f"<= {GOAL:g}x", ratio <= GOAL and same >= 0.9 * n,
        agree=f"{same}/{n} identical", baseline=f"hf {tok_hf / t_hf[0]:.1f} tok/s",
        optimised=f"vLLM {tok_engine / t_engine[0]:.1f} tok/s",
        note=f"{n} SQuAD prompts with their gold paragraph (~{mean_prompt} tokens), greedy, {max_new_tokens} new "
             f"tokens, float32 on both; hf batch {batch_size} ({t_hf[0]:.1f} s) vs {version} at concurrency "
             f"{concurrency} ({t_engine[0]:.1f} s, request p50 {latency[len(latency) // 2]:.2f} s); server start-up "
             f"{startup:.0f} s, not counted",
        details={"agreed": same, "n": n, "hf_s": t_hf[0], "vllm_s": t_engine[0], "hf_tokens": tok_hf,
                 "vllm_tokens": tok_engine, "startup_s": startup, "engine": version, "concurrency": concurrency,
                 "batch_size": batch_size, "mean_prompt_tokens": mean_prompt})
