#!/usr/bin/python3
"""Scripts a model to TorchScript with python3-torch, for the quick start and the tests.

Usage: make_model.py NAME OUT.pt [--trace] [--bn-stats SIZE]

NAME is one of:
  mnist         the seed's `Mnist` network (NNI quantization quick start), input 1x28x28
  mnist_hardtanh  the same network with Hardtanh activations (same module names relu1..relu3),
                for binarized (BNN) experiments, whose activations live in [-1, 1]
  resnet_small  a small ResNet for 1x28x28 inputs whose blocks share one TorchScript class type
  resnet_2stage a small ResNet of two stages (16 channels at 14x14, 32 at 7x7), input 1x28x28
  zoo_small     real architectures' patterns in one small net (SiLU, squeeze-excitation,
                hardsigmoid, a densenet block, a shufflenet unit, mean pooling), input 3x32x32
  own_cifar     a CIFAR-style model written the way users write one: functional F.relu,
                residual blocks F.relu(x + self.block(x)), a depthwise-separable pair,
                F.adaptive_avg_pool2d, dropout; input 3x32x32 (--trace: torch.jit.trace, in
                eval mode, as users trace)
  resnet18      torchvision's resnet18 (random weights), input 3x32x32 and up
  mobilenet_v2, mobilenet_v3_small, mobilenet_v3_large, shufflenet_v2_x0_5, shufflenet_v2_x1_0,
  squeezenet1_1, efficientnet_b0, densenet121, regnet_x_400mf, resnext50_32x4d
                torchvision's (random weights, 10 classes), input 3x32x32 and up

Weights are random with a fixed seed; training happens in Shrink. Run with Debian's /usr/bin/python3
(python3-torch), not a virtual environment without torch.
"""
import argparse
import os
import sys
import tempfile

from typing import List

import torch
import torch.nn.functional as F


class Mnist(torch.nn.Module):
    """Verbatim from the seed (NNI's quantization quick start)."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 20, 5, 1)
        self.conv2 = torch.nn.Conv2d(20, 50, 5, 1)
        self.fc1 = torch.nn.Linear(4 * 4 * 50, 500)
        self.fc2 = torch.nn.Linear(500, 10)
        self.relu1 = torch.nn.ReLU6()
        self.relu2 = torch.nn.ReLU6()
        self.relu3 = torch.nn.ReLU6()
        self.max_pool1 = torch.nn.MaxPool2d(2, 2)
        self.max_pool2 = torch.nn.MaxPool2d(2, 2)
        self.batchnorm1 = torch.nn.BatchNorm2d(20)

    def forward(self, x):
        x = self.relu1(self.batchnorm1(self.conv1(x)))
        x = self.max_pool1(x)
        x = self.relu2(self.conv2(x))
        x = self.max_pool2(x)
        x = x.view(-1, 4 * 4 * 50)
        x = self.relu3(self.fc1(x))
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


class MnistHardtanh(Mnist):
    """The seed's `Mnist` with its three activations Hardtanh: a BNN binarizes them to +1/-1,
    which a ReLU6's [0, 6] cannot carry. The names stay relu1..relu3, so config_lists are shared."""

    def __init__(self):
        super().__init__()
        self.relu1 = torch.nn.Hardtanh()
        self.relu2 = torch.nn.Hardtanh()
        self.relu3 = torch.nn.Hardtanh()


class BasicBlock(torch.nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(channels)
        self.conv2 = torch.nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(channels)

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + x
        return torch.relu(out)


class ResNetSmall(torch.nn.Module):
    """Two blocks of one class: TorchScript gives them one class type."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(1, 8, 3, 1, 1)
        self.layer1 = torch.nn.Sequential(BasicBlock(8), BasicBlock(8))
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = self.layer1(x)
        x = self.pool(x).flatten(1)
        return self.fc(x)


class DownBlock(torch.nn.Module):
    """A BasicBlock that halves the resolution and widens: stride 2, a 1x1 convolution (and its
    BatchNorm) on the shortcut."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, 2, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(cout)
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(cout)
        self.downsample = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, 2, bias=False), torch.nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.downsample(x))


class ResNet2Stage(torch.nn.Module):
    """A small ResNet of two stages: a stride-2 stem to 16 channels at 14x14, a block, then a
    downsampling block to 32 channels at 7x7 (about as many multiply-accumulates as resnet_small,
    ten times its parameters)."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(1, 16, 3, 2, 1, bias=False)
        self.bn = torch.nn.BatchNorm2d(16)
        self.layer1 = BasicBlock(16)
        self.layer2 = DownBlock(16, 32)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        x = self.layer2(self.layer1(x))
        x = self.pool(x).flatten(1)
        return self.fc(x)


class Residual(torch.nn.Module):
    """`F.relu(x + self.block(x))`, the way people write a residual block by hand."""

    def __init__(self, channels):
        super().__init__()
        self.block = torch.nn.Sequential(
            torch.nn.Conv2d(channels, channels, 3, 1, 1, bias=False), torch.nn.BatchNorm2d(channels), torch.nn.ReLU(),
            torch.nn.Conv2d(channels, channels, 3, 1, 1, bias=False), torch.nn.BatchNorm2d(channels))

    def forward(self, x):
        return F.relu(x + self.block(x))


class OwnCifar(torch.nn.Module):
    """A CIFAR-style model as a user writes it, functional calls and all: stem convolution,
    BatchNorm and F.relu, two residual blocks, a depthwise-separable pair,
    F.adaptive_avg_pool2d, dropout and a linear head. Input 3x32x32."""

    def __init__(self):
        super().__init__()
        self.stem_conv = torch.nn.Conv2d(3, 32, 3, 1, 1, bias=False)
        self.stem_bn = torch.nn.BatchNorm2d(32)
        self.res1 = Residual(32)
        self.res2 = Residual(32)
        self.dw = torch.nn.Conv2d(32, 32, 3, 2, 1, groups=32, bias=False)
        self.dw_bn = torch.nn.BatchNorm2d(32)
        self.pw = torch.nn.Conv2d(32, 64, 1, bias=False)
        self.pw_bn = torch.nn.BatchNorm2d(64)
        self.drop = torch.nn.Dropout(0.2)
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.stem_bn(self.stem_conv(x)))
        x = self.res2(self.res1(x))
        x = F.relu(self.dw_bn(self.dw(x)))
        x = F.relu(self.pw_bn(self.pw(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(self.drop(x))


class SqueezeExcitation(torch.nn.Module):
    """efficientnet's: a per-channel scale from the pooled input, sigmoid-gated."""

    def __init__(self, channels, squeezed):
        super().__init__()
        self.fc1 = torch.nn.Conv2d(channels, squeezed, 1)
        self.fc2 = torch.nn.Conv2d(squeezed, channels, 1)
        self.activation = torch.nn.SiLU()
        self.scale_activation = torch.nn.Sigmoid()

    def forward(self, x):
        scale = F.adaptive_avg_pool2d(x, 1)
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(scale))))
        return scale * x


class DenseLayer(torch.nn.Module):
    """densenet's pre-activation layer: BatchNorm and ReLU on the concatenated features."""

    def __init__(self, channels, growth):
        super().__init__()
        self.norm = torch.nn.BatchNorm2d(channels)
        self.relu = torch.nn.ReLU(inplace=True)
        self.conv = torch.nn.Conv2d(channels, growth, 3, 1, 1, bias=False)

    def forward(self, features: List[torch.Tensor]):
        return self.conv(self.relu(self.norm(torch.cat(features, 1))))


class ZooSmall(torch.nn.Module):
    """The patterns of real architectures in one small net, input 3x32x32: a SiLU stem and
    squeeze-excitation with a hardsigmoid variant (efficientnet, mobilenet_v3), a dense block whose
    feature list grows by append (densenet), a shuffle unit with chunk and channel shuffle
    (shufflenet), a residual add, mean pooling and a linear head."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 16, 3, 2, 1, bias=False)
        self.stem_bn = torch.nn.BatchNorm2d(16)
        self.stem_act = torch.nn.SiLU(inplace=True)
        self.se = SqueezeExcitation(16, 4)
        self.dense1 = DenseLayer(16, 8)
        self.dense2 = DenseLayer(24, 8)
        self.branch = torch.nn.Sequential(
            torch.nn.Conv2d(16, 16, 1, bias=False), torch.nn.BatchNorm2d(16), torch.nn.ReLU(inplace=True),
            torch.nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False), torch.nn.BatchNorm2d(16))
        self.expand = torch.nn.Conv2d(32, 64, 1, bias=False)
        self.expand_bn = torch.nn.BatchNorm2d(64)
        self.gate = torch.nn.Hardsigmoid()
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        x = self.se(self.stem_act(self.stem_bn(self.stem(x))))
        features = [x]
        features.append(self.dense1(features))
        features.append(self.dense2(features))
        x = torch.cat(features, 1)
        x1, x2 = x.chunk(2, dim=1)
        x = torch.cat([x1, F.relu(x2 + self.branch(x2))], 1)
        n, c, h, w = x.size()
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, -1, h, w)
        x = F.relu(self.expand_bn(self.expand(x)))
        x = x * self.gate(x)
        return self.fc(x.mean([2, 3]))


def build(name):
    if name == "mnist":
        return Mnist(), torch.randn(2, 1, 28, 28)
    if name == "mnist_hardtanh":
        return MnistHardtanh(), torch.randn(2, 1, 28, 28)
    if name == "resnet_small":
        return ResNetSmall(), torch.randn(2, 1, 28, 28)
    if name == "resnet_2stage":
        return ResNet2Stage(), torch.randn(2, 1, 28, 28)
    if name == "own_cifar":
        return OwnCifar(), torch.randn(2, 3, 32, 32)
    if name == "zoo_small":
        return ZooSmall(), torch.randn(2, 3, 32, 32)
    if name in TORCHVISION:
        import torchvision

        return getattr(torchvision.models, name)(num_classes=10), torch.randn(2, 3, 32, 32)
    raise SystemExit(f"make_model.py: unknown model '{name}' (known: mnist, mnist_hardtanh, resnet_small, resnet_2stage, own_cifar, zoo_small, "
                     + ", ".join(TORCHVISION) + ")")


TORCHVISION = ("resnet18", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "shufflenet_v2_x0_5",
               "shufflenet_v2_x1_0", "squeezenet1_1", "efficientnet_b0", "densenet121", "regnet_x_400mf",
               "resnext50_32x4d")


def set_batch_norm_statistics(model, example, size):
    """Random weights with BatchNorm's initial statistics (mean 0, var 1) leave deep nets'
    activations vanishing (efficientnet_b0's logits are ~1e-14), which makes any quantization
    error figure meaningless. Cumulative statistics over noise batches normalise them, as
    training would."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average
    model.train()
    with torch.no_grad():
        for _ in range(8):
            model(torch.randn(8, example.shape[1], size, size))
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("out")
    parser.add_argument("--trace", action="store_true", help="torch.jit.trace instead of script")
    parser.add_argument("--bn-stats", type=int, metavar="SIZE",
                        help="set BatchNorm running statistics from 8 batches of SIZExSIZE noise, so "
                             "that a random deep net's activations neither vanish nor explode at "
                             "that input size (benchmarks)")
    args = parser.parse_args()
    torch.manual_seed(0)
    model, example = build(args.name)
    if args.bn_stats:
        set_batch_norm_statistics(model, example, args.bn_stats)
    model.eval()
    scripted = torch.jit.trace(model, example) if args.trace else torch.jit.script(model)
    # Written next to the target and renamed, so a half-written file never looks valid.
    folder = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".pt.tmp")
    os.close(fd)
    try:
        scripted.save(tmp)
        os.replace(tmp, args.out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
