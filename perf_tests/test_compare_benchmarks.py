#!/usr/bin/env python3
"""Self-test of compare_benchmarks.py on synthetic Google Benchmark JSON: an
unchanged run passes, a machine twice as slow everywhere passes (the reference
kernel absorbs it), one benchmark 2x slower fails, a missing reference and an
empty baseline slot are reported with their own exit codes; bench_dist_overlap
records convert to comparable entries and a slower dist call fails."""
import contextlib
import io
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_benchmarks  # noqa: E402
import dist_overlap_to_gbench  # noqa: E402

REF = "BM_Ref/real_time"


def run_json(times_ms, repetitions=False):
    benches = []
    for name, t in times_ms.items():
        if repetitions:
            for agg, f in (("mean", 1.1), ("median", 1.0), ("stddev", 0.01)):
                benches.append({"name": f"{name}_{agg}", "run_name": name, "run_type": "aggregate",
                                "aggregate_name": agg, "real_time": t * f, "time_unit": "ms"})
        else:
            benches.append({"name": name, "run_name": name, "run_type": "iteration",
                            "real_time": t, "time_unit": "ms"})
    return {"context": {"host_name": "test", "num_cpus": 2}, "benchmarks": benches}


class CompareTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.base_times = {REF: 10.0, "BM_A": 100.0, "BM_B": 5.0}
        self.baseline = self.write("base_run.json", run_json(self.base_times))
        self.base = os.path.join(self.dir.name, "baseline.json")
        self.assertEqual(self.main([self.baseline, "--record", self.base, "--machine", "m",
                                    "--reference", REF]), 0)

    def tearDown(self):
        self.dir.cleanup()

    def write(self, name, data):
        path = os.path.join(self.dir.name, name)
        with open(path, "w") as f:
            json.dump(data, f)
        return path

    def main(self, argv):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return compare_benchmarks.main(argv)

    def compare(self, times, repetitions=False):
        run = self.write("run.json", run_json(times, repetitions))
        return self.main([run, "--baseline", self.base])

    def test_recorded_baseline_is_normalised(self):
        with open(self.base) as f:
            b = json.load(f)
        self.assertAlmostEqual(b["benchmarks"]["BM_A"]["normalised"], 10.0)
        self.assertNotIn(REF, b["benchmarks"])
        self.assertTrue(b["date"])

    def test_unchanged_run_passes(self):
        self.assertEqual(self.compare(self.base_times), 0)

    def test_uniformly_slower_machine_passes(self):
        self.assertEqual(self.compare({n: 2 * t for n, t in self.base_times.items()}), 0)

    def test_one_regression_fails(self):
        self.assertEqual(self.compare(dict(self.base_times, BM_B=10.0)), 1)

    def test_within_threshold_passes(self):
        self.assertEqual(self.compare(dict(self.base_times, BM_B=6.0)), 0)  # +20% < 25%

    def test_median_of_repetitions_is_used(self):
        self.assertEqual(self.compare(self.base_times, repetitions=True), 0)
        self.assertEqual(self.compare(dict(self.base_times, BM_A=200.0), repetitions=True), 1)

    def test_missing_reference_is_an_input_error(self):
        self.assertEqual(self.compare({"BM_A": 100.0, "BM_B": 5.0}), 2)

    def test_keep_best_keeps_the_faster_entry(self):
        run = self.write("run.json", run_json(dict(self.base_times, BM_A=50.0, BM_B=10.0)))
        self.assertEqual(self.main([run, "--record", self.base, "--machine", "m",
                                    "--reference", REF, "--keep-best"]), 0)
        with open(self.base) as f:
            b = json.load(f)["benchmarks"]
        self.assertAlmostEqual(b["BM_A"]["normalised"], 5.0)  # new, faster
        self.assertAlmostEqual(b["BM_B"]["normalised"], 0.5)  # stored, faster

    def test_empty_baseline_slot(self):
        slot = self.write("slot.json", {"machine": "h100", "reference": None, "benchmarks": {}})
        run = self.write("run.json", run_json(self.base_times))
        self.assertEqual(self.main([run, "--baseline", slot]), 3)


class DistOverlapConversionTest(unittest.TestCase):
    """bench_dist_overlap's records become comparable Google Benchmark entries."""
    REC = {"ranks": 2, "seq": 8192, "heads": 4, "dim": 64, "branches": "2048:1,8192:2",
           "causal": False, "zigzag": False, "progress_thread": True,
           "forward_s": 0.25, "backward_s": 0.75, "forward_hidden_fraction": 1.0}

    def test_times_become_benchmarks(self):
        out = dist_overlap_to_gbench.convert(
            "warning\n" + json.dumps(self.REC, indent=1) + "\n" + json.dumps(self.REC))
        names = [b["name"] for b in out["benchmarks"]]
        self.assertEqual(len(names), 4)
        self.assertTrue(names[0].endswith("/progress:1/forward"), names[0])
        self.assertIn("branches:2048:1,8192:2", names[1])
        by_name = {b["name"]: b for b in out["benchmarks"]}
        self.assertAlmostEqual(by_name[names[1]]["real_time"], 0.75)
        self.assertEqual(by_name[names[1]]["time_unit"], "s")

    def test_regression_in_a_dist_time_is_caught(self):
        with tempfile.TemporaryDirectory() as d:
            ref = {"name": REF, "run_name": REF, "run_type": "iteration", "real_time": 10.0,
                   "time_unit": "ms"}

            def write(name, rec):
                data = dist_overlap_to_gbench.convert(json.dumps(rec))
                data["benchmarks"].append(ref)
                path = os.path.join(d, name)
                with open(path, "w") as f:
                    json.dump(data, f)
                return path
            base_run = write("b.json", self.REC)
            base = os.path.join(d, "base.json")
            with contextlib.redirect_stdout(io.StringIO()):
                self.assertEqual(compare_benchmarks.main(
                    [base_run, "--record", base, "--machine", "m", "--reference", REF]), 0)
            with contextlib.redirect_stdout(io.StringIO()):
                self.assertEqual(compare_benchmarks.main(
                    [write("same.json", self.REC), "--baseline", base]), 0)
            with contextlib.redirect_stdout(io.StringIO()):
                self.assertEqual(compare_benchmarks.main(
                    [write("slow.json", dict(self.REC, backward_s=1.5)), "--baseline", base]), 1)

    def test_record_without_times_is_rejected(self):
        with self.assertRaises(ValueError):
            dist_overlap_to_gbench.convert(json.dumps({"ranks": 2}))
        with self.assertRaises(ValueError):
            dist_overlap_to_gbench.convert("no records")


if __name__ == "__main__":
    unittest.main()
