#!/usr/bin/env python3
"""Turn bench_dist_overlap's output (JSON objects, one
per run) into Google Benchmark
JSON, so the nightly regression check (compare_benchmarks.py) covers src/dist.

  dist_overlap_to_gbench.py OVERLAP.jsonl OUT.json

Each object becomes benchmarks named after its setup, e.g.
BM_DistOverlap/ranks:2/seq:8192/.../progress:1/forward with the wall time of
the collective call (max over ranks, best of the run's iterations) as
real_time in seconds. Only times are compared; the hidden fractions stay in
the JSONL (a fraction near 1 has no meaningful ratio). Python 3 standard
library only.
"""
import json
import sys

PHASES = ("forward", "backward")


def setup_name(rec):
    parts = [f"ranks:{rec['ranks']}", f"seq:{rec['seq']}", f"heads:{rec['heads']}",
             f"dim:{rec['dim']}", f"branches:{rec['branches']}",
             f"causal:{int(bool(rec['causal']))}", f"zigzag:{int(bool(rec['zigzag']))}",
             f"progress:{int(bool(rec['progress_thread']))}"]
    return "BM_DistOverlap/" + "/".join(parts)


def records(text):
    """The JSON objects in bench_dist_overlap's output (each may span several
    lines; other lines, e.g. a runtime's warnings, are skipped)."""
    decoder = json.JSONDecoder()
    pos, end = 0, len(text)
    while pos < end:
        line_end = text.find("\n", pos)
        line_end = end if line_end < 0 else line_end
        if text.startswith("{", pos):
            rec, pos = decoder.raw_decode(text, pos)
            yield rec
            continue
        pos = line_end + 1


def convert(text):
    benches = []
    for rec in records(text):
        for phase in PHASES:
            key = f"{phase}_s"
            if key not in rec:
                raise ValueError(f"bench_dist_overlap record lacks '{key}': {str(rec)[:120]}")
            name = f"{setup_name(rec)}/{phase}"
            benches.append({"name": name, "run_name": name, "run_type": "iteration",
                            "real_time": float(rec[key]), "time_unit": "s"})
    if not benches:
        raise ValueError("no bench_dist_overlap records")
    return {"context": {"source": "bench_dist_overlap"}, "benchmarks": benches}


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    with open(argv[1]) as f:
        data = convert(f.read())
    with open(argv[2], "w") as f:
        json.dump(data, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
