#!/usr/bin/env python3
"""Self-test of compare_benchmarks.py on synthetic Google Benchmark JSON: an
unchanged run passes, a machine twice as slow everywhere passes (the reference
kernel absorbs it), one benchmark 2x slower fails, a missing reference and an
empty baseline slot are reported with their own exit codes."""
import contextlib
import io
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_benchmarks  # noqa: E402

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


if __name__ == "__main__":
    unittest.main()
