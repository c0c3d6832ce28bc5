"""Low-precision accuracy of the attention fast path, by PyTorch's fudge-factor rule.

For each dtype, ``MultiHeadAttention`` on the SDPA path and the literal ``reference`` backend both run in
that dtype; their errors against a float64 golden run are compared. The fast path passes when its error
is at most ``fudge`` × the reference's (1.1 for fp16/bf16, as in PyTorch's FlexAttention tests), for the
output and for the input gradient. Run on a GPU: ``python -m benchmarks.attention_precision --device cuda``.
"""

import argparse
import copy

import torch

from core.attention import MultiHeadAttention


def _run(
    module: MultiHeadAttention, x: torch.Tensor, grad: torch.Tensor, causal: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().clone().requires_grad_(True)
    out = module(x, is_causal=causal)
    out.backward(grad.to(out.dtype))
    return out.detach().double(), x.grad.detach().double()


def main() -> None:
    """Compare fast path and reference errors against float64 for several shapes and dtypes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--fudge", type=float, default=1.1)
    args = parser.parse_args()
    device = torch.device(args.device)
    dtypes = [torch.bfloat16, torch.float16] if device.type == "cuda" else [torch.bfloat16]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# attention precision vs float64 golden, {name}, fudge {args.fudge}")
    print(
        "| dtype | B,N,C,heads | causal | out err fast | out err ref | grad err fast | grad err ref | pass |"
    )
    print("|---|---|---|---|---|---|---|---|")
    failures = 0
    for dtype in dtypes:
        for b, n, c, h in [(4, 256, 256, 4), (2, 1024, 512, 8), (1, 4096, 1024, 16)]:
            for causal in (False, True):
                torch.manual_seed(0)
                base = MultiHeadAttention(c, num_heads=h).to(device)
                golden = copy.deepcopy(base).double()
                golden.backend = "reference"
                fast = copy.deepcopy(base).to(dtype)
                ref = copy.deepcopy(base).to(dtype)
                ref.backend = "reference"
                x = torch.randn(b, n, c, device=device)
                grad = torch.randn(b, n, c, device=device)
                g_out, g_grad = _run(golden, x.double(), grad.double(), causal)
                f_out, f_grad = _run(fast, x.to(dtype), grad, causal)
                r_out, r_grad = _run(ref, x.to(dtype), grad, causal)
                errs = [
                    (t - g).abs().mean().item()
                    for t, g in ((f_out, g_out), (r_out, g_out), (f_grad, g_grad), (r_grad, g_grad))
                ]
                ok = errs[0] <= args.fudge * errs[1] and errs[2] <= args.fudge * errs[3]
                failures += not ok
                print(
                    f"| {str(dtype).removeprefix('torch.')} | {b},{n},{c},{h} | {causal} | "
                    + " | ".join(f"{e:.2e}" for e in errs)
                    + f" | {'yes' if ok else 'NO'} |"
                )
    print(f"\n{failures} failing case(s)")


if __name__ == "__main__":
    main()
