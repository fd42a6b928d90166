# Per-kernel SASS of the old and new forward_launch.cu objects: identical after
# masking constant-bank offsets ("same"), identical but for register names
# ("regnames": register and predicate names, code addresses), the same
# instructions in another order ("reordered"), or different; the kDedup=false
# kernels' names lose the new trailing template argument.
import re, subprocess, sys
def kernels(obj, new):
    out = subprocess.run(["cuobjdump", "-sass", obj], capture_output=True, text=True).stdout
    ks, cur = {}, None
    for line in out.splitlines():
        m = re.match(r"\s*Function : (\S+)", line)
        if m:
            cur = m.group(1)
            if new and "forward_kernel" in cur:
                cur = re.sub(r"Lb0EEEvNS1_11ForwardArgsE$", "EEvNS1_11ForwardArgsE", cur)
            ks[cur] = []; continue
        m = re.match(r"\s*/\*[0-9a-f]{4,}\*/\s+(.*?);", line)
        if cur and m:
            ins = re.sub(r"\s+", " ", m.group(1))
            ks[cur].append(re.sub(r"c\[0x0\]\[0x[0-9a-f]+\]", "c[0x0][X]", ins))
    return ks
def norm(x):
    x = re.sub(r"(CALL\.REL\.NOINC|BRA\S*|BSSY\S*|JMP\S*|RET\S*) .*", r"\1 X", x)  # code addresses
    x = re.sub(r"\b(MOV U?R\d+), 0x[0-9a-f]+", r"\1, ADDR", x)                    # return addresses
    x = re.sub(r"\bU?R\d+\b", "R", x)
    return re.sub(r"\bU?P\d\b", "P", x)
regs = lambda l: [norm(x) for x in l]
a, b = kernels(sys.argv[1], False), kernels(sys.argv[2], True)
for k in sorted(set(a) | set(b)):
    if "forward_kernel" not in k and "fill_empty" not in k: continue
    if k not in a or k not in b: print("only-in-" + ("new" if k in b else "old"), len(b.get(k, a.get(k, []))), k[:150]); continue
    same = a[k] == b[k]
    rn = regs(a[k]) == regs(b[k])
    nd = sum(x != y for x, y in zip(a[k], b[k]))
    ms = sorted(regs(a[k])) == sorted(regs(b[k]))
    if not same and not rn and ms: print("reordered(%d)" % nd, len(a[k]), len(b[k]), k[:150]); continue
    print("same" if same else ("regnames(%d)" % nd if rn else "DIFF(%d)" % nd), len(a[k]), len(b[k]), k[:150])
