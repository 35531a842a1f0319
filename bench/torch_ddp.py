#!/usr/bin/python3
"""PyTorch's own data-parallel training (DistributedDataParallel, Gloo, CPU), for comparison with
`shrink run --nproc N`: the training throughput of a TorchScript model at 1 or N processes.

The protocol is Shrink's pretraining loop (framework/src/run/training.cpp): SGD (lr 0.01, momentum
0.9, weight decay 5e-4), cross-entropy on the model's output (the quick-start net's log_softmax, as
Shrink's cross_entropy_loss), a per-rank batch of B (as DDP's and Shrink's data.batch_size), each
epoch's order from DistributedSampler(shuffle, seed) padded to equal shares, loss and accuracy
summed per step and all-reduced at the epoch's end, one intra-op thread per process, one OpenBLAS
thread, flush-denormal on, and the TorchScript graph executor without its profiling optimizations
(Shrink turns them off for training: they made a step several times slower; --jit-optimize keeps
them, --eager trains make_model.py's eager nn.Module instead of the file).

  * 1 process: the plain model, no process group and no DDP (what a user runs on one process);
    --ddp-at-1 wraps it in DDP over a process group of one instead.
  * N > 1 processes: N spawned ranks (torch.multiprocessing, MASTER_ADDR 127.0.0.1 and a free port),
    init_process_group("gloo"), the model wrapped in DDP (broadcast_buffers as DDP's default; with
    --no-broadcast-buffers BatchNorm's buffers stay each rank's own, as Shrink keeps them between
    epoch ends).

Data: an IDX folder (Fashion-MNIST) read into memory and normalized once (mean 0.2860, std 0.3530);
each batch is gathered from those tensors by the sampler's indices (no DataLoader, no per-sample
collate). Or, with --folder, torchvision's ImageFolder (RGB PNG/JPEG) through a DataLoader with
--workers workers and RandomCrop(size, padding) + RandomHorizontalFlip + Normalize (configs/
resnet18_folder.yaml's transforms). --train-limit N trains on a seeded random N of the training set.

An epoch's time is measured on rank 0 between a barrier at its start and one at its end; its images
are all ranks' (padding included, as Shrink counts them). Prints one JSON line: images/s per epoch
and the median over the measured epochs (the first is warm-up when more than one is run).

Usage: torch_ddp.py [--model build/models/mnist.pt | --eager mnist] [--nproc 1] [--epochs 3]
                    [--train-limit N] [--batch-size 32] [--threads 1] [--seed 0]
                    [--data /usr/share/datasets/fashion-mnist | --folder DIR [--workers 0]]
                    [--lr 0.01] [--ddp-at-1] [--no-broadcast-buffers] [--jit-optimize]
"""
import argparse
import datetime
import json
import os
import socket
import statistics
import sys
import time

# Before torch is imported (and inherited by the spawned ranks): one OpenBLAS thread, as Shrink.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402
from torch.utils.data import DataLoader, DistributedSampler, Subset, TensorDataset  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools", "models"))
from eval_model import idx_file, read_idx, seeded_subset  # noqa: E402


def subset_indices(count, limit, seed):
    """A seeded random `limit` of `count` (all of them without a limit), sorted."""
    if not limit or limit >= count:
        return None
    return seeded_subset(count, limit, seed)


def idx_dataset(args):
    x = read_idx(idx_file(args.data, "train-images-idx3-ubyte"))
    y = read_idx(idx_file(args.data, "train-labels-idx1-ubyte"))
    chosen = subset_indices(len(y), args.train_limit, args.seed)
    x = torch.from_numpy(x.copy())
    y = torch.from_numpy(y.astype("int64"))
    if chosen is not None:
        x, y = x[chosen], y[chosen]
    x = (x.float().div(255.0).unsqueeze(1) - args.mean) / args.std
    return TensorDataset(x, y)


def folder_dataset(args):
    import torchvision
    from torchvision import transforms

    t = transforms.Compose([
        transforms.RandomCrop(args.crop, padding=args.padding),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize([args.mean] * 3, [args.std] * 3),
    ])
    data = torchvision.datasets.ImageFolder(args.folder, transform=t)
    chosen = subset_indices(len(data), args.train_limit, args.seed)
    return data if chosen is None else Subset(data, chosen.tolist())


def idx_batches(data, sampler, batch):
    """The sampler's order in batches, gathered from the in-memory tensors."""
    x, y = data.tensors
    order = torch.tensor(list(sampler), dtype=torch.long)
    for b in range(0, len(order), batch):
        index = order[b: b + batch]
        yield x[index], y[index]


def load_model(args):
    if args.eager:
        from make_model import build

        torch.manual_seed(0)
        return build(args.eager)[0]
    return torch.jit.load(args.model)


def worker(rank, args, queue):
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    if not args.jit_optimize:
        torch._C._set_graph_executor_optimize(False)
    distributed = args.nproc > 1 or args.ddp_at_1
    world = args.nproc
    if distributed:
        dist.init_process_group("gloo", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=args.timeout))
    torch.manual_seed(args.seed)
    data = folder_dataset(args) if args.folder else idx_dataset(args)
    sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)
    loader = None
    if args.folder:
        loader = DataLoader(data, batch_size=args.batch_size, sampler=sampler,
                            num_workers=args.workers, persistent_workers=args.workers > 0)
    model = load_model(args)
    model.train()
    net = DistributedDataParallel(model, broadcast_buffers=args.broadcast_buffers) if distributed else model
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                                weight_decay=args.weight_decay)
    epochs = []
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        batches = loader if loader is not None else idx_batches(data, sampler, args.batch_size)
        if distributed:
            dist.barrier()
        start = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        for x, y in batches:
            optimizer.zero_grad()
            out = net(x)
            loss = F.cross_entropy(out, y)
            loss_value = loss.item()
            loss.backward()
            optimizer.step()
            loss_sum += loss_value * len(y)
            correct += int(out.argmax(1).eq(y).sum())
            seen += len(y)
        totals = torch.tensor([loss_sum, correct, seen], dtype=torch.float64)
        if distributed:
            dist.all_reduce(totals)
            dist.barrier()
        seconds = time.perf_counter() - start
        images = int(totals[2])
        epochs.append({"epoch": epoch + 1, "images": images, "seconds": seconds,
                       "images_per_s": images / seconds, "loss": float(totals[0]) / max(images, 1),
                       "accuracy": float(totals[1]) / max(images, 1)})
    if distributed:
        dist.destroy_process_group()
    if rank == 0:
        result = summary(args, epochs, distributed)
        if queue is None:
            return result
        queue.put(result)
    return None


def summary(args, epochs, distributed):
    measured = epochs[1:] if len(epochs) > 1 else epochs
    return {
        "tool": "torch", "nproc": args.nproc, "ddp": distributed,
        "model": f"eager:{args.eager}" if args.eager else args.model,
        "data": args.folder or args.data, "images_per_epoch": epochs[0]["images"],
        "batch_size": args.batch_size, "threads": args.threads, "workers": args.workers if args.folder else 0,
        "jit_optimize": args.jit_optimize, "broadcast_buffers": args.broadcast_buffers,
        "epochs": epochs,
        "images_per_s": [e["images_per_s"] for e in epochs],
        "median_images_per_s": statistics.median(e["images_per_s"] for e in measured),
        "torch": torch.__version__,
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
    }


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=os.path.normpath(os.path.join(HERE, "..", "build", "models", "mnist.pt")))
    p.add_argument("--eager", metavar="NAME", help="train make_model.py's eager NAME instead of --model")
    p.add_argument("--nproc", type=int, default=1)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-limit", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--folder", help="an image folder (class subfolders) instead of --data's IDX files")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers per rank, with --folder")
    p.add_argument("--crop", type=int, default=32, help="RandomCrop size, with --folder")
    p.add_argument("--padding", type=int, default=2, help="RandomCrop padding, with --folder")
    p.add_argument("--mean", type=float, default=0.2860)
    p.add_argument("--std", type=float, default=0.3530)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--ddp-at-1", action="store_true", help="DDP over a process group of one at --nproc 1")
    p.add_argument("--no-broadcast-buffers", dest="broadcast_buffers", action="store_false")
    p.add_argument("--jit-optimize", action="store_true",
                   help="keep the TorchScript profiling executor's optimizations on")
    p.add_argument("--timeout", type=int, default=300, help="the process group's timeout, seconds")
    args = p.parse_args()
    if args.nproc < 1 or args.epochs < 1:
        p.error("--nproc and --epochs: at least 1")
    if args.nproc == 1 and not args.ddp_at_1:
        result = worker(0, args, None)
    else:
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(free_port())
        queue = mp.get_context("spawn").SimpleQueue()
        mp.spawn(worker, args=(args, queue), nprocs=args.nproc, join=True)
        result = queue.get()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
