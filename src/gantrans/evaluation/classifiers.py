"""The classifier two-sample test (C2ST): can a fresh small CNN tell real from translated images?"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from gantrans.evaluation.metrics import binomial_p_greater, binomial_stderr

log = logging.getLogger("gantrans")

MIN_STEPS = 300  # small sets get more epochs: at least this many optimizer steps ...
MAX_EPOCHS = 100  # ... but at most this many passes for tiny sets
MAX_INPUT = 64  # larger images are scaled down to this side first: training stays quick


class SmallConvNet(nn.Module):
    """Four stride-2 convolutions, global average pooling and a linear layer to two logits.

    Args:
        channels: Input channels (1 or 3).
        width: Channels of the first convolution (doubled by each of the next ones).
        input_size: Side the input is resized to (bilinear, antialiased) when it differs.
    """

    def __init__(self, channels: int, width: int = 16, input_size: int = MAX_INPUT) -> None:
        super().__init__()
        self.arch = {"channels": channels, "width": width, "input_size": input_size}
        self.input_size = input_size
        layers: list[nn.Module] = []
        c_in = channels
        for i in range(4):
            c_out = width * 2**i
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.num_features = c_in  # width * 8
        self.head = nn.Linear(c_in, 2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features: (N, C, H, W) in [-1, 1] -> (N, width * 8)."""
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(
                x, size=(self.input_size, self.input_size), mode="bilinear", antialias=True
            )
        return self.body(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, 2) of (N, C, H, W) images in [-1, 1]."""
        return self.head(self.features(x))


def input_size_for(side: int) -> int:
    """The classifiers' working side for images of `side` pixels (at most MAX_INPUT)."""
    return min(side, MAX_INPUT)


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    seed: int,
    device: torch.device,
    batch_size: int = 32,
    lr: float = 5e-3,
    flip: bool = False,
    progress: bool = False,
    desc: str = "classifier",
) -> SmallConvNet:
    """Train a fresh SmallConvNet with Adam and cross-entropy, deterministically from `seed`.

    Args:
        images: (N, C, H, W) in [-1, 1] on the CPU.
        labels: (N,) int64 class indices (0 or 1).
        epochs: Passes over the data (small sets get up to MAX_EPOCHS, to make MIN_STEPS steps).
        seed: Seeds the initial weights, the shuffling and the flips.
        device: Where to train.
        flip: Random horizontal flips (augmentation).

    Returns:
        The network in eval mode.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SmallConvNet(images.shape[1], input_size=input_size_for(max(images.shape[-2:])))
    net = net.to(device).train()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.5, 0.999))
    per_epoch = -(-len(images) // batch_size)
    # small sets: enough steps to learn (tiny ones: at most MAX_EPOCHS passes)
    epochs = max(epochs, min(-(-MIN_STEPS // per_epoch), MAX_EPOCHS))
    steps = epochs * per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1))
    bar = tqdm(total=steps, desc=desc, disable=not progress, unit="step", leave=False)
    with torch.enable_grad():  # also when called under no_grad (inside a training loop)
        for _ in range(epochs):
            order = torch.randperm(len(images), generator=gen)
            for i in range(0, len(images), batch_size):
                idx = order[i : i + batch_size]
                if len(idx) < 2:  # batch norm needs two samples
                    continue
                x, y = images[idx], labels[idx]
                if flip:
                    mask = torch.rand(len(x), generator=gen) < 0.5
                    x = torch.where(mask[:, None, None, None], x.flip(-1), x)
                loss = F.cross_entropy(net(x.to(device)), y.to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    return net.eval()


@torch.no_grad()
def predict(
    net: SmallConvNet, images: torch.Tensor, device: torch.device, batch_size: int = 256
) -> torch.Tensor:
    """Predicted classes (N,) int64 of (N, C, H, W) images in [-1, 1]."""
    was_training = net.training
    net.eval()
    out = [
        net(images[i : i + batch_size].to(device)).argmax(1).cpu()
        for i in range(0, len(images), batch_size)
    ]
    net.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def accuracy(
    net: SmallConvNet, images: torch.Tensor, labels: torch.Tensor, device: torch.device
) -> float:
    """Share of (N, C, H, W) images whose predicted class equals `labels` (N,)."""
    return (predict(net, images, device) == labels).float().mean().item()


def two_sample_test(
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    seed: int,
    epochs: int,
    device: torch.device,
    progress: bool = False,
    desc: str = "C2ST",
) -> dict[str, float]:
    """Classifier two-sample test (Lopez-Paz & Oquab 2017): can a fresh CNN tell real from fake?

    Each set is shuffled (seeded) and the larger one cut to the smaller one's size, so both
    classes are equally many and guessing scores 0.5 (927 translations against 344 real faces
    would otherwise let "always fake" score 0.73). The two are split in halves: a new
    SmallConvNet learns real (0) versus fake (1) on the first halves and is scored on the second
    halves. Held-out accuracy near 0.5 means the sets are indistinguishable to it.

    Args:
        real, fake: (N, C, H, W) and (M, C, H, W) in [-1, 1], at least 2 images each.

    Returns:
        acc, stderr (binomial), p_value (one-sided exact binomial test of acc > 0.5),
        n_train and n_test (each half real, half fake).
    """
    gen = torch.Generator().manual_seed(seed)
    n = min(len(real), len(fake))
    real = real[torch.randperm(len(real), generator=gen)[:n]]
    fake = fake[torch.randperm(len(fake), generator=gen)[:n]]
    half = n // 2
    x_train = torch.cat([real[:half], fake[:half]])
    y_train = torch.cat([torch.zeros(half), torch.ones(half)]).long()
    x_test = torch.cat([real[half:], fake[half:]])
    y_test = torch.cat([torch.zeros(n - half), torch.ones(n - half)]).long()
    net = train_classifier(
        x_train, y_train, epochs=epochs, seed=seed, device=device, progress=progress, desc=desc
    )
    correct = int((predict(net, x_test, device) == y_test).sum())
    n = len(y_test)
    acc = correct / n
    return {
        "acc": acc,
        "stderr": binomial_stderr(acc, n),
        "p_value": binomial_p_greater(correct, n),
        "n_train": float(len(y_train)),
        "n_test": float(n),
    }
