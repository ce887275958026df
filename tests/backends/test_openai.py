"""The openai backend against a real local HTTP server speaking the OpenAI wire format,
and through a real fault-injecting proxy."""
import time

import pytest

from bench.backends import LoadContext, ModelSpec
from bench.backends.entries import OpenAIOptions
from bench.backends.labels import match_label
from bench.backends.openai import CHAT_PREFIX, connect
from bench.errors import BenchError
from fake_openai import FakeOpenAIServer, label_logprob, reply_for
from fakes import tiny_tokenizer
from proxy import Fault, FaultProxy

QUIET = LoadContext(log=lambda *a, **k: None, max_context=256)


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    tiny_tokenizer().save_pretrained(folder)
    return str(folder)


@pytest.fixture
def server():
    with FakeOpenAIServer() as s:
        yield s


def _lm(url, **kw):
    return connect(OpenAIOptions(model=kw.pop("model", "smol"), base_url=url, **kw), QUIET)


def test_labels_are_scored_by_prompt_logprobs_on_the_locally_rendered_prompt(server, tok_dir):
    lm = _lm(server.url, tokenizer=tok_dir)
    prompts = [lm.render(f"Is review {i} positive or negative?") for i in range(5)]
    assert prompts[0].startswith("<|im_start|>user\n") and prompts[0].endswith("<|im_start|>assistant\n")
    scores = lm.score_choices(prompts, ["positive", "negative"])
    for prompt, s in zip(prompts, scores):
        want = [label_logprob(prompt, label) for label in ("positive", "negative")]
        assert s.logprobs == pytest.approx(want) and s.method == "logprobs"
        assert s.best == max(range(2), key=lambda j: want[j]) and s.prompt_tokens == lm.count_tokens(prompt)
    echo = [body for path, body in server.requests if body.get("echo")]
    assert len(echo) == 5 and all(b["logprobs"] == 1 and len(b["prompt"]) == 2 for b in echo)
    assert lm.capabilities.prompt_logprobs and not lm.capabilities.trainable


def test_without_prompt_logprobs_labels_come_from_greedy_generation_detected_once(tok_dir):
    with FakeOpenAIServer(prompt_logprobs=False) as server:
        lm = _lm(server.url, tokenizer=tok_dir)
        prompts = [lm.render(f"review {i}: good or bad?") for i in range(4)]
        scores = lm.score_choices(prompts, ["good", "bad"])
        assert [s.method for s in scores] == ["generate"] * 4
        assert [s.best for s in scores] == [match_label(reply_for("smol", p), ["good", "bad"]) for p in prompts]
        assert sum(1 for _, b in server.requests if b.get("echo")) == 1  # detected on the first prompt only
        assert not lm.capabilities.prompt_logprobs


def test_match_label_prefers_exact_then_prefix_then_first_mention():
    labels = ["sport", "business", "tech"]
    assert match_label("Business.", labels) == 1
    assert match_label("tech news today", labels) == 2
    assert match_label("I think it is sport, not business", labels) == 0
    assert match_label("buisness", labels) == 1


def test_generation_streams_text_usage_and_time_to_first_token(server, tok_dir):
    lm = _lm(server.url, tokenizer=tok_dir)
    prompts = [lm.render(f"What colour is gadget {i}?") for i in range(6)]
    out = lm.generate(prompts, max_new_tokens=8)
    for prompt, g in zip(prompts, out):
        reply = reply_for("smol", prompt)
        assert g.text == reply and g.completion_tokens == len(reply.split())
        assert g.prompt_tokens == len(prompt.split()) or g.prompt_tokens > 0
        assert g.first_token_s is not None and 0 <= g.first_token_s <= g.latency_s
    streamed = [b for p, b in server.requests if p == "/v1/completions"]
    assert all(b["stream"] and b["stream_options"] == {"include_usage": True} and b["temperature"] == 0
               for b in streamed)


def test_without_a_tokenizer_prompts_are_conversations_for_the_chat_endpoint(server):
    lm = _lm(server.url)
    prompt = lm.render("What colour is the sky?", shots=[("What colour is grass?", "green")])
    assert prompt.startswith(CHAT_PREFIX)
    [g] = lm.generate([prompt], max_new_tokens=8)
    path, body = server.requests[-1]
    assert path == "/v1/chat/completions" and [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert g.text == reply_for("smol", "What colour is grass?\ngreen\nWhat colour is the sky?")
    [s] = lm.score_choices([prompt], ["blue", "green"])
    assert s.method == "generate"  # a conversation has no prompt to echo


def test_requests_run_concurrently_up_to_max_connections(server, tok_dir):
    delays = {n: Fault.delay(0.4) for n in range(3, 11)}  # requests 1, 2: the model check, /version
    with FaultProxy(server.url.removesuffix("/v1"), delays) as proxy:
        lm = _lm(proxy.url + "/v1", tokenizer=tok_dir, max_connections=4)
        prompts = [lm.render(f"q{i}") for i in range(8)]
        t0 = time.perf_counter()
        lm.generate(prompts, max_new_tokens=4)
        wall = time.perf_counter() - t0
    assert 0.75 < wall < 2.5  # two waves of four (eight one at a time would take 3.2 s)


def test_retried_faults_give_the_clean_answers(server, tok_dir):
    clean = _lm(server.url, tokenizer=tok_dir)
    prompts = [clean.render(f"Is item {i} good or bad?") for i in range(6)]
    want_scores = clean.score_choices(prompts, ["good", "bad"], progress=None)
    want_text = clean.generate(prompts, max_new_tokens=6)
    # Requests 1 and 2 are the model check and /version.
    faults = {3: Fault.status(429, retry_after=0), 5: Fault.status(503), 7: Fault.drop(),
              10: Fault.status(500, retry_after=0), 12: Fault.drop()}
    with FaultProxy(server.url.removesuffix("/v1"), faults) as proxy:
        lm = connect(OpenAIOptions(model="smol", base_url=proxy.url + "/v1", tokenizer=tok_dir, max_retries=3,
                                   max_connections=2), QUIET)
        got_scores = lm.score_choices(prompts, ["good", "bad"])
        got_text = lm.generate(prompts, max_new_tokens=6)
    assert [(s.best, s.logprobs) for s in got_scores] == [(s.best, s.logprobs) for s in want_scores]
    assert [g.text for g in got_text] == [g.text for g in want_text]
    assert lm.client.retries == 5 and {what for *_, what in proxy.log} >= {"429", "503", "500", "drop"}


def test_a_timeout_is_retried_and_retry_after_is_honoured(server, tok_dir):
    faults = {3: Fault.delay(1.5), 4: Fault.status(429, retry_after=1)}
    with FaultProxy(server.url.removesuffix("/v1"), faults) as proxy:
        lm = _lm(proxy.url + "/v1", tokenizer=tok_dir, timeout_s=0.5, max_retries=2, max_connections=1)
        t0 = time.perf_counter()
        [g] = lm.generate([lm.render("hello there")], max_new_tokens=4)
        wall = time.perf_counter() - t0
    assert g.text == reply_for("smol", lm.render("hello there"))
    assert wall >= 1.5  # 0.5 s timed out, then 1 s of Retry-After


def test_clear_one_line_errors_for_url_key_and_model(tok_dir, monkeypatch):
    key = "sk-test-0123456789abcdef"
    with FakeOpenAIServer(key=key) as server:
        monkeypatch.setenv("BENCH_TEST_SERVER_CRED", "sk-wrong-9876543210")
        with pytest.raises(BenchError) as err:
            _lm(server.url, api_key_env="BENCH_TEST_SERVER_CRED")
        msg = str(err.value)
        assert "authentication failed (HTTP 401)" in msg and server.url in msg and "'smol'" in msg
        assert "sk-wrong-9876543210" not in msg and "\n" not in msg  # the server echoed it; masked here
        monkeypatch.setenv("BENCH_TEST_SERVER_CRED", key)
        assert _lm(server.url, api_key_env="BENCH_TEST_SERVER_CRED").generate(["hi"], 2)[0].text
        with pytest.raises(BenchError, match=r"model 'smoll'\): the server does not serve this model; it serves: smol"):
            _lm(server.url, model="smoll", api_key_env="BENCH_TEST_SERVER_CRED")
        monkeypatch.delenv("BENCH_TEST_SERVER_CRED")
        with pytest.raises(BenchError, match="BENCH_TEST_SERVER_CRED .*is not set"):
            _lm(server.url, api_key_env="BENCH_TEST_SERVER_CRED")
        port = server.port
    with pytest.raises(BenchError) as err:
        _lm(f"http://127.0.0.1:{port}/v1", max_retries=0)
    assert f"http://127.0.0.1:{port}/v1/models (model 'smol'): connection refused" in str(err.value)


def test_the_fingerprint_follows_the_server_and_the_model(tok_dir):
    with FakeOpenAIServer() as a, FakeOpenAIServer(max_model_len=4096) as b, FakeOpenAIServer(model="other") as c:
        prints = [_lm(a.url, tokenizer=tok_dir).fingerprint, _lm(a.url, tokenizer=tok_dir).fingerprint,
                  _lm(b.url, tokenizer=tok_dir).fingerprint, _lm(c.url, model="other", tokenizer=tok_dir).fingerprint,
                  _lm(a.url).fingerprint]
        facts = _lm(a.url).extra["server"]
    assert prints[0] == prints[1] and len(set(prints)) == 4
    with FakeOpenAIServer() as d, FakeOpenAIServer() as e:  # one managed engine, restarted on another port
        managed = [connect(OpenAIOptions(model="smol", base_url=x.url), QUIET, where="managed").fingerprint
                   for x in (d, e)]
        assert managed[0] == managed[1] != _lm(d.url).fingerprint
    assert facts == {"id": "smol", "root": "/models/smol", "max_model_len": 2048, "owned_by": None,
                     "version": "0.0.fake"}


def test_a_served_adapter_is_loaded_once_and_named_in_requests(server, tok_dir, tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    lm = _lm(server.url, tokenizer=tok_dir, adapters=True)
    served = lm.with_served_adapter(adapter, "bbc")
    again = lm.with_served_adapter(adapter, "bbc")  # already loaded (a resumed run): fine
    assert server.adapters == {"bbc": str(adapter.resolve())}
    assert served.fingerprint == again.fingerprint != lm.fingerprint and ":lora:" in served.fingerprint
    [g] = served.generate([lm.render("hi")], max_new_tokens=4)
    assert server.requests[-1][1]["model"] == "bbc" and g.text == reply_for("bbc", lm.render("hi"))
    (adapter / "adapter_model.safetensors").write_bytes(b"other weights")
    assert lm.with_served_adapter(adapter, "bbc2").fingerprint != served.fingerprint
    assert lm.capabilities.adapters


def test_the_registry_loads_an_openai_spec(server, tok_dir):
    from bench.backends import close_lm, load_lm

    spec = ModelSpec.parse(f"openai:smol@{server.url}", "--model")
    lm = load_lm(spec, max_context=128, log=lambda *a, **k: None)
    assert lm.name == "openai:smol" and lm.max_context == 128 and lm.extra["server"]["max_model_len"] == 2048
    close_lm(lm)


def test_adapter_serving_trains_on_the_same_weights_in_process(server, tmp_path):
    from bench.backends.hf import HFBackend
    from bench.lm import AdapterServingLM, training_base
    from fakes import tiny_model

    folder = tmp_path / "weights"
    tok = tiny_tokenizer()
    tiny_model(len(tok)).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    lm = _lm(server.url, tokenizer=str(folder), adapters=True)
    assert isinstance(lm, AdapterServingLM)
    base = training_base(lm, "lora")
    assert isinstance(base, HFBackend) and base is lm.trainable_base()  # loaded once
    prompt = lm.render("Is it good?")
    assert base.render("Is it good?") == prompt and base.count_tokens(prompt) == lm.count_tokens(prompt)
    with pytest.raises(BenchError, match="neither local weights nor adapter serving"):
        training_base(_lm(server.url, tokenizer=str(folder)), "lora")


# A managed-server entry, as the vllm entry is built: start, register the stop, connect.
STARTED: list = []


def _managed_load(spec, ctx):
    server = FakeOpenAIServer(model=spec.options.model)
    STARTED.append(server)
    ctx.on_close(server.stop)
    return connect(OpenAIOptions(model=spec.options.model, base_url=server.url), ctx, spec.label)


def test_a_managed_server_entry_starts_on_load_and_stops_on_close(monkeypatch):
    from dataclasses import dataclass

    import bench.backends as backends
    from bench.backends import Backend, capabilities_of, close_lm, load_lm
    from bench.lm import Capabilities

    @dataclass(frozen=True)
    class ManagedOptions:
        model: str = "smol"
        enable_lora: bool = False

    entry = Backend(name="managed", options=ManagedOptions, load=f"{__name__}:_managed_load",
                    label=lambda o: f"managed:{o.model}", short=lambda rest: {"model": rest},
                    capabilities=lambda o: Capabilities(prompt_logprobs=True, adapters=o.enable_lora))
    monkeypatch.setitem(globals(), "MANAGED", entry)
    monkeypatch.setitem(backends.BACKENDS._table, "managed", f"{__name__}:MANAGED")
    spec = ModelSpec.parse("managed:smol", "--model")
    assert spec.label == "managed:smol" and not capabilities_of(spec).adapters
    assert capabilities_of(ModelSpec.parse({"backend": "managed", "enable_lora": True}, "m")).adapters
    lm = load_lm(spec, log=lambda *a, **k: None)
    assert lm.generate([lm.render("hi")], max_new_tokens=2)[0].text
    close_lm(lm)
    with pytest.raises(BenchError, match="connection refused"):
        _lm(STARTED[-1].url, max_retries=0)


def test_through_a_server_over_the_same_weights_answers_equal_the_hf_backend(tmp_path):
    """Label log-probabilities found by echoed text offsets, and greedy answers, match the
    in-process backend on the same tiny model and tokenizer (prompts rendered identically)."""
    from fakes import tiny_handle, toy_classification
    from strategies.prompts import build_prompt

    hf = tiny_handle(seed=3)
    folder = tmp_path / "tok"
    hf.tokenizer.save_pretrained(folder)
    task = toy_classification()
    with FakeOpenAIServer(model="tiny", lm=hf) as server:
        lm = _lm(server.url, model="tiny", tokenizer=str(folder))
        prompts = [build_prompt(lm, task, ex.input) for ex in task.test]
        assert prompts == [build_prompt(hf, task, ex.input) for ex in task.test]
        got, want = lm.score_choices(prompts, list(task.labels)), hf.score_choices(prompts, list(task.labels))
        gen, ref = lm.generate(prompts[:4], max_new_tokens=6), hf.generate(prompts[:4], max_new_tokens=6)
    for g, w in zip(got, want):
        assert g.logprobs == pytest.approx(w.logprobs, abs=1e-4) and g.best == w.best
        assert g.prompt_tokens == w.prompt_tokens and g.method == "logprobs"
    assert [(g.text, g.prompt_tokens, g.completion_tokens) for g in gen] == [
        (r.text, r.prompt_tokens, r.completion_tokens) for r in ref]


def test_chat_endpoint_with_a_local_tokenizer_counts_tokens_exactly(server, tok_dir):
    lm = _lm(server.url, tokenizer=tok_dir, chat=True)
    prompt = lm.render("What colour is the sky?")
    assert prompt.startswith(CHAT_PREFIX)
    rendered = _lm(server.url, tokenizer=tok_dir).render("What colour is the sky?")
    assert lm.count_tokens(prompt) == lm.count_tokens(rendered) == len(lm.encode(rendered))
