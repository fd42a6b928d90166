#!/usr/bin/env python3
"""dist_perf_model against bench_dist_overlap: bytes and times, both backward schedules.

  check_perf_model.py MODEL_BINARY RESULTS.jsonl

For every JSON line of bench_dist_overlap (one run: P ranks, a config), the
model is calibrated with two numbers measured in that run and nothing else:
  R    = the forward's FLOPs per rank (the model's own count) / the busiest
         rank's forward busy time (time outside wait());
  beta = backward bytes sent by the busiest rank / the backward's transfer
         time alone (the replay without compute), latency folded in (0 us).
It then predicts, for that P: bytes sent forward and backward (exact, no
calibration involved), the backward time and its exposed transfer time, for
the current schedule and the earlier one (--eager-return), and prints them
beside the measurements. The backward's compute is the model's 2.5x the
forward; the measured time also holds what the model leaves out (delta,
zeroing and packing the exchange blocks).
"""
import json
import subprocess
import sys


def model(binary, run, extra):
    args = [binary, "--seq", str(run["seq"]), "--heads", str(run["heads"]), "--dim",
            str(run["dim"]), "--bytes", "4", "--branches", run["branches"], "--ranks",
            str(run["ranks"]), "--latency-us", "0"] + extra
    if run["causal"]:
        args.append("--causal")
    if run["zigzag"]:
        args.append("--zigzag")
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    row = [line.split() for line in out.splitlines() if line and not line.startswith(("#", " ranks"))]
    head = [line.split() for line in out.splitlines() if line.startswith(" ranks")][0]
    return dict(zip(head, row[-1]))


def main():
    binary, path = sys.argv[1], sys.argv[2]
    print("| run | bytes fwd / bwd: measured = model | R GFLOP/s, beta GB/s (calibrated) "
          "| backward s: measured / model | exposed ms: measured / model "
          "| earlier schedule: backward s, exposed ms: measured / model |")
    print("|---|---|---|---|---|---|")
    for line in open(path):
        run = json.loads(line)
        # FLOPs per rank of the forward: the model's compute time at 1 TFLOP/s.
        cal = model(binary, run, ["--tflops", "1", "--link-gbs", "1e9", "--net-gbs", "1e9"])
        flops = (float(cal["fwd_s"]) - float(cal["fwd_exp_s"])) * 1e12
        rate = flops / run["forward_busy_s_min_max_rank"][1]
        beta = run["backward_bytes_sent_max_rank"] / run["backward_comm_alone_s_per_rank"]
        common = ["--tflops", str(rate / 1e12), "--link-gbs", str(beta / 1e9), "--net-gbs",
                  str(beta / 1e9)]
        new = model(binary, run, common)
        old = model(binary, run, common + ["--eager-return"])
        name = "P=%d %s%s%s%s" % (run["ranks"], run["branches"], " causal" if run["causal"] else "",
                                  " zigzag" if run["zigzag"] else "",
                                  "" if run["progress_thread"] else " (no progress thread)")
        fb, bb = run["forward_bytes_sent_max_rank"], run["backward_bytes_sent_max_rank"]
        mfb, mbb = float(new["fwd_bytes"]), float(new["bwd_bytes"])
        print("| %s | %d / %d: %s | %.1f, %.2f | %.2f / %.2f | %.2f / %.2f | %.2f, %.2f / %.2f, %.2f |" % (
            name, fb, bb, "equal" if (mfb == fb and mbb == bb) else
            "model %.0f / %.0f" % (mfb, mbb), rate / 1e9, beta / 1e9,
            run["backward_s"], float(new["bwd_s"]),
            1e3 * run["backward_exposed_comm_s_per_rank"], 1e3 * float(new["bwd_exp_s"]),
            run["backward_eager_return_s"], 1e3 * run["backward_eager_return_exposed_comm_s_per_rank"],
            float(old["bwd_s"]), 1e3 * float(old["bwd_exp_s"])))


if __name__ == "__main__":
    main()
