#!/usr/bin/python3
"""PyTorch's DataLoader over torchvision's ImageFolder with the transforms bench/loader_bench.cpp
applies (RandomResizedCrop + RandomHorizontalFlip + ToTensor + Normalize), same batch, same
workers: images/s over N images after 10 warm-up batches, and the main process's peak resident
memory (its workers' come on top).

  torch_loader.py FOLDER [--workers 2] [--batch 64] [--images 20000] [--size 56]
"""
import argparse
import json
import resource
import time

import torch
import torchvision
from torchvision import transforms


def main():
    p = argparse.ArgumentParser()
    p.add_argument("folder")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--images", type=int, default=20000)
    p.add_argument("--size", type=int, default=56)
    a = p.parse_args()
    torch.set_num_threads(1)
    t = transforms.Compose([
        transforms.RandomResizedCrop(a.size),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize([0.286] * 3, [0.353] * 3),
    ])
    start = time.perf_counter()
    data = torchvision.datasets.ImageFolder(a.folder, transform=t)
    open_seconds = time.perf_counter() - start
    loader = torch.utils.data.DataLoader(data, batch_size=a.batch, shuffle=True,
                                         num_workers=a.workers, persistent_workers=False)
    it = iter(loader)
    for _ in range(10):
        next(it)
    seen, checksum = 0, 0.0
    start = time.perf_counter()
    while seen < a.images:
        x, y = next(it)
        seen += len(y)
        checksum += float(x[0, 0, 0, 0])
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the main process
    print(json.dumps({"loader": "torch", "workers": a.workers, "samples": len(data),
                      "images": seen, "images_per_s": seen / seconds,
                      "open_seconds": open_seconds, "max_rss_mb": rss}))


if __name__ == "__main__":
    main()
