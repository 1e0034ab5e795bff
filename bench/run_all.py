"""Every benchmark in one run, and one table of ratios against the baselines each measured in
the same run, with the machine described; `--write README.md` puts it in the README's
performance section (between its `bench:start` and `bench:end` markers).

    python -m bench.run_all [--quick] [--only train,engine,service,data,predict,scale]
                            [--write README.md]

The distributed runs use a scratch database on BENCH_PG_ADMIN_URL's PostgreSQL server and
BENCH_REDIS_URL's Redis (both default to the local ones), and are left out when they do not
answer. A benchmark that fails is reported in the table, and the others still run.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import time
import traceback
from pathlib import Path

from bench.report import Row, machine, markdown

# Name, module: each module's `measure(quick)` returns its rows.
BENCHES = {
    "train": "bench.bench_train",
    "engine": "bench.bench_engine",
    "service": "bench.bench_service",
    "data": "bench.bench_data",
    "predict": "bench.bench_predict",
    "scale": "bench.bench_scale",
}
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def run(names: list[str], quick: bool) -> list[Row]:
    rows: list[Row] = []
    for name in names:
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        try:
            module = importlib.import_module(BENCHES[name])
            rows.extend(module.measure(quick=quick))
        except Exception as exc:  # the table says so; the other benchmarks still run
            traceback.print_exc()
            rows.append(Row(benchmark=name, ours=f"failed: {type(exc).__name__}",
                            reference="", ratio=None, goal=""))  # fmt: skip
        print(f"   ({time.perf_counter() - start:.0f} s)", flush=True)
    return rows


def section(rows: list[Row], quick: bool) -> str:
    day = datetime.date.today().isoformat()
    kind = "a --quick smoke run, not figures to quote" if quick else "one run"
    return "\n".join([
        START,
        f"Measured {day} by `python -m bench.run_all` ({kind}) on: {machine()}.",
        "",
        markdown(rows),
        END,
    ])  # fmt: skip


def write(path: Path, text: str) -> None:
    old = path.read_text(encoding="utf-8")
    if START not in old or END not in old:
        raise SystemExit(f"{path} has no {START} ... {END} section to replace")
    head, rest = old.split(START, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(head + text + tail, encoding="utf-8")


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run of each")
    parser.add_argument("--only", default=",".join(BENCHES))
    parser.add_argument("--write", type=Path, help="the Markdown file whose section to replace")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - set(BENCHES))
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; they are {sorted(BENCHES)}")
    rows = run(names, args.quick)
    text = section(rows, args.quick)
    print(text)
    if args.write is not None:
        write(args.write, text)
    return rows


if __name__ == "__main__":
    main()
