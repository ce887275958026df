"""`bench plan RUN`: examples a decisive run needs and the time it would take, from the
planted run (lora 1.00 ties rag 0.95 on 40 examples; prompting 0.25 is clearly behind)."""
import json
import math

import numpy as np
import pytest

from bench.cli import main
from bench.stats import n_to_detect
from bench.store import RunStore
from reports.frame import load_run
from reports.planning import plan


def test_plan_sizes_the_tie_with_the_leader_and_prices_the_time(planted_dir):
    (p,) = plan(load_run(planted_dir))
    assert p.leader == "lora" and p.n_now == 40 and [t["b"] for t in p.ties] == ["rag"]
    diffs = np.array([1.0, 1.0] + [0.0] * 38)  # rag misses 2 of the 40 lora gets right
    want = n_to_detect(diffs.mean(), float(np.std(diffs, ddof=1)))
    assert p.n_decisive == want == 153
    # seconds per example: 1/qps summed, qps = 40 / predict_s (prompting 40 s, rag 4 s, lora 20 s)
    assert p.seconds_per_example == pytest.approx(1.0 + 0.1 + 0.5)
    assert p.fixed_seconds == pytest.approx(0 + 360 + 3600)
    assert p.estimate_s == pytest.approx(153 * 1.6 + 3960)


def test_plan_cli_prints_n_time_and_the_data_limit(planted_dir, capsys):
    store = RunStore(planted_dir)
    manifest = json.loads((planted_dir / "manifest.json").read_text())
    manifest["tasks"] = {"planted": {"sizes": {"train": 100, "validation": 10, "test": 100}}}
    store.write_json("manifest.json", manifest)
    assert main(["plan", str(planted_dir)]) == 0
    out = capsys.readouterr().out
    assert "planted (tiny-llama): n=40 now, leader lora:" in out
    assert "tie with rag: observed gap +0.050" in out and "n≈153" in out
    assert "a decisive run needs n≈153 test examples: about 70 min on this hardware" in out
    assert "the task holds only 100 test examples" in out


def test_a_clear_leader_is_already_decisive(planted_dir):
    store = RunStore(planted_dir)
    rows = [r for r in store.read_rows() if r["strategy"] == "rag"]
    for r in rows:
        r["output"], r["score"] = "wrong", 0.0
    store.append_rows(rows)
    (p,) = plan(load_run(planted_dir))
    assert p.decided and math.isnan(p.n_decisive)
