#!/usr/bin/python3
"""Post-training int8 quantization of the quick-start net with PyTorch's own tooling, for
comparison with `shrink run configs/ptq_quickstart.yaml` and `shrink bench`.

The seed's `Mnist` net (with `view` as `reshape`, which torch.ao's channels-last int8 needs),
trained N epochs in fp32 as the quick start does, then torch.ao FX graph mode post-training
quantization (prepare_fx with the onednn default qconfig, calibration on the same number of
training samples as Shrink's, convert_fx). Latency: median of the scripted fp32 and int8 models,
side by side, one thread. Prints one JSON line.

Usage: torch_ao_ptq.py [--epochs 5] [--calibration-batches 10] [--calibration-batch 10]
"""
import argparse
import copy
import json
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import timing  # noqa: E402 -- bench/timing.py
from torch_ao_qat import MnistReshape, accuracy, load, train  # noqa: E402


def latency(models, batch, rounds):
    """Warm and cold median ms of each model (bench/timing.py's protocol, Shrink's)."""
    x = torch.randn(batch, 1, 28, 28)
    with torch.no_grad():
        for m in models:
            for _ in range(5):
                m(x)
        both = timing.medians(dict(enumerate(models)), x, rounds)
    return [both[k] for k in range(len(models))]


def size_of(module):
    with tempfile.NamedTemporaryFile(suffix=".pt") as f:
        torch.jit.save(module, f.name)
        return os.path.getsize(f.name)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--calibration-batches", type=int, default=10)
    parser.add_argument("--calibration-batch", type=int, default=10)
    parser.add_argument("--train-limit", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.set_num_threads(args.threads)
    torch.backends.quantized.engine = "onednn"
    torch.manual_seed(args.seed)
    train_data = load(args.data, True, args.train_limit)
    test_data = load(args.data, False, 0)
    model = MnistReshape()
    train(model, train_data, args.epochs, 64)
    model.eval()
    fp32_acc = accuracy(model, test_data)

    start = time.perf_counter()
    prepared = prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping("onednn"), (train_data[0][:1],))
    order = torch.randperm(len(train_data[1]))
    with torch.no_grad():
        for b in range(args.calibration_batches):
            prepared(train_data[0][order[b * args.calibration_batch: (b + 1) * args.calibration_batch]])
    int8 = convert_fx(prepared)
    calibration_seconds = time.perf_counter() - start
    int8_acc = accuracy(int8, test_data)

    torch.set_num_threads(1)
    fp32_script = torch.jit.script(model).eval()
    int8_script = torch.jit.script(int8).eval()
    figures = {"fp32_accuracy": fp32_acc, "int8_accuracy": int8_acc,
               "calibration_samples": args.calibration_batches * args.calibration_batch,
               "calibration_seconds": calibration_seconds,
               "size_ratio": size_of(int8_script) / size_of(fp32_script)}
    # Against the best fp32 a user could run (as loaded, or frozen + optimize_for_inference), as
    # shrink bench measures Shrink's; the int8 model a fresh copy per batch size (LibTorch's oneDNN
    # int8 convolution keeps the kernel of the first input shape it sees), as shrink bench's is.
    fp32_frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(model).eval()))
    for batch in (1, 64):
        fresh = torch.jit.script(int8).eval()
        (fp32_ms, fp32_cold), (frozen_ms, frozen_cold), (int8_ms, int8_cold) = latency(
            [fp32_script, fp32_frozen, fresh], batch, 100 if batch == 1 else 25)
        best = min(fp32_ms, frozen_ms)
        figures[f"batch{batch}"] = {"fp32_ms": fp32_ms, "fp32_frozen_ms": frozen_ms, "best_fp32_ms": best,
                                    "int8_ms": int8_ms, "speedup": best / int8_ms,
                                    "speedup_vs_loaded": fp32_ms / int8_ms,
                                    "cold_speedup": min(fp32_cold, frozen_cold) / int8_cold}
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
