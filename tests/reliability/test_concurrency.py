"""Several processes writing one run folder: no row lost, none duplicated, no line torn."""
import multiprocessing as mp
import subprocess
import sys
import textwrap

from bench import jsonl
from bench.config import RunConfig
from bench.runner import Runner
from bench.store import RunStore, read_jsonl

WRITERS = 6
SCRIPT = textwrap.dedent("""
    import sys
    from bench.store import RunStore
    store, w = RunStore(sys.argv[1]), int(sys.argv[2])
    big = "x" * 30000  # rows larger than any atomic-write size, so unlocked writes would tear
    for start in range(0, 60, 3):
        rows = [{"cell": "c", "example_id": f"w{w}-{i}", "writer": w, "input": big} for i in range(start, start + 3)]
        # ids s0..s9 are written by every process: readers must see each once
        rows.append({"cell": "c", "example_id": f"s{start % 10}", "writer": w, "input": big})
        store.append_rows(rows)
""")


def test_concurrent_writer_processes_lose_and_duplicate_nothing(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path), str(w)]) for w in range(WRITERS)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    raw = jsonl.read(tmp_path / "rows.jsonl")
    assert raw.bad == 0 and len(raw.records) == WRITERS * 80
    rows = RunStore(tmp_path).read_rows()
    ids = [r["example_id"] for r in rows]
    assert len(ids) == len(set(ids)) == WRITERS * 60 + 10
    assert all(r["input"] == "x" * 30000 for r in rows)


def _run_worker(cfg, barrier):
    barrier.wait()  # all processes start on the same folder at once
    Runner(cfg, log=lambda *_: None).run()


def test_four_runners_on_one_folder_run_each_cell_once(tmp_path, fake_world):
    cfg = RunConfig(tasks=["toy-cls", "toy-qa"], strategies=["prompting", {"name": "prompting", "label": "p2",
                                                                          "shots": 2}],
                    seeds=[0, 1], out=str(tmp_path), name="shared", limit=8, checkpoint_every=2,
                    latency_sample=0, warmup=0, cache=False)
    ctx = mp.get_context("fork")  # the children inherit the fake model and toy tasks
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_run_worker, args=(cfg, barrier)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 4
    cells = read_jsonl(cfg.run_dir / "cells.jsonl")
    names = [c["cell"] for c in cells]
    assert len(names) == len(set(names)) == 2 * 2 * 2 and all(c["status"] == "ok" for c in cells)
    assert jsonl.read(cfg.run_dir / "rows.jsonl").bad == 0
    rows = RunStore(cfg.run_dir).read_rows()
    assert len(rows) == 2 * 2 * (8 + 2)  # toy-cls has 8 test examples, toy-qa 2
