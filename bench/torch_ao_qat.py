#!/usr/bin/python3
"""The quick-start protocol with PyTorch's own tooling, for comparison with `shrink run`.

The seed's `Mnist` net on Fashion-MNIST: SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch 64,
N epochs fp32, then N epochs of quantization-aware training with torch.ao's FX graph mode
(prepare_qat_fx, the onednn default QAT qconfig), then convert_fx to real int8. Prints one JSON line.

Usage: torch_ao_qat.py [--epochs 5] [--qat-epochs 5] [--train-limit N] [--test-limit N] [--threads 2]
"""
import argparse
import copy
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "models"))
from eval_model import idx_file, read_idx  # noqa: E402
from make_model import Mnist  # noqa: E402

MEAN, STD = 0.2860, 0.3530


class MnistReshape(Mnist):
    """The seed's net with `view` as `reshape`: torch.ao's int8 convolutions return channels-last
    tensors, on which the seed's `view` fails. Numerically the same network."""

    def forward(self, x):
        x = self.relu1(self.batchnorm1(self.conv1(x)))
        x = self.max_pool1(x)
        x = self.relu2(self.conv2(x))
        x = self.max_pool2(x)
        x = x.reshape(-1, 4 * 4 * 50)
        x = self.relu3(self.fc1(x))
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


def load(folder, train, limit):
    prefix = "train" if train else "t10k"
    x = read_idx(idx_file(folder, f"{prefix}-images-idx3-ubyte"))
    y = read_idx(idx_file(folder, f"{prefix}-labels-idx1-ubyte"))
    if limit:
        x, y = x[:limit], y[:limit]
    x = (torch.from_numpy(x.copy()).float().div(255.0).unsqueeze(1) - MEAN) / STD
    return x, torch.from_numpy(y.astype("int64"))


def train(model, data, epochs, batch):
    x, y = data
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()
    seconds = 0.0
    for _ in range(epochs):
        order = torch.randperm(len(y))
        start = time.perf_counter()
        for b in range(0, len(y), batch):
            index = order[b: b + batch]
            optimizer.zero_grad()
            loss = F.nll_loss(model(x[index]), y[index])
            loss.backward()
            optimizer.step()
        seconds += time.perf_counter() - start
    return seconds / max(epochs, 1)


def accuracy(model, data):
    x, y = data
    model.eval()
    correct = 0
    with torch.no_grad():
        for b in range(0, len(y), 1000):
            correct += int((model(x[b: b + 1000]).argmax(1) == y[b: b + 1000]).sum())
    return correct / len(y)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--qat-epochs", type=int, default=5)
    parser.add_argument("--train-limit", type=int, default=0)
    parser.add_argument("--test-limit", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from torch.ao.quantization import get_default_qat_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_qat_fx

    torch.set_num_threads(args.threads)
    torch.backends.quantized.engine = "onednn"
    torch.manual_seed(args.seed)
    train_data = load(args.data, True, args.train_limit)
    test_data = load(args.data, False, args.test_limit)

    model = MnistReshape()
    fp32_epoch = train(model, train_data, args.epochs, 64)
    fp32_acc = accuracy(model, test_data)

    qat = prepare_qat_fx(copy.deepcopy(model).train(), get_default_qat_qconfig_mapping("onednn"),
                         (train_data[0][:1],))
    qat_epoch = train(qat, train_data, args.qat_epochs, 64)
    qat_acc = accuracy(qat, test_data)
    int8 = convert_fx(copy.deepcopy(qat).eval())
    int8_acc = accuracy(int8, test_data)
    print(json.dumps({"fp32_accuracy": fp32_acc, "qat_accuracy": qat_acc, "int8_accuracy": int8_acc,
                      "fp32_seconds_per_epoch": fp32_epoch, "qat_seconds_per_epoch": qat_epoch,
                      "ratio": qat_epoch / fp32_epoch,
                      "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
