#!/usr/bin/env python3
"""PyTorch SDPA forward + backward (cuDNN or FLASH backend) at B=1 H=16 N=16K d=128
bf16, for ncu: with 'nowarm' one forward and one backward only (every kernel of
them is profiled). Usage: cudnn_bwd_once.py [cudnn|flash] [nowarm] [causal]"""
import sys
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

args = sys.argv[1:]
backend = SDPBackend.FLASH_ATTENTION if "flash" in args else SDPBackend.CUDNN_ATTENTION
causal = "causal" in args
B, H, N, D = 1, 16, 16384, 128
q, k, v = (torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
do = torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16)
with sdpa_kernel([backend]):
    for _ in range(0 if "nowarm" in args else 2):
        F.scaled_dot_product_attention(q, k, v, is_causal=causal).backward(do)
    torch.cuda.synchronize()
    o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    o.backward(do)
    torch.cuda.synchronize()
print("ok")
