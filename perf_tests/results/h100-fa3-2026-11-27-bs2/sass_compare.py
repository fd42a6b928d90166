# Compare per-kernel SASS of two objects: identical (after stripping addresses) or not, instruction counts.
import re, subprocess, sys
def kernels(obj):
    out = subprocess.run(["cuobjdump", "-sass", obj], capture_output=True, text=True).stdout
    ks, cur = {}, None
    for line in out.splitlines():
        m = re.match(r"\s*Function : (\S+)", line)
        if m: cur = m.group(1); ks[cur] = []; continue
        m = re.match(r"\s*/\*[0-9a-f]{4,}\*/\s+(.*?);", line)
        if cur and m: ks[cur].append(re.sub(r"\s+", " ", m.group(1)))
    return ks
a, b = kernels(sys.argv[1]), kernels(sys.argv[2])
for k in sorted(set(a) | set(b)):
    if "forward_kernel" not in k and "fill_empty" not in k: continue
    tag = "BS" if re.search(r"TileShapeILi\d+ELi\d+E(Li\d+E)?EELb[01]ELb1E", k) else "  "
    if k not in a or k not in b: print(tag, "only in", "new" if k in b else "old", k); continue
    print(tag, "same" if a[k] == b[k] else "DIFF", len(a[k]), len(b[k]), k[:140])
