"""Distributed ``build-metabase``: wall time with 1 and with 2 workers, through PostgreSQL.

Picks ``--tasks`` small corpus tasks deterministically (100 to 2 000 rows, the smallest by
rows × features, half classification and half regression) and builds them through the real
CLI against one throwaway PostgreSQL cluster (``tests/postgres.py``; or ``--storage URL``),
once per worker count, each time as a fresh build: the leader
``build-metabase … --storage URL --n-workers 1 --output DIR`` plus, for W workers, W - 1
``build-metabase … --storage URL --worker`` processes (as on other machines), or with
``--mode threads`` one leader with ``--n-workers W``. Reports the wall time (first process
start → leader exit, export included), the speed-up, and checks each export: every task
once, no duplicated trial row, every task claimed once.

    python benchmarks/build_scaleout.py                  # 8 tasks, 20 trials each, 1 and 2 workers
    python benchmarks/build_scaleout.py --tasks 2 --trials-per-task 2 --report /tmp/s.md  # smoke

Writes ``benchmarks/results/build_scaleout.md`` (``--report``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: common.py

from common import RESULTS, add_corpus_argument, read_corpus_manifest  # noqa: E402

from automl_meta.meta.builder.queue import BuildQueue  # noqa: E402
from automl_meta.meta.builder.sources.directory import _task_id  # noqa: E402
from automl_meta.meta.metabase import load_metabase  # noqa: E402
from automl_meta.search.study import redact  # noqa: E402

REPORT = RESULTS / "build_scaleout.md"


def choose(manifest: pd.DataFrame, n: int) -> list[str]:
    """``n`` small task ids (deterministic): 100 to 2 000 rows, smallest rows × features
    first, half of them classification, half regression."""
    m = manifest[(manifest.n_rows >= 100) & (manifest.n_rows <= 2000)].copy()
    m["cells"] = m.n_rows * m.n_features
    m = m.sort_values(["cells", "file"])
    per_kind = [m[m.task == "classification"], m[m.task == "regression"]]
    picks = pd.concat([per_kind[0].head((n + 1) // 2), per_kind[1].head(n // 2)])
    return [_task_id(f) for f in picks.file]


def markdown(df: pd.DataFrame) -> str:
    """A pipe table (without needing tabulate)."""
    lines = ["| " + " | ".join(map(str, df.columns)) + " |",
             "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


@contextlib.contextmanager
def database(url: str | None) -> Iterator[str]:
    """The given URL, or a throwaway cluster (started the way the tests start theirs)."""
    if url:
        yield url
        return
    from tests.postgres import throwaway_cluster

    with throwaway_cluster() as fresh:
        yield fresh


def build_once(url: str, tasks: list[str], workers: int, mode: str, trials: int,
               build: str, output: Path, log: Path, corpus: Path) -> float:
    """One build from scratch; returns the wall time in seconds."""
    cli = [sys.executable, "-m", "automl_meta", "build-metabase", str(corpus), "--only",
           ",".join(tasks), "--storage", url, "--build", build, "--trials-per-task",
           str(trials)]
    leader_workers = workers if mode == "threads" else 1
    with open(log, "w") as fh:
        t0 = time.monotonic()
        leader = subprocess.Popen([*cli, "--n-workers", str(leader_workers), "--output",
                                   str(output)], stdout=fh, stderr=subprocess.STDOUT)
        helpers = [subprocess.Popen([*cli, "--worker"], stdout=fh, stderr=subprocess.STDOUT)
                   for _ in range(workers - leader_workers)]
        codes = [leader.wait()] + [h.wait() for h in helpers]
        wall = time.monotonic() - t0
    if any(codes):
        raise SystemExit(f"build {build} failed (exit codes {codes}); see {log}:\n"
                         + log.read_text()[-2000:])
    return wall


def check(url: str, build: str, output: Path, tasks: list[str], trials: int) -> dict:
    """Every task once in the export and in the claims table; no duplicated trial rows."""
    mb = load_metabase(output)
    queue = BuildQueue(url, build)
    try:
        claims = queue.tasks()
    finally:
        queue.close()
    problems = []
    if sorted(mb.tasks["task_id"]) != sorted(tasks):
        problems.append("exported tasks differ from the chosen ones")
    if mb.results.duplicated(["task_id", "trial"]).any():
        problems.append("duplicated trial rows")
    if any(c["attempts"] != 1 or c["state"] not in ("done", "failed") for c in claims):
        problems.append("a task was claimed more than once or is unfinished")
    by_worker = pd.Series([c["worker"].rsplit(":", 1)[-1] for c in claims]).value_counts()
    return {"tasks_ok": int((mb.tasks["status"] == "ok").sum()),
            "trials": len(mb.results), "expected_trials": len(tasks) * trials,
            "tasks_per_worker": "/".join(str(v) for v in sorted(by_worker, reverse=True)),
            "problems": "; ".join(problems) or "none"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=8, help="Corpus tasks to build.")
    ap.add_argument("--trials-per-task", type=int, default=20)
    ap.add_argument("--workers", default="1,2", help="Worker counts to compare.")
    ap.add_argument("--mode", choices=("processes", "threads"), default="processes",
                    help="Extra workers as --worker processes, or as threads of the leader.")
    ap.add_argument("--storage", help="PostgreSQL URL (default: a throwaway cluster).")
    ap.add_argument("--report", type=Path, default=REPORT)
    add_corpus_argument(ap)
    args = ap.parse_args()

    manifest = read_corpus_manifest(args.corpus)
    tasks = choose(manifest, args.tasks)
    counts = [int(w) for w in args.workers.split(",")]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows = []
    with database(args.storage) as url, tempfile.TemporaryDirectory() as tmp:
        for w in counts:
            build = f"scaleout-{stamp}-{w}w"
            output = Path(tmp) / f"mb-{w}"
            load_before = os.getloadavg()[0]
            wall = build_once(url, tasks, w, args.mode, args.trials_per_task, build, output,
                              Path(tmp) / f"{build}.log", args.corpus)
            row = {"workers": w, "wall_s": round(wall, 1), "load_before": round(load_before, 2)}
            row |= check(url, build, output, tasks, args.trials_per_task)
            rows.append(row)
            print(f"{w} worker(s): {wall:.1f} s  ({row['problems']})", flush=True)
        storage_shown = redact(url) if args.storage else "throwaway PostgreSQL cluster"
    table = pd.DataFrame(rows)
    base = table.loc[table.workers == min(counts), "wall_s"].iloc[0]
    table["speed_up"] = (base / table["wall_s"]).round(2)
    table["efficiency"] = (table["speed_up"] / (table["workers"] / min(counts))).round(2)
    chosen = manifest.assign(task_id=[_task_id(f) for f in manifest.file])
    chosen = chosen[chosen.task_id.isin(tasks)][["task_id", "task", "n_rows", "n_features"]]
    cols = ["workers", "wall_s", "speed_up", "efficiency", "tasks_per_worker", "tasks_ok",
            "trials", "expected_trials", "problems", "load_before"]
    md = [
        "# Distributed build-metabase: 1 vs 2 workers",
        "",
        f"`python benchmarks/build_scaleout.py --tasks {args.tasks} --trials-per-task "
        f"{args.trials_per_task} --workers {args.workers} --mode {args.mode}` on "
        f"{platform.node()} ({os.cpu_count()} CPUs), {time.strftime('%Y-%m-%d %H:%M')}, "
        f"storage: {storage_shown}.",
        "",
        f"Each row is a fresh build of the same {len(tasks)} tasks ({args.trials_per_task} "
        "trials each). Extra workers are "
        + ("`--worker` processes (as on other machines)" if args.mode == "processes"
           else "threads of the leader (`--n-workers`)")
        + "; wall time from the first process start to the leader's exit, export included. "
        "`load_before`: the 1-minute load average when the run started (other jobs on the "
        "machine distort the timings).",
        "",
        markdown(table[cols]),
        "",
        "Tasks:",
        "",
        markdown(chosen),
        "",
    ]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(md))
    print(table[cols].to_string(index=False))
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
