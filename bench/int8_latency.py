#!/usr/bin/python3
"""One torchvision architecture, three ways, timed side by side on one thread: the best fp32
(the scripted model as loaded, or torch.jit.freeze + optimize_for_inference, whichever is faster
at that batch size), Shrink's int8 export (model_int8.pt) and torch.ao's FX post-training int8 of
the same weights (prepare_fx with the onednn default qconfig mapping, calibration on as many
Fashion-MNIST samples as Shrink's, convert_fx, torch.jit.script, or trace where script fails,
then torch.jit.freeze). Prints one JSON line: each model's median ms per batch, which fp32 was
best, the speed-ups of both int8 models over it, and shrink_vs_torch_ao (torch.ao int8 ms /
Shrink int8 ms: above 1, Shrink's is faster). A torch.ao failure is reported as its one-line
error in torch_ao_error, and the other models are still timed; without --int8 only fp32 and
torch.ao run.

Usage: int8_latency.py --fp32 m.pt [--int8 model_int8.pt] --name resnet18 --size 32
                       [--batch 1,8] [--calibration 64] [--seconds 1.5]
"""
import argparse
import copy
import io
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "models"))
from eval_model import idx_file, read_idx, seeded_subset  # noqa: E402
import timing  # noqa: E402 -- bench/timing.py, beside this file

# bench/int8_architectures.sh's data.normalize: Fashion-MNIST's mean and std, on all 3 channels.
MEAN, STD = 0.286, 0.353


def images(folder, train, count, size, seed):
    """`count` Fashion-MNIST images as Shrink's data section makes them (resize: size, bilinear
    without antialiasing; channels: 3; normalize), from a seeded subset."""
    raw = read_idx(idx_file(folder, ("train" if train else "t10k") + "-images-idx3-ubyte"))
    pick = seeded_subset(len(raw), count, seed)
    x = torch.from_numpy(raw[pick.numpy()].copy()).float().div(255.0).unsqueeze(1)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    return (x.repeat(1, 3, 1, 1) - MEAN) / STD


def eager_model(name, scripted):
    """torchvision's `name` with the scripted model's weights: loading its state_dict does not
    depend on make_model.py's seed reaching the same random draws."""
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(num_classes=10)
    model.load_state_dict(scripted.state_dict())
    return model.eval()


def frozen(module):
    return torch.jit.optimize_for_inference(torch.jit.freeze(copy.deepcopy(module).eval()))


def torch_ao_int8(model, calibration, batch):
    """torch.ao FX post-training int8, scripted (traced where TorchScript rejects the converted
    graph) and frozen, as a user would ship it; and which of the two made it."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    prepared = prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping("onednn"), (calibration[:1],))
    with torch.no_grad():
        for b in range(0, len(calibration), batch):
            prepared(calibration[b: b + batch])
    converted = convert_fx(prepared).eval()
    try:
        scripted, how = torch.jit.script(converted), "script"
    except Exception:  # noqa: BLE001 -- any TorchScript failure: fall back to tracing
        scripted, how = torch.jit.trace(converted, calibration[:1]), "trace"
    return torch.jit.freeze(scripted.eval()), how


def fresh_int8(models):
    """The models, the int8 ones as fresh copies: LibTorch 1.13's oneDNN int8 convolution keeps
    the kernel of the first input shape it sees and rebuilds one on every call of another, so an
    int8 model timed at batch 1 after the check at batch 16 (or batch 8 after batch 1) would pay
    for that, which a deployment at one batch size does not. Both tools' models alike."""
    fresh = {}
    for k, m in models.items():
        if k.endswith("int8"):
            buffer = io.BytesIO()
            torch.jit.save(m, buffer)
            buffer.seek(0)
            m = torch.jit.load(buffer).eval()
        fresh[k] = m
    return fresh


def one_line(error):
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def sqnr_db(reference, output):
    noise = (reference - output).pow(2).sum().item()
    return math.inf if noise == 0 else 10 * math.log10(reference.pow(2).sum().item() / noise)


def timed(model, x):
    start = time.perf_counter()
    model(x)
    return (time.perf_counter() - start) * 1000


def latency(models, x, seconds, min_runs):
    """Warm and cold median ms of each model on x (bench/timing.py's protocol, Shrink's). Warm-up
    first (the first runs of a frozen or int8 model compile and pack weights); enough rounds for
    about `seconds` per model."""
    for m in models.values():
        for _ in range(3):
            timed(m, x)
    warm = sum(statistics.median(timed(m, x) for _ in range(3)) for m in models.values())
    rounds = max(min_runs, min(500, int(seconds * 1000 * len(models) / warm / timing.CALLS_PER_TURN)))
    both = timing.medians(models, x, rounds)
    return rounds, {k: v[0] for k, v in both.items()}, {k: v[1] for k, v in both.items()}


def row(batch, runs, ms, cold):
    """One batch size's figures: the best fp32, and each int8 model's speed-up over it (warm, and
    cold from the turns' first calls)."""
    fp32 = {k: v for k, v in ms.items() if k.startswith("fp32")}
    best = min(fp32, key=fp32.get)
    best_cold = min(v for k, v in cold.items() if k.startswith("fp32"))
    out = {"batch": batch, "runs": runs, "calls_per_run": timing.CALLS_PER_TURN,
           **{f"{k}_ms": v for k, v in ms.items()}, **{f"{k}_cold_ms": v for k, v in cold.items()},
           "best_fp32": "frozen" if best == "fp32_frozen" else "loaded", "best_fp32_ms": fp32[best]}
    for k in ("shrink_int8", "torch_ao_int8"):
        if k in ms:
            out[f"{k}_speedup"] = fp32[best] / ms[k]
            out[f"{k}_cold_speedup"] = best_cold / cold[k]
    if "shrink_int8" in ms and "torch_ao_int8" in ms:
        out["shrink_vs_torch_ao"] = ms["torch_ao_int8"] / ms["shrink_int8"]
    return out


def load_models(args, calibration, figures):
    """The models to time, by name; a model that cannot be made is left out, its error noted."""
    fp32 = torch.jit.load(args.fp32).eval()
    models = {"fp32": fp32}
    try:
        models["fp32_frozen"] = frozen(fp32)
    except Exception as e:  # noqa: BLE001 -- some graphs do not freeze; the loaded model still runs
        figures["fp32_frozen_error"] = one_line(e)
    if args.int8:
        models["shrink_int8"] = torch.jit.load(args.int8).eval()
    try:
        models["torch_ao_int8"], figures["torch_ao_torchscript"] = torch_ao_int8(
            eager_model(args.name, fp32), calibration, args.calibration_batch)
    except Exception as e:  # noqa: BLE001 -- torch.ao's own limits are a result, not a crash
        figures["torch_ao_error"] = one_line(e)
    return models


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fp32", required=True, help="the scripted fp32 model (make_model.py)")
    parser.add_argument("--int8", help="Shrink's model_int8.pt")
    parser.add_argument("--name", required=True, help="torchvision architecture, to rebuild for torch.ao")
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--size", type=int, default=32, help="input height and width")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--calibration", type=int, default=64, help="calibration samples (Shrink's: 4 x 16)")
    parser.add_argument("--calibration-batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=1.5, help="timing per model and batch size")
    parser.add_argument("--min-runs", type=int, default=5, help="rounds of 4 calls a model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.backends.quantized.engine = "onednn"  # Shrink's int8 kernels and torch.ao's qconfig
    # Denormals take a slow path on x86 and make timings swing with the weights; shrink bench
    # flushes them too.
    torch.set_flush_denormal(True)
    figures = {"name": args.name, "size": args.size, "threads": args.threads,
               "calibration_samples": args.calibration}
    with torch.no_grad():
        calibration = images(args.data, True, args.calibration, args.size, args.seed)
        models = load_models(args, calibration, figures)
        # A check that each model computes the same function: SQNR against fp32 on test images.
        check = images(args.data, False, 16, args.size, args.seed)
        reference = models["fp32"](check)
        for k in ("shrink_int8", "torch_ao_int8"):
            if k in models:
                figures[f"{k}_sqnr_db_vs_fp32"] = sqnr_db(reference, models[k](check))
        figures["results"] = []
        generator = torch.Generator().manual_seed(args.seed)
        for batch in (int(b) for b in args.batch.split(",")):
            x = torch.randn(batch, 3, args.size, args.size, generator=generator)
            runs, ms, cold = latency(fresh_int8(models), x, args.seconds, args.min_runs)
            figures["results"].append(row(batch, runs, ms, cold))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
