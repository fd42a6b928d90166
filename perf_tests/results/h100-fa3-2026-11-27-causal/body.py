import re,sys,collections
def loop(fn):
    ins=[]
    for l in open(fn):
        m=re.match(r'\s+/\*([0-9a-f]+)\*/\s+(.*?)\s*;?\s*$',l)
        if m: ins.append((int(m.group(1),16),m.group(2)))
    addr={a:i for i,(a,_) in enumerate(ins)}
    best=None
    for i,(a,s) in enumerate(ins):
        m=re.search(r'BRA\s+(?:\w+,\s*)?(0x[0-9a-f]+)',s)
        if m:
            t=int(m.group(1),16)
            if t<a and t in addr:
                body=ins[addr[t]:i+1]
                if sum('HGMMA' in x for _,x in body)==(int(sys.argv[3]) if len(sys.argv)>3 else 16) and (best is None or len(body)<len(best)): best=body
    return best
a=loop(sys.argv[1]); b=loop(sys.argv[2])
op=lambda s: re.sub(r'^@!?U?P\w+\s+','',s).split()[0]
ca=collections.Counter(op(s) for _,s in a); cb=collections.Counter(op(s) for _,s in b)
print(len(a),len(b))
for k in sorted(set(ca)|set(cb), key=lambda k: -(abs(ca[k]-cb[k]))):
    if ca[k]!=cb[k]: print("%-22s %4d %4d"%(k,ca[k],cb[k]))
