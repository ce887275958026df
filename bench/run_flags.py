"""How `bench run`'s command line becomes its `RunConfig`: the flags over a config file,
or a stored run to resume (checked: a run folder is untrusted input), then the flags that
apply to both (cache, executor, the decide constraints). Imports stay inside the
functions, as in bench/cli.py, so `bench --help` stays fast."""
from __future__ import annotations

import os
from typing import Sequence

from bench.errors import BenchError


def csv_list(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def decide_args(args) -> dict[str, object]:
    return {k: getattr(args, k, None) for k in ("min_score", "max_p95_ms", "monthly_queries", "max_monthly_usd")}


def run_config(args):
    """The config `bench run` runs: stored (`--resume`) or built from the flags."""
    if args.allow_path:  # read by tasks.user_spec wherever a task is loaded (a worker process too)
        os.environ["ADAPTBENCH_ALLOW_PATHS"] = os.pathsep.join(
            [p for p in os.environ.get("ADAPTBENCH_ALLOW_PATHS", "").split(os.pathsep) if p] + args.allow_path)
    cfg = resume_config(args) if args.resume else config_from_flags(args)
    if args.no_cache:
        cfg.cache = False  # reaches strategies' own caches (RAG's indexes) through Budget.cache
    executor_flags(cfg, args)
    if any(v is not None for v in decide_args(args).values()):  # recorded in the manifest with the rest
        from reports.decide_config import parse, with_flags

        cfg.decide = with_flags(cfg.decide, decide_args(args))
        parse(cfg.decide)
    return cfg


def parse_sets(items: Sequence[str]) -> dict[str, dict[str, object]]:
    from bench import redact, yamlio

    out: dict[str, dict[str, object]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        strategy, dot, option = key.partition(".")
        if not sep or not dot or not option:
            raise BenchError(f"--set {item!r}: expected STRATEGY.OPTION=VALUE, e.g. lora.max_steps=40")
        if redact.is_secret_name(option):
            redact.add_secret(value)  # masked everywhere from here on, the recorded command line included
        out.setdefault(strategy, {})[option] = yamlio.load_text(value, f"--set {key}").data
    return out


def resume_config(args):
    """The config stored in RUN/manifest.json, pointed at RUN. A run folder is untrusted
    input (a colleague's, a CI artifact): what it would run or read outside itself
    (task specs, model paths, a model's own code) is used only when the command line
    says the same (`bench.resume_check`)."""
    from pathlib import Path

    from bench.config import RunConfig
    from bench.options import config_from
    from bench.redact import MASK
    from bench.resume_check import check_stored, read_stored

    given = [f for f in ("config", "strategies", "limit", "train_limit", "train_sizes", "name", "seed", "batch_size",
                         "corpus_change", "refresh_per_month", "compare_rebuild")
             if getattr(args, f) not in (None, [], False)]
    if given or args.set:
        raise BenchError(f"--resume continues a run with its stored config; drop {', '.join(given) or '--set'} "
                         "(or start a new run)")
    run_dir = Path(args.resume).expanduser()
    if not run_dir.is_dir():
        run_dir = Path(args.out or "runs") / args.resume
    manifest = run_dir / "manifest.json"
    if not manifest.is_file():
        raise BenchError(f"--resume {args.resume}: no run folder with a manifest.json at {run_dir}")
    stored = read_stored(manifest)
    if MASK in str(stored):
        raise BenchError(f"{manifest}: the stored config holds redacted secrets; re-run with the config file")
    check_stored(stored, run_dir, tasks=csv_list(args.tasks), models=csv_list(args.model),
                 trust_remote_code=bool(args.trust_remote_code))
    stored.update(out=str(run_dir.parent), name=run_dir.name)
    if args.device:
        stored["device"] = args.device
    return config_from(RunConfig, stored, str(manifest))


def executor_flags(cfg, args) -> None:
    """--executor and --ray-address apply to new and resumed runs alike (a run started
    locally may continue on a Ray cluster, and the other way round)."""
    if args.executor:
        cfg.executor = args.executor
    if args.ray_address:
        if cfg.executor != "ray":
            raise BenchError("--ray-address needs --executor ray (or executor: ray in the config)")
        cfg.ray = {**cfg.ray, "address": args.ray_address}


def config_from_flags(args):
    from bench.config import make_config

    seeds = [int(s) for s in csv_list(args.seed)] if args.seed else None
    sizes = csv_list(getattr(args, "train_sizes", None))
    if sizes and not all(x.isdigit() for x in sizes):
        raise BenchError(f"--train-sizes {args.train_sizes!r}: expected a comma list of whole numbers, e.g. 50,200")
    sets = parse_sets(args.set)
    cfg = make_config(args.config, tasks=csv_list(args.tasks), strategies=csv_list(args.strategies),
                      models=csv_list(args.model), limit=args.limit, train_limit=args.train_limit, out=args.out,
                      name=args.name, device=args.device, seeds=seeds, batch_size=args.batch_size,
                      trust_remote_code=args.trust_remote_code, latency_sample=args.latency_sample,
                      dtype=getattr(args, "dtype", None), train_sizes=[int(x) for x in sizes] if sizes else None,
                      corpus_change=fraction_or_path(args.corpus_change), refresh_per_month=args.refresh_per_month,
                      compare_rebuild=getattr(args, "compare_rebuild", None))
    for strategy, options in sets.items():
        cfg.strategy_options.setdefault(strategy, {}).update(options)
    return cfg


def fraction_or_path(text: str | None) -> float | str | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text  # a change file; bench.updates checks it
