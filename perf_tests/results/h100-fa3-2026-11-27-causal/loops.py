import re,sys
lines=[l for l in open(sys.argv[1])]
ins=[]
for l in lines:
    m=re.match(r'\s+/\*([0-9a-f]+)\*/\s+(.*?)\s*;?\s*$',l)
    if m: ins.append((int(m.group(1),16),m.group(2)))
addr={a:i for i,(a,_) in enumerate(ins)}
for i,(a,s) in enumerate(ins):
    m=re.search(r'BRA\s+(?:\w+,\s*)?(0x[0-9a-f]+)',s)
    if m:
        t=int(m.group(1),16)
        if t<a and t in addr:
            body=ins[addr[t]:i+1]
            h=sum('HGMMA' in x for _,x in body)
            if h: print("loop %x-%x n=%d hgmma=%d mufu=%d"%(t,a,len(body),h,sum('MUFU' in x for _,x in body)))
