"""What the ensemble selection gains: automl-meta warm with the default ensemble against the
same fits with ``--ensemble-size 1``, from two ``compare.py`` result files.

    python benchmarks/compare.py --tasks 0 --unseen --budgets 10                  # default
    python benchmarks/compare.py --tasks 0 --unseen --budgets 10 --systems "automl-meta warm" \\
        --automl-meta-args "--ensemble-size 1" --out benchmarks/results/compare_cli_ensemble1.csv
    python benchmarks/ensemble_gain.py --budget 10

Per task kind: mean test score of both, the mean difference, wins / losses / ties, and the
refit seconds (search end to refit end, from each fit's timeline). Writes
``benchmarks/results/ensemble_gain_<budget>s.md``. The two files come from separate runs:
the number of trials a fit reaches differs between runs, so part of a difference is that.
When the ensemble file has ``best_trial_score`` (``compare.py`` writes it), a second table
compares each ensemble with its own best trial in the same fit.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"


def refit_seconds(timelines: pd.Series) -> pd.Series:
    """Search end → refit end, per run."""
    out = []
    for text in timelines:
        events = {e["event"]: e["seconds"] for e in json.loads(text)} if isinstance(
            text, str) else {}
        out.append(events.get("refit end", np.nan) - events.get("search end", np.nan))
    return pd.Series(out, index=timelines.index, dtype=float)


def paired_table(runs: pd.DataFrame) -> list[str]:
    """Markdown lines comparing each run's final model with its own best trial
    (``best_trial_score``, written by ``compare.py``), per system and task kind."""
    if "best_trial_score" not in runs or not runs["best_trial_score"].notna().any():
        return []
    lines = ["", "**Paired, within the same fits** (`best_trial_score`: the ensemble's own "
             "best trial, refitted on all rows as a member, scored on the same test rows "
             "by `benchmarks/best_member.py`; no search noise between the two):", "",
             "| system | kind | tasks | ensembles | mean final model | mean its best trial | "
             "mean gain | wins | losses | ties | losses / differing |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    runs = runs[runs["best_trial_score"].notna()]
    for (system, kind), g in runs.groupby(["system", "kind"]):
        d = g["score"] - g["best_trial_score"]
        wins, losses = int((d > 1e-12).sum()), int((d < -1e-12).sum())
        share = f"{losses / (wins + losses):.0%}" if wins + losses else "-"
        ens = int(g["final_model"].astype(str).str.startswith("ensemble").sum())
        lines.append(f"| {system} | {kind} | {len(g)} | {ens} | {g['score'].mean():.4f} | "
                     f"{g['best_trial_score'].mean():.4f} | {d.mean():+.4f} | {wins} | "
                     f"{losses} | {len(g) - wins - losses} | {share} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=10)
    ap.add_argument("--ensemble", type=Path, default=RESULTS / "compare_cli.csv")
    ap.add_argument("--out", type=Path, default=None,
                    help="default: results/ensemble_gain_<budget>s.md")
    ap.add_argument("--single", type=Path, default=RESULTS / "compare_cli_ensemble1.csv")
    ap.add_argument("--paired-only", action="store_true",
                    help="only the paired table, for every automl-meta system of --ensemble")
    args = ap.parse_args()
    system = "automl-meta warm"
    a = pd.read_csv(args.ensemble)
    if args.paired_only:
        a = a[a["system"].str.startswith("automl-meta") & (a["budget"] == args.budget)
              & (a["status"] == "ok")]
        text = "\n".join([f"# Final ensemble against its own best trial, {args.budget:g} s",
                          "", f"`python benchmarks/ensemble_gain.py --budget {args.budget:g} "
                          f"--paired-only --ensemble {args.ensemble}`"]
                         + paired_table(a)) + "\n"
        out = args.out or RESULTS / f"ensemble_paired_{args.budget:g}s.md"
        out.write_text(text)
        print(text)
        return
    b = pd.read_csv(args.single)
    a = a[(a["system"] == system) & (a["budget"] == args.budget) & (a["status"] == "ok")]
    b = b[(b["system"] == system) & (b["budget"] == args.budget) & (b["status"] == "ok")]
    m = a.merge(b, on=["name", "kind"], suffixes=("_ens", "_one"))
    lines = [f"# Ensemble selection against the single best trial, {args.budget:g} s",
             "", f"`python benchmarks/ensemble_gain.py --budget {args.budget:g}` on "
             f"`{args.ensemble.name}` (default `--ensemble-size`) and `{args.single.name}` "
             "(`--ensemble-size 1`): automl-meta warm through the CLI, same tables, split and "
             "budget, separate runs.", "",
             "| kind | tasks | mean with ensemble | mean single best | mean gain | wins | "
             "losses | ties | losses / differing |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, g in m.groupby("kind"):
        d = g["score_ens"] - g["score_one"]
        wins, losses = int((d > 1e-12).sum()), int((d < -1e-12).sum())
        ties = len(g) - wins - losses
        share = f"{losses / (wins + losses):.0%}" if wins + losses else "-"
        lines.append(f"| {kind} | {len(g)} | {g['score_ens'].mean():.4f} | "
                     f"{g['score_one'].mean():.4f} | {d.mean():+.4f} | {wins} | {losses} | "
                     f"{ties} | {share} |")
    ra, rb = refit_seconds(a["timeline"]), refit_seconds(b["timeline"])
    lines += ["", f"- refit (search end → refit end), median / 90th percentile: with ensemble "
                  f"{ra.median():.2f} / {ra.quantile(0.9):.2f} s, single best "
                  f"{rb.median():.2f} / {rb.quantile(0.9):.2f} s",
              f"- fit process wall time, median / max: with ensemble "
              f"{m['fit_seconds_ens'].median():.2f} / {m['fit_seconds_ens'].max():.2f} s, "
              f"single best {m['fit_seconds_one'].median():.2f} / "
              f"{m['fit_seconds_one'].max():.2f} s; over budget + grace: "
              f"{int(m['over_budget_ens'].fillna(False).astype(bool).sum())} and "
              f"{int(m['over_budget_one'].fillna(False).astype(bool).sum())}"]
    for col, label in (("model_bytes", "model file (MB)"),):
        if f"{col}_ens" in m and m[f"{col}_ens"].notna().any():
            lines.append(f"- {label}, median: with ensemble {m[f'{col}_ens'].median() / 1e6:.2f}"
                         f", single best {m[f'{col}_one'].median() / 1e6:.2f}")
    if "final_model_ens" in m and m["final_model_ens"].notna().any():
        ens = m["final_model_ens"].astype(str).str.startswith("ensemble").sum()
        lines.append(f"- final model an ensemble in {ens} of {len(m)} fits")
    lines += paired_table(a)
    text = "\n".join(lines) + "\n"
    out = args.out or RESULTS / f"ensemble_gain_{args.budget:g}s.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
