"""Cost follows the backend: hosted APIs by measured tokens x the API price entry, a server
on this machine by its hardware's hourly price over the measured throughput."""
import math

import pytest

import tasks as tasks_pkg
from bench.config import RunConfig
from bench.cost import API_PRICES, api_cost_per_1k, cost_per_1k_queries, prepare_cost, serving_basis
from bench.runner import Runner
from fake_openai import FakeOpenAIServer
from fakes import tiny_tokenizer, toy_classification, toy_qa
from reports.frame import load_run
from reports.summary import summarize


def test_serving_basis_from_the_manifest_entry():
    assert serving_basis({"backend": "hf", "spec": {"model": "smollm2-135m"}}) == "hardware"
    assert serving_basis({}) == "hardware"  # runs from before backends: in-process
    assert serving_basis({"backend": "openai", "spec": {"base_url": "http://127.0.0.1:8000/v1"}}) == "hardware"
    assert serving_basis({"backend": "openai", "spec": {"base_url": "http://10.1.2.3:8000/v1"}}) == "remote"
    assert serving_basis({"backend": "openai", "spec": {"base_url": "https://api.openai.com/v1",
                                                        "price": "gpt-4o-mini"}}) == "api"


@pytest.fixture
def toy_tasks(monkeypatch):
    monkeypatch.setattr(tasks_pkg, "load_task", lambda name, seed=0: {"toy-cls": toy_classification,
                                                                      "toy-qa": toy_qa}[name]())
    monkeypatch.setitem(tasks_pkg.TASKS._table, "toy-cls", "fakes:toy_classification")
    monkeypatch.setitem(tasks_pkg.TASKS._table, "toy-qa", "fakes:toy_qa")


def test_summary_prices_each_backend_its_own_way(tmp_path, toy_tasks):
    tok = tmp_path / "tok"
    tiny_tokenizer().save_pretrained(tok)
    with FakeOpenAIServer() as server:
        base = {"backend": "openai", "model": "smol", "base_url": server.url, "tokenizer": str(tok)}
        cfg = RunConfig(tasks=["toy-cls", "toy-qa"], strategies=["prompting"], out=str(tmp_path), name="costs",
                        models=[{**base, "label": "hosted", "price": "gpt-4o-mini"}, {**base, "label": "local"}],
                        limit=8, latency_sample=0, warmup=0, cache=False, max_context=256)
        Runner(cfg, log=lambda *_: None).run()
    # The report's tables say which backend served each cell and how it scored labels.
    from reports.html import render_html
    from reports.summary import write_summary

    html = render_html(cfg.run_dir).read_text(encoding="utf-8")
    assert "<th>backend</th><th>scoring</th>" in html and "<td>openai</td><td>logprobs</td>" in html
    write_summary(cfg.run_dir)
    md = (cfg.run_dir / "summary.md").read_text(encoding="utf-8")
    assert "| strategy | model | backend | scoring |" in md and "| openai | generate |" in md
    summary = summarize(load_run(cfg.run_dir)).set_index(["task", "model"])
    assert set(summary["backend"]) == {"openai"}
    assert summary.loc[("toy-sentiment", "local"), "scoring"] == "logprobs"
    assert summary.loc[("toy-facts", "local"), "scoring"] == "generate"
    for task in ("toy-sentiment", "toy-facts"):
        hosted, local = summary.loc[(task, "hosted")], summary.loc[(task, "local")]
        want = api_cost_per_1k(hosted["prompt_tokens_mean"], hosted["completion_tokens_mean"], "gpt-4o-mini")
        assert hosted["cost_per_1k_usd"] == pytest.approx(want) and want > 0
        assert hosted["hardware"] is None and math.isnan(hosted["price_usd_per_hour"])
        entry = API_PRICES["gpt-4o-mini"]
        assert entry.source in hosted["cost_basis"] and entry.as_of in hosted["cost_basis"]
        assert local["hardware"].startswith("cpu-")
        assert local["cost_per_1k_usd"] == pytest.approx(cost_per_1k_queries(local["queries_per_s"],
                                                                             local["price_usd_per_hour"]))
        assert "over the measured throughput" in local["cost_basis"]
        # What the cell prepared on this machine is priced at the same rate (it was blank).
        assert local["prepare_cost_usd"] == pytest.approx(prepare_cost(local["prepare_s"],
                                                                       local["price_usd_per_hour"]))


def test_a_hosted_api_without_a_price_entry_is_an_unknown_cost_not_a_free_one():
    from bench.cost import hosted_cost_per_1k

    cost, why = hosted_cost_per_1k(120.0, 4.0, None)
    assert math.isnan(cost) and "price" in why
    cost, why = hosted_cost_per_1k(120.0, 4.0, "gpt-4o")
    assert cost == pytest.approx(1000 * (120 * 2.50 + 4 * 10.00) / 1e6) and "2026-11" in why
    assert serving_basis({"backend": "openai", "spec": {"base_url": "http://127.0.0.1:9/v1", "hosted": True}}) == "api"
