# Sums Nsight Compute stall samples (source page, SASS, CSV) over address ranges of one kernel:
# python3 sass_regions.py ncu_x_sass.csv.gz name=hexoffset ... (offsets from the kernel start).
import csv, gzip, sys, collections
rows = list(csv.reader(gzip.open(sys.argv[1], 'rt')))
hdr = rows[1]; data = rows[2:]; ix = {h: i for i, h in enumerate(hdr)}
stall_cols = [h for h in hdr if h.startswith('stall_') and 'Not Issued' not in h]
base = int(data[0][ix['Address']], 16)
ins = [(int(r[ix['Address']], 16) - base, r[ix['Source']].strip(), int(r[ix['Warp Stall Sampling (All Samples)']] or 0),
        int(r[ix['Instructions Executed']] or 0), {c: int(r[ix[c]] or 0) for c in stall_cols}) for r in data]
total = sum(i[2] for i in ins)
# region boundaries: lines given as hex addresses in argv[2:] as name=addr
bounds = [(n, int(a, 16)) for n, a in (x.split('=') for x in sys.argv[2:])]
bounds.sort(key=lambda x: x[1])
def region(a):
    name = 'pre'
    for n, b in bounds:
        if a >= b: name = n
    return name
agg = collections.OrderedDict(); cnt = collections.Counter(); exe = collections.Counter()
for a, src, s, ex, st in ins:
    r = region(a)
    agg.setdefault(r, collections.Counter())
    agg[r]['all'] += s
    for c, v in st.items(): agg[r][c] += v
    if ex: cnt[r] += 1; exe[r] += ex
print("total samples", total)
for r, c in agg.items():
    top = sorted(((k, v) for k, v in c.items() if k != 'all'), key=lambda kv: -kv[1])[:4]
    print("%-14s %5.1f%%  instrs=%4d exec/instr=%8.0f  %s" % (r, 100 * c['all'] / total, cnt[r], exe[r] / max(cnt[r], 1), " ".join("%s=%.1f%%" % (k[6:], 100 * v / total) for k, v in top)))
