#!/usr/bin/python3
"""Scores a TorchScript classifier on an IDX dataset's test split with plain PyTorch (no Shrink).

Usage: eval_model.py MODEL.pt [--data /usr/share/datasets/fashion-mnist] [--mean 0.2860 --std 0.3530]
                     [--limit N | --like REPORT.json] [--batch-size 1000]
       eval_model.py MODEL.pt --tensors FILE.pt ...   # a torch.save((inputs, targets)) file

--limit N takes the first N test samples; --like REPORT.json the ones a `shrink run` evaluated on
(its data.test_limit picks a seeded random subset: torch.randperm(count, generator seeded with the
report's data.test.subset_seed), its first `samples`, sorted).

Prints one JSON line: {"accuracy": ..., "samples": ..., "ops": [...]} where "ops" lists the
quantization-related ATen ops in the model's forward graph (fake_quantize_*, quantize_*).
Shrink's exported model_qat.pt and model_int8.pt must load and score here as they did in
`shrink run` (int8 models run on the oneDNN quantized engine, which this selects).
"""
import argparse
import gzip
import json
import os
import sys

import numpy as np
import torch


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def idx_file(folder, name):
    for suffix in (".gz", ""):
        path = os.path.join(folder, name + suffix)
        if os.path.exists(path):
            return path
    raise SystemExit(f"eval_model.py: {folder}: no {name}[.gz]")


def seeded_subset(count, samples, seed):
    """The first `samples` of torch.randperm(count) drawn from a generator seeded with `seed`,
    sorted: Shrink's data.train_limit / test_limit subset, given report.json's subset_seed."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(count, generator=generator)[:samples].sort().values


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--tensors", help="evaluate on a torch.save((inputs, targets)) file instead")
    parser.add_argument("--mean", type=float, default=0.2860)
    parser.add_argument("--std", type=float, default=0.3530)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--like", help="the test samples of this report.json's run")
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()

    if args.tensors:
        images, labels = torch.load(args.tensors)
        images = images.float().div(255.0) if images.dtype == torch.uint8 else images.float()
        labels = labels.long()
    else:
        images = torch.from_numpy(read_idx(idx_file(args.data, "t10k-images-idx3-ubyte")).copy()).float().div(255.0)
        labels = torch.from_numpy(read_idx(idx_file(args.data, "t10k-labels-idx1-ubyte")).astype(np.int64))
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    if args.like:
        test = json.load(open(args.like))["data"]["test"]
        if test["subset_seed"] is not None:
            chosen = seeded_subset(test["of"], test["samples"], test["subset_seed"])
            images, labels = images[chosen], labels[chosen]
    x = ((images.unsqueeze(1) if images.dim() == 3 else images) - args.mean) / args.std
    y = labels

    torch.backends.quantized.engine = "onednn"
    model = torch.jit.load(args.model)
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(y), args.batch_size):
            out = model(x[start: start + args.batch_size])
            correct += int((out.argmax(1) == y[start: start + args.batch_size]).sum())
    def nodes(block):  # with those of sub-blocks (the branches of an if)
        for n in block.nodes():
            yield n
            for b in n.blocks():
                yield from nodes(b)

    ops = sorted({n.kind() for n in nodes(model.graph) if "quant" in n.kind()})
    print(json.dumps({"accuracy": correct / len(y), "samples": len(y), "ops": ops}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
