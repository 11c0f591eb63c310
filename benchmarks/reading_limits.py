"""Reading bad input within bounds (issue #23): time and peak memory, with assertions.

Run: ``python benchmarks/reading_limits.py`` (each case in a fresh process, for its peak
RSS). Cases: a quote-heavy 80 KB CSV (csv.Sniffer was quadratic on it), 20 000 numeric
columns x 50 rows (read + typing), and a gzip file inflating to 100 MB of numeric CSV.
Exits 1 when a case exceeds its bound.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

CASE = r"""
import json, resource, sys, time
from automl_meta.data import prepare_dataset, read_table
from automl_meta.errors import UsageError
path, target = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
out = {}
try:
    df = read_table(path)
    out["read_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    prepare_dataset(df, target)
    out["prepare_s"] = time.perf_counter() - t1
except UsageError as exc:
    out["usage_error"] = str(exc)[:120]
out["total_s"] = time.perf_counter() - t0
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""

BOUNDS = {  # seconds for the whole case on a 2-core machine; peak RSS in MB
    "quote-heavy 80 KB CSV": {"total_s": 5.0},
    "20 000 columns": {"total_s": 20.0},
    "gzip to 100 MB": {"peak_rss_mb": 1400},
}


def _make(directory: Path) -> dict[str, tuple[Path, str]]:
    quotes = directory / "quotes.csv"
    quotes.write_text(("a b\n" + '"x,' * 26_000)[:80_000])
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 20_000)).round(3)
    wide = pd.DataFrame(X, columns=[f"c{i}" for i in range(X.shape[1])])
    wide["y"] = (X[:, 0] > 0).astype(int)
    wide.to_csv(directory / "wide.csv", index=False)
    bomb = directory / "bomb.csv.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as fh:
        fh.write(b"a,b,c,d,e,f,g,h,i,y\n")
        for _ in range(100):
            fh.write(b"1,2,3,4,5,6,7,8,9,0\n" * 50_000)
        fh.write(b"1,2,3,4,5,6,7,8,9,1\n")
    return {"quote-heavy 80 KB CSV": (quotes, "a b"),
            "20 000 columns": (directory / "wide.csv", "y"),
            "gzip to 100 MB": (bomb, "y")}


def main() -> int:
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for name, (path, target) in _make(Path(tmp)).items():
            proc = subprocess.run([sys.executable, "-c", CASE, str(path), target],
                                  capture_output=True, text=True, timeout=600)
            result = json.loads(proc.stdout)
            over = {k: result[k] for k, bound in BOUNDS[name].items() if result[k] > bound}
            failed |= bool(over)
            print(f"{name}: {json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()})}"  # noqa: E501
                  + (f"  OVER BOUND {over}" if over else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
