import csv, gzip, sys, collections, re
rows = list(csv.reader(gzip.open(sys.argv[1], 'rt')))
hdr = rows[1]; data = rows[2:]; ix = {h: i for i, h in enumerate(hdr)}
stall_cols = [h for h in hdr if h.startswith('stall_') and 'Not Issued' not in h]
base = int(data[0][ix['Address']], 16)
ins = [(int(r[ix['Address']], 16) - base, r[ix['Source']].strip(), int(r[ix['Warp Stall Sampling (All Samples)']] or 0),
        int(r[ix['Instructions Executed']] or 0), {c: int(r[ix[c]] or 0) for c in stall_cols}) for r in data]
total = sum(i[2] for i in ins)
# print key markers with the cumulative share
key = re.compile(r'DEPBAR|BAR\.SYNC|BAR\.ARV|USETMAXREG|EXIT|SYNCS|HGMMA|BRA|VOTE|MUFU|UTMALDG|SHFL')
cum = 0; last = None
for a, src, s, ex, st in ins:
    cum += s
    m = key.search(src)
    if m and (m.group(0) not in ('HGMMA', 'MUFU', 'SHFL') or last != m.group(0)):
        top = sorted(st.items(), key=lambda kv: -kv[1])[:2]
        print("%6x %6.2f%% cum %6.2f%% ex=%8d  %-60s %s" % (a, 100*s/total, 100*cum/total, ex, src[:60], " ".join("%s=%d" % (k[6:], v) for k, v in top if v)))
    last = m.group(0) if m else None
