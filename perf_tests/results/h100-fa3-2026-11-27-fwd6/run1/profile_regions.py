# Stall samples of the d128/176 dense forward kernel by part of the consumer step (ncu source
# counters, one launch, split on): python3 profile_regions.py ncu_new_dense_sass.csv.gz
# Boundaries are SASS offsets of this build (run1's bench_fa3; see sass_markers.py for the markers).
import csv, gzip, sys, collections
rows = list(csv.reader(gzip.open(sys.argv[1], 'rt')))
hdr = rows[1]; data = rows[2:]; ix = {h: i for i, h in enumerate(hdr)}
stall_cols = [h for h in hdr if h.startswith('stall_') and 'Not Issued' not in h]
base = int(data[0][ix['Address']], 16)
ins = [(int(r[ix['Address']], 16) - base, r[ix['Source']].strip(), int(r[ix['Warp Stall Sampling (All Samples)']] or 0),
        int(r[ix['Instructions Executed']] or 0), {c: int(r[ix[c]] or 0) for c in stall_cols}) for r in data]
total = sum(i[2] for i in ins)
regions = [("prologue (first S, setup)", 0, 0x9e60), ("loop top: turn + K full wait", 0x9e60, 0xa130),
           ("issue S (8 HGMMA)", 0xa130, 0xa300), ("issue P V (11 HGMMA)", 0xa300, 0xa5f0),
           ("wait for S (DEPBAR 1)", 0xa5f0, 0xa600), ("softmax (max, exp2, sum)", 0xa600, 0xdf00),
           ("P V wait, rescale, pack", 0xdf00, 0xe770), ("last P V, epilogue", 0xe770, 0x121b0),
           ("producer", 0x121b0, 1 << 30)]
steps = 1520448
print("total samples", total)
for name, lo, hi in regions:
    c = collections.Counter(); s = 0; ex = 0
    for a, src, smp, e, st in ins:
        if lo <= a < hi:
            s += smp; ex += e
            for k, v in st.items(): c[k] += v
    print("%-30s %5.1f%%  %s" % (name, 100 * s / total, " ".join("%s=%.1f" % (k[6:], 100 * v / total) for k, v in c.most_common(4))))
top = sorted(ins, key=lambda i: -i[2])[:8]
print("top instructions:")
for a, src, smp, e, st in top:
    print("  %6x %5.2f%%  %s" % (a, 100 * smp / total, src[:70]))
