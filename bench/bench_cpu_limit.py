"""Training under a container CPU limit: torch's own thread count against the one
`pipekit.device.resolve_device` sets from the cgroup quota, in the CPU image under
`docker run --cpus`, alternating, side by side.

The workload is an MLP step (Rheidae's seed model: 48-256-256-256-24, batch 256, fused
AdamW), a few seconds per container. Needs Docker and the image (`make images`)."""

from __future__ import annotations

import argparse
import subprocess

from pipekit.pipeline.images import CPU_IMAGE

STEP = """
import sys, time, torch
if sys.argv[1] == "limit":
    from pipekit.device import resolve_device
    resolve_device("cpu")
threads = torch.get_num_threads()
dims = [48, 256, 256, 256]
layers = [m for a, b in zip(dims, dims[1:]) for m in (torch.nn.Linear(a, b), torch.nn.SiLU())]
model = torch.nn.Sequential(*layers, torch.nn.Linear(256, 24))
opt = torch.optim.AdamW(model.parameters(), fused=True)
x, y = torch.randn(256, 48), torch.randn(256, 24)
def steps(n):
    for _ in range(n):
        opt.zero_grad()
        torch.mean((model(x) - y) ** 2).backward()
        opt.step()
steps(50)
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < float(sys.argv[2]):
    steps(20)
    n += 20
print(threads, n * 256 / (time.perf_counter() - t0))
"""


def rate(image: str, cpus: str, mode: str, seconds: float) -> tuple[int, float]:
    cmd = ["docker", "run", "--rm", "--network", "none", "--cpus", cpus, image]
    out = subprocess.run(
        [*cmd, "python", "-c", STEP, mode, str(seconds)],
        capture_output=True,
        text=True,
        check=True,
    )
    threads, speed = out.stdout.split()
    return int(threads), float(speed)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--image", default=CPU_IMAGE)
    p.add_argument("--cpus", default="1", help="docker run --cpus (a pod's limits.cpu)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=4.0)
    args = p.parse_args()
    best: dict[str, tuple[int, float]] = {}
    for _ in range(args.rounds):
        for mode in ("torch", "limit"):
            threads, speed = rate(args.image, args.cpus, mode, args.seconds)
            if speed > best.get(mode, (0, 0.0))[1]:
                best[mode] = (threads, speed)
    print(f"MLP training step under --cpus {args.cpus}, best of {args.rounds} rounds each:")
    for mode, label in (("torch", "torch's own threads"), ("limit", "the CPU limit's")):
        threads, speed = best[mode]
        print(f"  {label}: {threads} threads, {speed:,.0f} samples/s")
    print(f"  limit / torch's own: {best['limit'][1] / best['torch'][1]:.2f}x")


if __name__ == "__main__":
    main()
