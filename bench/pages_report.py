"""``bench_pages``'s results: the figures of each size, written as JSON, read back (``--baseline``), and the
side-by-side table of two sizes with the ratio of their p95 and the goal (p95 at the large size at most
:data:`GOAL_RATIO` × the small size's, and at most :data:`GOAL_MS`).

The two sizes may come from separate invocations (a 10k run and, minutes later, ``--measure-only`` at 1M, compared
with ``--baseline``): the table then says so, with when and at what load each was measured, because the machine's
load moves every figure.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

GOAL_RATIO = 2.0
GOAL_MS = 250.0
OK = 200


@dataclass
class RouteResult:
    name: str
    url: str
    p50_ms: float
    p95_ms: float
    bytes: int
    status: int  # the first answer other than 200, else 200
    samples: list[float] = field(default_factory=list)
    measure: str = "app"  # the Server-Timing measure (bench/timed_wsgi.py)


@dataclass
class SizeRun:
    size: int
    load_average: tuple[float, float, float]
    load_s: float
    index_s: float
    routes: list[RouteResult] = field(default_factory=list)
    measured_at: str = ""  # ISO time the measuring started ("" in files of earlier versions)
    invocation: str = ""  # one id per run of the command: sizes with the same one were measured together
    setup: list[dict[str, Any]] = field(default_factory=list)  # bench/pages_setup.py's steps and their cost
    source: str = ""  # not written: "this run", or the --baseline file it was read from


def runs_write(path: Path, runs: list[SizeRun]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{k: v for k, v in asdict(run).items() if k != "source"} for run in runs]
    path.write_text(json.dumps(rows, indent=2))


def runs_load(path: Path) -> list[SizeRun]:
    """The runs of a ``--json`` file, of this version or an earlier one (fields it lacks get their defaults)."""
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"Cannot read {path} as bench_pages results: {exc}") from None
    if not isinstance(rows, list):
        raise ValueError(f"{path} is not a list of runs (bench_pages --json writes one).")
    route_fields = {f.name for f in fields(RouteResult)}
    run_fields = {f.name for f in fields(SizeRun)}
    runs = []
    for row in rows:
        try:
            routes = [RouteResult(**{k: v for k, v in r.items() if k in route_fields}) for r in row["routes"]]
            values = {k: v for k, v in row.items() if k in run_fields and k != "routes"}
            values["load_average"] = tuple(values["load_average"])
            runs.append(SizeRun(**values, routes=routes))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path}: a run is missing {exc} (not bench_pages results?)") from None
        runs[-1].source = str(path)
    return runs


def runs_combine(*, baseline: list[SizeRun], current: list[SizeRun]) -> list[SizeRun]:
    """One run per size, ascending: those measured now, and the baseline's for the sizes not measured now."""
    by_size = {run.size: run for run in baseline}
    by_size.update({run.size: run for run in current})
    return [by_size[size] for size in sorted(by_size)]


def route_key(name: str) -> str:
    """What matches a route across sizes: its name, except for the deep pages, whose page number depends on the
    size ("catalogue page 2,001 (keyset)" at 1M is "catalogue page 415 (keyset)" at 10k)."""
    return re.sub(r"^(catalogue|API) page [\d,]+ \(keyset\)$", r"\1 deep page (keyset)", name)


def _when(run: SizeRun) -> str:
    when = run.measured_at or "time not recorded"
    return f"{run.size:,} from {run.source or 'this run'} ({when}, load average {run.load_average[0]:.1f})"


def _separate(small: SizeRun, large: SizeRun) -> bool:
    def origin(run: SizeRun) -> str:
        return run.invocation or f"file:{run.source}"

    return origin(small) != origin(large)


def comparison_lines(small: SizeRun, large: SizeRun, *, cpus: int | None) -> list[str]:
    """The side-by-side table of two sizes, and how many routes meet the goal."""
    lines = [
        f"Summary: server-side p95 (p50) in ms, {small.size:,} vs {large.size:,} artworks; goal: p95 at "
        f"{large.size:,} <= {GOAL_RATIO:g}x at {small.size:,} and <= {GOAL_MS:g} ms. Load average "
        f"{small.load_average[0]:.1f} / {large.load_average[0]:.1f} on {cpus} CPUs."
    ]
    if _separate(small, large):
        lines.append(
            f"NOTE: the two sizes come from SEPARATE invocations: {_when(small)}; {_when(large)}. The machine's "
            "load may differ between them, so the ratios compare two moments as well as two sizes."
        )
    lines.append(
        f"{'route':<40} {'small p95 (p50)':>17} {'large p95 (p50)':>17} {'ratio':>6} {'KB':>13}  goal"
    )
    smalls = {route_key(r.name): r for r in small.routes}
    larges = {route_key(r.name): r for r in large.routes}
    keys = list(larges) + [k for k in smalls if k not in larges]
    met = both = 0
    for key in keys:
        a, b = smalls.get(key), larges.get(key)
        if a is None or b is None:
            name, size = (a.name, small.size) if a is not None else (b.name if b else key, large.size)
            lines.append(f"{name:<40} {'':>17} {'':>17} {'':>6} {'':>13}  only measured at {size:,}")
            continue
        both += 1
        ratio = b.p95_ms / a.p95_ms if a.p95_ms else float("inf")
        failed = [(run.size, r.status) for run, r in ((small, a), (large, b)) if r.status != OK]
        if failed:
            verdict = "FAILED (" + ", ".join(f"HTTP {status} at {size:,}" for size, status in failed) + ")"
        elif ratio <= GOAL_RATIO and b.p95_ms <= GOAL_MS:
            verdict, met = "met", met + 1
        else:
            verdict = "MISSED"
        lines.append(
            f"{b.name:<40} {a.p95_ms:8.1f} ({a.p50_ms:6.1f}) {b.p95_ms:8.1f} ({b.p50_ms:6.1f}) {ratio:6.2f} "
            f"{a.bytes / 1024:6.1f}/{b.bytes / 1024:6.1f}  {verdict}"
        )
    lines.append(f"{met} of {both} routes measured at both sizes meet the goal.")
    return lines


def failures(runs: list[SizeRun]) -> list[str]:
    """The routes that did not answer 200, per size."""
    return [
        f"{r.name} at {run.size:,}: HTTP {r.status} ({r.url})"
        for run in runs
        for r in run.routes
        if r.status != OK
    ]
