#!/usr/bin/python3
"""The other measured half of docs/distributed.md's scaling calculation: each model's gradient
size (its parameters) and the compute a training step of it takes on this machine's CPU, one
thread, per sample (forward, backward, SGD step, as Shrink trains; LibTorch's kernels, run from
Python). Prints one JSON line per model.

    /usr/bin/python3 bench/step_time.py            # about a minute
"""
import json
import statistics
import time

import torch
import torchvision


def measure(name, model, shape, batch, steps):
    torch.manual_seed(0)
    x = torch.randn(batch, *shape)
    y = torch.randint(0, 1000 if shape[1] > 32 else 10, (batch,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        if i:  # the first warms up
            times.append(time.perf_counter() - start)
    params = sum(p.numel() for p in model.parameters())
    step = statistics.median(times)
    print(json.dumps({"model": name, "input": list(shape), "params": params,
                      "gradient_mb": round(4 * params / 1e6, 2), "batch": batch,
                      "step_s": round(step, 4), "core_s_per_sample": round(step / batch, 5)}))


def main():
    torch.set_num_threads(1)
    # resnet18 as the image-folder experiment trains it (10 classes, 32x32); resnet50 at ImageNet's
    # 224x224, the size data-parallel training usually runs it at.
    measure("resnet18", torchvision.models.resnet18(num_classes=10), (3, 32, 32), 32, 5)
    measure("resnet18", torchvision.models.resnet18(), (3, 224, 224), 4, 3)
    measure("resnet50", torchvision.models.resnet50(), (3, 224, 224), 4, 3)


if __name__ == "__main__":
    main()
