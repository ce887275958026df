"""Property-style fuzzing of the YAML and JSONL readers, bounded in time (hypothesis
deadlines, example counts) and memory (peak RSS growth checked): whatever the input,
a reader returns data or raises the bench's own error, never a traceback."""
import json
import resource

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import jsonl, yamlio
from bench.errors import BenchError
from tasks.records import read_jsonl

FUZZ = settings(max_examples=150, deadline=1000, suppress_health_check=[HealthCheck.too_slow], database=None)
# YAML's own punctuation, anchors and aliases, so the fuzzer reaches the loader's limits.
TOKENS = st.sampled_from(["a", "b", ": ", "- ", "\n", "  ", "[", "]", "{", "}", ", ", "&x ", "*x", "&y ", "*y",
                          "!!python/object:os.system ", "!!str ", "<<: ", "'q'", '"d"', "1", "true", "null", "#",
                          "---\n", "? ", "|\n", "\t", "\x00", "é"])
YAMLISH = st.lists(TOKENS, max_size=60).map("".join)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=20),
                    st.floats(allow_nan=False, allow_infinity=False))
DATA = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.text(min_size=1, max_size=8), inner,
                                                                     max_size=4)), max_leaves=20)


@pytest.fixture(autouse=True)
def _bounded_memory():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    yield
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 300_000  # KiB


@FUZZ
@given(st.one_of(YAMLISH, st.text(max_size=200)))
def test_yaml_loader_returns_data_or_a_bench_error(text):
    try:
        doc = yamlio.load_text(text, "fuzz.yaml")
    except BenchError as exc:
        assert str(exc).startswith("fuzz.yaml")
        return
    json.dumps(doc.data, default=str)  # plain data, no constructed objects


@FUZZ
@given(DATA)
def test_yaml_loader_reads_plain_data_as_yaml_safe_load_does(data):
    text = yaml.safe_dump({"root": data}, allow_unicode=True)
    assert yamlio.load_text(text).data == yaml.safe_load(text)


@FUZZ
@given(st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: not k.startswith("_")), DATA, max_size=5))
def test_jsonl_round_trip_and_any_single_byte_change_is_caught(record):
    key = (b"k" * 32, "kid00001")
    line = jsonl.encode(record, key)
    decoded, state = jsonl.decode(line, key)
    assert state == "ok" and decoded == json.loads(json.dumps(record))
    for i in range(0, len(line) - 1, max(1, len(line) // 16)):
        flipped = line[:i] + chr((ord(line[i]) + 1) % 128 or 1) + line[i + 1:]
        got, state = jsonl.decode(flipped, key)
        assert got is None or got == decoded  # a change is refused, or it changed nothing the record holds


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.lists(st.sampled_from([b"[", b"{", b'"a": ', b"1", b",", b"]", b"}",
                                                                    b"\n", b'"\\', b"\xff"]), max_size=400)
                 .map(b"".join)))
def test_jsonl_readers_never_raise_on_arbitrary_bytes(tmp_path_factory, raw):
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "rows.jsonl"
    path.write_bytes(raw)
    result = jsonl.read(path)
    assert result.bad + len(result.records) + result.unverified >= 0
    try:
        list(read_jsonl(path))
    except BenchError as exc:
        assert str(path) in str(exc)


def test_a_line_nested_past_the_limit_is_bad_not_a_crash():
    for depth in (65, 2_000, 200_000):
        line = "[" * depth + "]" * depth + "\n"
        assert jsonl.decode(line) == (None, "bad")
    assert jsonl.decode('{"a": "' + "[" * 500 + '"}\n')[1] == "unverified"  # brackets inside a string are text
