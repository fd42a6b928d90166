# Per-instruction warp-stall samples from "ncu -i X.ncu-rep --page source --csv --print-source sass" (gzipped):
# python3 sass_samples.py X_sass.csv.gz out.txt -> offset, samples, share, executions, SASS, top stall reasons.
import csv, gzip, sys
f = sys.argv[1]
rows = list(csv.reader(gzip.open(f, 'rt')))
hdr = rows[1]
ix = {h: i for i, h in enumerate(hdr)}
ins = []
for r in rows[2:]:
    if len(r) < len(hdr): continue
    d = {h: r[i] for h, i in ix.items()}
    ins.append(d)
base = int(ins[0]['Address'], 16)
tot = sum(int(d['Warp Stall Sampling (All Samples)'] or 0) for d in ins)
print('instructions', len(ins), 'samples', tot)
reasons = [h for h in hdr if h.startswith('stall_') and 'Not Issued' not in h]
with open(sys.argv[2], 'w') as out:
    for d in ins:
        s = int(d['Warp Stall Sampling (All Samples)'] or 0)
        top = sorted(((int(d[r] or 0), r[6:]) for r in reasons), reverse=True)[:3]
        tops = ' '.join('%s=%d' % (n, v) for v, n in top if v)
        out.write('%05x %6d %7.3f%% %10s  %-60s %s\n' % (int(d['Address'], 16) - base, s, 100.0 * s / tot, d['Instructions Executed'], d['Source'].strip()[:60], tops))
