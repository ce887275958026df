"""The local executor's latency hook: with `bench.latency.probe_group`, the cells of one
task x model are all predicted first, then probed together, then recorded."""
from bench import latency
from bench.config import RunConfig
from bench.runner import Runner
from bench.store import read_jsonl
from grids import fake_world  # noqa: F401 (a fixture)


def test_cells_of_one_task_are_probed_together_after_all_are_predicted(tmp_path, fake_world, monkeypatch):
    calls = []

    def probe_group(entries, examples, sample, warmup, open_bar=None):
        events = read_jsonl(tmp_path / "g" / "events.jsonl")
        calls.append(([label for label, _, _ in entries], len(examples), sample,
                      {e["cell"] for e in events if e["event"] == "predict"},
                      len(read_jsonl(tmp_path / "g" / "cells.jsonl"))))
        return {label: latency.probe_cell(strategy, artifacts, examples, sample, warmup)
                for label, strategy, artifacts in entries}

    monkeypatch.setattr(latency, "probe_group", probe_group, raising=False)
    cfg = RunConfig(tasks=["toy-cls", "toy-qa"], strategies=["prompting", {"name": "prompting", "label": "p2",
                                                                          "shots": 2}],
                    seeds=[0, 1], out=str(tmp_path), name="g", limit=4, latency_sample=2, warmup=0, cache=False)
    Runner(cfg, log=lambda *_: None).run()
    assert len(calls) == 2  # one group per task x model
    for labels, n_examples, sample, predicted, recorded in calls:
        assert len(labels) == 4 and set(labels) <= predicted  # every cell predicted before the probes
        assert sample == 2 and n_examples in (2, 4)
    assert [c[4] for c in calls] == [0, 4]  # the first group's cells were recorded only after its probes
    cells = read_jsonl(tmp_path / "g" / "cells.jsonl")
    assert len(cells) == 8 and all(c["latency"]["default"]["n"] == 2 for c in cells)
