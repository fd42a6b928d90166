# Sums sass_samples.py output over address regions: sass_regions.py out.txt 3c30,4620,... name1,name2,...
import sys
lines=[l.split(None,4) for l in open(sys.argv[1])]
bounds=[int(x,16) for x in sys.argv[2].split(',')]
names=sys.argv[3].split(',')
tot=sum(int(l[1]) for l in lines)
acc=[0]*(len(bounds)+1)
from collections import Counter
reasons=[Counter() for _ in acc]
for l in lines:
    a=int(l[0],16); s=int(l[1])
    k=sum(1 for b in bounds if a>=b)
    acc[k]+=s
    rest=l[4] if len(l)>4 else ''
    for tok in rest.split():
        if '=' in tok:
            n,v=tok.rsplit('=',1)
            try: reasons[k][n]+=int(v)
            except: pass
for k,(n) in enumerate(['<'+hex(bounds[0])]+names):
    print('%-28s %7d %6.2f%%  %s'%(n,acc[k],100*acc[k]/tot, ' '.join('%s=%d'%x for x in reasons[k].most_common(4))))
