#!/usr/bin/python3
"""docs/distributed.md's table: what a data-parallel step's gradient all-reduce costs at 8-64
ranks, calculated from quantities measured on this machine:

  - the gradient sizes and the compute of a training step per sample (core-seconds), from
    bench/step_time.py;
  - Gloo's all-reduce throughput and its latency per message, through Shrink's Communicator on 2
    local ranks, from build/bin/allreduce_bench (on loopback no wire limits it: it is what Gloo's
    reduction and copies cost on these cores).

Model: a ring all-reduce sends and receives 2 (N - 1) / N of the gradient per rank at the link's
speed ("wire"), plus 2 (N - 1) message latencies per bucket (DDP's buckets: 1 MiB, then 25 MiB
each); "Gloo-here" is the same at the slower of the link and the throughput Gloo reached on this
machine's cores, which on a 2-core VM is below every link listed. A rank has C cores and batch B; its compute is B x (core-s per
sample) / C (linear in the cores: optimistic, so the share of the all-reduce is if anything
understated). The Reducer all-reduces buckets while the backward runs (about 2/3 of the compute):
"exposed" is what is left after that overlap.

    /usr/bin/python3 bench/scaling_calc.py [--gloo-gbs 1.12] [--latency-us 42] [--cores 16] [--batch 32]
"""
import argparse
import math

# bench/step_time.py (one thread, this machine; LibTorch 1.13's CPU kernels)
MODELS = {
    "resnet18 @32": {"params": 11181642, "core_s": 0.00463},  # as configs/resnet18_folder.yaml
    "resnet18 @224": {"params": 11689512, "core_s": 0.10321},
    "resnet50 @224": {"params": 25557032, "core_s": 0.25363},
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--gloo-gbs", type=float, default=1.12,
                   help="Gloo's bus bandwidth, GB/s (allreduce_bench, 25 MiB to 102 MB: 1.06-1.16)")
    p.add_argument("--latency-us", type=float, default=42.0,
                   help="one ring step's latency (allreduce_bench: one float 84 us = 2 steps)")
    p.add_argument("--cores", type=int, default=16)
    p.add_argument("--batch", type=int, default=32)
    a = p.parse_args()
    print(f"{'model':14} {'ranks':>5} {'link':>8} {'grad MB':>8} {'sent MB':>8} {'wire ms':>8} "
          f"{'compute ms':>10} {'share':>6} {'exposed':>8} {'Gloo-here ms':>12} {'share':>6}")
    for name, m in MODELS.items():
        grad = 4 * m["params"]
        buckets = 1 + math.ceil(max(grad - (1 << 20), 0) / (25 << 20))
        compute = a.batch * m["core_s"] / a.cores
        for n in (8, 16, 32, 64):
            sent = 2 * (n - 1) / n * grad
            latency = buckets * 2 * (n - 1) * a.latency_us * 1e-6
            gloo = sent / (a.gloo_gbs * 1e9) + latency
            for link in (10, 25, 100):
                wire = sent / (link / 8 * 1e9) + latency
                exposed = max(0.0, wire - 2 / 3 * compute)
                comm = max(wire, gloo)
                print(f"{name:14} {n:5d} {link:5d}Gb/s {grad / 1e6:8.1f} {sent / 1e6:8.1f} "
                      f"{wire * 1e3:8.1f} {compute * 1e3:10.1f} {wire / (wire + compute):6.0%} "
                      f"{exposed / (exposed + compute):8.0%} {comm * 1e3:12.1f} "
                      f"{comm / (comm + compute):6.0%}")

if __name__ == "__main__":
    main()
