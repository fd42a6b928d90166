#!/usr/bin/env python3
"""Performance-regression check: Google Benchmark JSON against a stored baseline.

Shared machines are noisy and differ from one another, so every benchmark is
first normalised by a reference kernel measured in the same run (its real time
divided by the reference's), and only those normalised times are compared with
the baseline's. A benchmark fails when it got slower by more than the
threshold (default: the baseline's, else 0.25, i.e. 25%).

  compare_benchmarks.py RUN.json [RUN2.json ...] --baseline perf_tests/baselines/M.json
  compare_benchmarks.py RUN.json [...] --record perf_tests/baselines/M.json \\
      --machine M --reference 'BM_TileGemm_Ours/N:128/K:128/real_time' [--note TEXT]

Several run files are merged (e.g. bench_tile_gemm's and bench_attention's of
one nightly run). With --benchmark_repetitions the median aggregate is used;
otherwise the fastest of repeated entries.

Exit status: 0 all within the threshold; 1 a regression; 2 bad input (e.g. the
reference kernel missing from the run); 3 the baseline has no benchmarks yet
(a slot to be recorded, see perf_tests/baselines/README.md).
Python 3 standard library only.
"""
import argparse
import datetime
import json
import sys

UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


def load_runs(paths):
    """name -> (real time in ns, context of the run file it came from)."""
    times, medians, contexts = {}, {}, []
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        contexts.append(data.get("context", {}))
        for b in data.get("benchmarks", []):
            if b.get("error_occurred"):
                continue
            t = float(b["real_time"]) * UNIT_NS[b.get("time_unit", "ns")]
            if b.get("run_type") == "aggregate":
                if b.get("aggregate_name") == "median":
                    medians[b["run_name"]] = t
                continue
            name = b.get("run_name", b["name"])
            times[name] = min(t, times.get(name, float("inf")))
    times.update(medians)  # a median beats single repetitions
    return times, contexts


def normalise(times, reference):
    if reference is None:
        return {n: t for n, t in times.items()}
    if reference not in times:
        raise KeyError(reference)
    r = times[reference]
    return {n: t / r for n, t in times.items() if n != reference}


def record(args, times, contexts):
    norm = normalise(times, args.reference)
    kept = {}
    if args.keep_best:
        # Noisy shared machines only ever make a run slower: keep, per
        # benchmark, the faster of the stored and the new normalised time.
        try:
            with open(args.record) as f:
                old = json.load(f)
            if old.get("reference") == args.reference:
                kept = {n: e for n, e in old.get("benchmarks", {}).items()
                        if n not in norm or e["normalised"] < norm[n]}
        except (OSError, ValueError):
            pass
    ctx = contexts[0] if contexts else {}
    baseline = {
        "machine": args.machine,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
        "reference": args.reference,
        "threshold": args.threshold if args.threshold is not None else 0.25,
        "note": args.note or "",
        "context": {k: ctx.get(k) for k in ("host_name", "num_cpus", "mhz_per_cpu", "load_avg",
                                            "library_build_type", "date")},
        "benchmarks": {n: kept[n] if n in kept else
                       {"real_time_ns": times[n], "normalised": norm[n]}
                       for n in sorted(set(norm) | set(kept))},
    }
    if args.reference is not None:
        baseline["reference_real_time_ns"] = times[args.reference]
    with open(args.record, "w") as f:
        json.dump(baseline, f, indent=1)
        f.write("\n")
    print(f"recorded {len(norm)} benchmarks into {args.record} (reference: {args.reference}"
          f"{f'; kept {len(kept)} faster stored entries' if args.keep_best else ''})")
    return 0


def compare(args, times):
    with open(args.baseline) as f:
        base = json.load(f)
    if not base.get("benchmarks"):
        print(f"{args.baseline}: no benchmarks recorded yet ({base.get('note', 'slot')}); "
              "record one with --record")
        return 3
    reference = base.get("reference")
    threshold = args.threshold if args.threshold is not None else base.get("threshold", 0.25)
    try:
        norm = normalise(times, reference)
    except KeyError:
        print(f"the run has no '{reference}', the baseline's reference kernel", file=sys.stderr)
        return 2
    print(f"baseline {args.baseline}: {base.get('machine')} recorded {base.get('date')}; "
          f"normalised by {reference}; threshold +{threshold:.0%}")
    rows, failed, missing = [], [], []
    for name, entry in sorted(base["benchmarks"].items()):
        if name not in norm:
            missing.append(name)
            continue
        ratio = norm[name] / entry["normalised"]
        verdict = "SLOWER" if ratio > 1 + threshold else ("faster" if ratio < 1 - threshold else "ok")
        if verdict == "SLOWER":
            failed.append(name)
        rows.append((name, entry["normalised"], norm[name], ratio, verdict))
    new = sorted(set(norm) - set(base["benchmarks"]))
    width = max([len(r[0]) for r in rows] + [9])
    print(f"{'benchmark':<{width}}  {'baseline':>10}  {'current':>10}  {'ratio':>6}  verdict")
    for name, b, c, ratio, verdict in rows:
        print(f"{name:<{width}}  {b:>10.4g}  {c:>10.4g}  {ratio:>6.3f}  {verdict}")
    for name in missing:
        print(f"{name:<{width}}  not in this run")
    for name in new:
        print(f"{name:<{width}}  new (not in the baseline)")
    if not rows:
        print("no benchmark of the baseline is in this run", file=sys.stderr)
        return 2
    print(f"{len(rows)} compared, {len(failed)} slower than +{threshold:.0%}, "
          f"{len(missing)} missing, {len(new)} new")
    return 1 if failed else 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="Google Benchmark JSON files of one run")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--baseline", help="baseline JSON to compare with")
    g.add_argument("--record", help="write a baseline JSON from the run")
    p.add_argument("--machine", help="--record: machine name stored in the baseline")
    p.add_argument("--reference", help="--record: the reference benchmark's name (run_name)")
    p.add_argument("--note", help="--record: free text (e.g. machine load)")
    p.add_argument("--keep-best", action="store_true",
                   help="--record: keep stored entries that are faster than the new run's")
    p.add_argument("--threshold", type=float, help="allowed slow-down, e.g. 0.25")
    args = p.parse_args(argv)
    try:
        times, contexts = load_runs(args.runs)
    except (OSError, ValueError, KeyError) as e:
        print(f"cannot read the run: {e}", file=sys.stderr)
        return 2
    if args.record:
        if not args.machine:
            p.error("--record needs --machine")
        if args.reference is not None and args.reference not in times:
            print(f"the run has no '{args.reference}'", file=sys.stderr)
            return 2
        return record(args, times, contexts)
    return compare(args, times)


if __name__ == "__main__":
    sys.exit(main())
