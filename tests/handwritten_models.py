"""A corpus of models written by hand, the way courses and tutorials write them, for ``tests/test_handwritten.py``.

Each class is one model a user brings. ``INPUT`` is one sample of its input without the batch: a shape, a list
of shapes (several positional inputs) or a dict of shapes (keyword inputs); ``DTYPES`` names the inputs that are
not float32 (token ids, lengths). ``EXPECT`` lists the ``(finding id, module path)`` that ``torchsmith.check`` must
report (the labelled defects); a model with ``EXPECT = []`` is healthy and must get no error. ``TASK`` is what
``train`` is asked to do with it (None: not a model one trains with a plain loss, e.g. a GAN's generator).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["HANDWRITTEN", "Handwritten"]


class Handwritten(nn.Module):
    INPUT: Any = (3, 32, 32)
    DTYPES: dict[Any, torch.dtype] = {}
    EXPECT: list[tuple[str, str]] = []
    TASK: str | None = "classification"


# --------------------------------------------------------------------------- CNNs as the tutorials write them
class TutorialNet(Handwritten):
    """The PyTorch 60-minute blitz CIFAR net: conv-pool-conv-pool, ``torch.flatten``, three Linear layers."""
    EXPECT = [("hard-coded-size", "fc1")]  # 16 * 5 * 5 fits 32x32 input only

    

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))  # (B, 6, 14, 14)
        x = self.pool(F.relu(self.conv2(x)))  # (B, 16, 5, 5)
        x = torch.flatten(x, 1)  # (B, 400)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class ViewNet(Handwritten):
    """MNIST-style net flattening with ``x.view(x.size(0), -1)``."""

    INPUT = (1, 28, 28)
    EXPECT = [("hard-coded-size", "fc")]  # 8 * 14 * 14 fits 28x28 input only

    

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 14 * 14, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv(x)), 2)  # (B, 8, 14, 14)
        return self.fc(x.view(x.size(0), -1))


class LazyLeNet(Handwritten):
    """d2l's LeNet: every layer lazy, sizes inferred on the first batch."""

    INPUT = (1, 28, 28)

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LazyConv2d(6, kernel_size=5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2, 2),
            nn.LazyConv2d(16, kernel_size=5), nn.Sigmoid(), nn.AvgPool2d(2, 2),
            nn.Flatten(), nn.LazyLinear(120), nn.Sigmoid(), nn.LazyLinear(84), nn.Sigmoid(), nn.LazyLinear(10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LazyMLP(Handwritten):
    """d2l's MLP with ``LazyLinear`` and ``LazyBatchNorm1d``."""

    INPUT = (20,)

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LazyLinear(64), nn.LazyBatchNorm1d(), nn.ReLU(), nn.LazyLinear(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class NiNBlockNet(Handwritten):
    """d2l's NiN: blocks of conv + two 1x1 convs, global average pooling, no Linear."""

    INPUT = (1, 32, 32)

    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int, k: int, s: int, p: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, k, s, p), nn.ReLU(), nn.Conv2d(cout, cout, 1), nn.ReLU(),
                                 nn.Conv2d(cout, cout, 1), nn.ReLU())
        self.net = nn.Sequential(block(1, 16, 5, 1, 2), nn.MaxPool2d(2), block(16, 10, 3, 1, 1),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Inception(nn.Module):
    """GoogLeNet's four-branch block, concatenated on channels."""

    def __init__(self, cin: int, c1: int, c2: tuple[int, int], c3: tuple[int, int], c4: int) -> None:
        super().__init__()
        self.b1 = nn.Conv2d(cin, c1, 1)
        self.b2 = nn.Sequential(nn.Conv2d(cin, c2[0], 1), nn.ReLU(), nn.Conv2d(c2[0], c2[1], 3, padding=1))
        self.b3 = nn.Sequential(nn.Conv2d(cin, c3[0], 1), nn.ReLU(), nn.Conv2d(c3[0], c3[1], 5, padding=2))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(cin, c4, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(self.b1(x)), F.relu(self.b2(x)), F.relu(self.b3(x)), F.relu(self.b4(x))], dim=1)


class MiniGoogLeNet(Handwritten):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.inc = Inception(16, 8, (8, 12), (4, 6), 6)  # 32 channels out
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.inc(self.stem(x)))


class DenseBlockNet(Handwritten):
    """d2l's DenseNet: each conv block's output concatenated to its input."""

    def __init__(self, growth: int = 8, layers: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(16 + i * growth), nn.ReLU(), nn.Conv2d(16 + i * growth, growth, 3, padding=1))
            for i in range(layers))
        self.head = nn.Linear(16 + layers * growth, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for blk in self.blocks:
            x = torch.cat([x, blk(x)], dim=1)
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


class Residual(nn.Module):
    """d2l's residual block with an optional 1x1 projection."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.proj = nn.Conv2d(cin, cout, 1, stride) if stride != 1 or cin != cout else None
        self.bn1, self.bn2 = nn.BatchNorm2d(cout), nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.proj(x) if self.proj is not None else x))


class SmallResNet(Handwritten):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.layers = nn.Sequential(Residual(16, 16), Residual(16, 32, 2), Residual(32, 32))
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1).flatten(1))


class UNet(Handwritten):
    """A two-level U-Net: encoder, bottleneck, transposed-conv decoder with skip concatenations."""

    INPUT = (1, 32, 32)
    TASK = None  # a dense per-pixel output; trained with its own loss

    def __init__(self) -> None:
        super().__init__()

        def double(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1),
                                 nn.ReLU())
        self.down1, self.down2 = double(1, 8), double(8, 16)
        self.bottom = double(16, 32)
        self.up2, self.dec2 = nn.ConvTranspose2d(32, 16, 2, 2), double(32, 16)
        self.up1, self.dec1 = nn.ConvTranspose2d(16, 8, 2, 2), double(16, 8)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = self.down1(x)  # (B, 8, 32, 32)
        d2 = self.down2(F.max_pool2d(d1, 2))  # (B, 16, 16, 16)
        b = self.bottom(F.max_pool2d(d2, 2))  # (B, 32, 8, 8)
        u2 = self.dec2(torch.cat([self.up2(b), d2], 1))
        u1 = self.dec1(torch.cat([self.up1(u2), d1], 1))
        return self.out(u1)  # (B, 2, 32, 32)


# --------------------------------------------------------------------------- generative models
class DCGANGenerator(Handwritten):
    """DCGAN's generator: a latent (nz, 1, 1) up to a 3x16x16 image."""

    INPUT = (16, 1, 1)
    TASK = None

    def __init__(self, nz: int = 16, ngf: int = 8) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, 3, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class DCGANDiscriminator(Handwritten):
    INPUT = (3, 16, 16)
    TASK = None
    EXPECT = [("hard-coded-size", "")]  # .view(-1, 1) folds positions into the batch at other sizes

    

    def __init__(self, ndf: int = 8) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(3, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, 1, 4, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1, 1).squeeze(1)


class VAE(Handwritten):
    """The PyTorch examples' VAE: reparameterisation draws ``randn_like(std)`` in forward, in train mode only."""

    INPUT = (1, 28, 28)
    TASK = None

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 64)
        self.fc21, self.fc22 = nn.Linear(64, 8), nn.Linear(64, 8)
        self.fc3, self.fc4 = nn.Linear(8, 64), nn.Linear(64, 784)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return mu
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = F.relu(self.fc1(x.flatten(1)))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = self.reparameterize(mu, logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


class SamplingVAE(VAE):
    """A VAE that samples in eval mode too: a labelled defect (``nondeterministic-eval`` in the sampling op)."""

    EXPECT = [("nondeterministic-eval", "")]

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std


# --------------------------------------------------------------------------- sequences
class CharRNN(Handwritten):
    """A char-level LSTM language model returning its logits and the recurrent state ``(h, c)``."""

    INPUT = (24,)
    DTYPES = {0: torch.long}
    TASK = None

    def __init__(self, vocab: int = 40, hidden: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 16)
        self.lstm = nn.LSTM(16, hidden, num_layers=2, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        y, (h, c) = self.lstm(self.embed(x))  # h, c: (layers, B, hidden)
        return self.out(y), (h, c)


class WordLSTM(Handwritten):
    """The PyTorch word-language-model example: sequence-first (T, B) ids, dropout, tied weights."""

    INPUT = (20,)
    DTYPES = {0: torch.long}
    TASK = None

    def __init__(self, vocab: int = 50, width: int = 24) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.2)
        self.encoder = nn.Embedding(vocab, width)
        self.rnn = nn.LSTM(width, width, 2, dropout=0.2)  # batch_first=False: (T, B, width)
        self.decoder = nn.Linear(width, vocab)
        self.decoder.weight = self.encoder.weight  # weight tying (Press & Wolf 2017)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb = self.drop(self.encoder(x.t()))  # (B, T) -> (T, B, width)
        out, _ = self.rnn(emb)
        return self.decoder(self.drop(out)).transpose(0, 1)  # (B, T, vocab)


class GRUClassifier(Handwritten):
    """Bidirectional GRU over token ids, the last states concatenated into a classifier."""

    INPUT = (16,)
    DTYPES = {0: torch.long}

    def __init__(self, vocab: int = 60) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 16)
        self.gru = nn.GRU(16, 24, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(48, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(self.embed(x))  # h: (2, B, 24)
        return self.fc(torch.cat([h[0], h[1]], dim=1))


class PackedLSTMClassifier(Handwritten):
    """``forward(x, lengths)`` packing padded sequences: two inputs, the lengths on the CPU."""

    INPUT = [(12, 8), ()]
    DTYPES = {1: torch.long}

    

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.clamp(1, x.shape[1]).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        return self.fc(h[-1])


class PackedLSTM(Handwritten):
    """One input; the lengths are all full, packing inside forward (data-dependent on the CPU)."""

    INPUT = (10, 6)

    

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(6, 12, batch_first=True)
        self.fc = nn.Linear(12, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True)
        out, _ = self.lstm(packed)
        padded, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
        return self.fc(padded[:, -1])


class StatefulRNN(Handwritten):
    """An Elman RNN returning its whole output and last hidden state, sequence-first as nn.RNN defaults."""

    INPUT = (15, 4)
    TASK = None

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(4, 8)
        self.fc = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, h = self.rnn(x.transpose(0, 1))  # (T, B, 8), (1, B, 8)
        return self.fc(out).transpose(0, 1), h


# --------------------------------------------------------------------------- attention by hand
class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, block: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.register_buffer("mask", torch.tril(torch.ones(block, block)).view(1, 1, block, block))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))  # (B, h, T, d)
        att = (q @ k.transpose(-2, -1)) * (k.size(-1) ** -0.5)
        att = att.masked_fill(self.mask[:, :, :t, :t] == 0, float("-inf")).softmax(-1)
        return self.proj((att @ v).transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, block: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, block)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyGPT(Handwritten):
    """nanoGPT in miniature: token + position embeddings, pre-norm blocks, tied head; returns (B, T, vocab)."""

    INPUT = (16,)
    DTYPES = {0: torch.long}
    TASK = None

    def __init__(self, vocab: int = 64, width: int = 32, heads: int = 2, layers: int = 2, block: int = 16) -> None:
        super().__init__()
        self.block_size = block
        self.wte, self.wpe = nn.Embedding(vocab, width), nn.Embedding(block, width)
        self.blocks = nn.ModuleList(Block(width, heads, block) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)  # (B, T, width)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln_f(x))


class HandViT(Handwritten):
    """A ViT by hand: conv patch embedding, class token, learned positions, nn.TransformerEncoder."""

    INPUT = (3, 32, 32)

    def __init__(self, patch: int = 8, width: int = 32) -> None:
        super().__init__()
        n = (32 // patch) ** 2
        self.patch = nn.Conv2d(3, width, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embedding = nn.Parameter(torch.randn(1, n + 1, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, 2, 64, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)  # (B, 16, width)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embedding
        return self.head(self.encoder(x)[:, 0])


# --------------------------------------------------------------------------- other data shapes
class AudioConv1d(Handwritten):
    """M5-style raw-audio classifier: strided Conv1d over one channel of samples."""

    INPUT = (1, 800)

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(1, 8, 40, stride=8), nn.BatchNorm1d(8), nn.ReLU(), nn.MaxPool1d(4),
                                 nn.Conv1d(8, 16, 3), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                                 nn.Linear(16, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Volume3d(Handwritten):
    """A 3D convnet over small volumes (video clips, scans)."""

    INPUT = (1, 8, 16, 16)

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU(), nn.MaxPool3d(2),
                                 nn.Conv3d(4, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                                 nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TabularMLP(Handwritten):
    """An MLP for a table of 12 features with BatchNorm and Dropout; regression head."""

    INPUT = (12,)
    TASK = "regression"

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(12, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# --------------------------------------------------------------------------- several inputs, structured outputs
class SiameseNet(Handwritten):
    """Two images through one shared encoder; the distance of their embeddings."""

    INPUT = [(1, 16, 16), (1, 16, 16)]
    TASK = None

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                     nn.Linear(32, 16))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.pairwise_distance(self.encoder(a), self.encoder(b))


class ImageMetaNet(Handwritten):
    """An image and a vector of metadata, fused before the classifier; keyword inputs."""

    INPUT = {"image": (3, 16, 16), "meta": (5,)}

    def __init__(self) -> None:
        super().__init__()
        self.cnn = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.mlp = nn.Sequential(nn.Linear(5, 8), nn.ReLU())
        self.head = nn.Linear(16, 4)

    def forward(self, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.cnn(image), self.mlp(meta)], dim=1))


class DictOutputNet(Handwritten):
    """Two heads returned as a dict (a multi-task model)."""

    INPUT = (10,)
    TASK = None

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(10, 16), nn.ReLU())
        self.cls, self.reg = nn.Linear(16, 3), nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(x)
        return {"logits": self.cls(h), "value": self.reg(h)}


class SpectralNormD(Handwritten):
    """A GAN discriminator with spectral normalisation (a recomputed ``weight`` is not an unregistered tensor)."""

    INPUT = (3, 16, 16)
    TASK = None
    EXPECT = [("hard-coded-size", "fc")]  # 16 * 4 * 4 fits 16x16 input only

    

    def __init__(self) -> None:
        super().__init__()
        sn = nn.utils.spectral_norm
        self.c1 = sn(nn.Conv2d(3, 8, 4, 2, 1))
        self.c2 = nn.utils.parametrizations.spectral_norm(nn.Conv2d(8, 16, 4, 2, 1))
        self.fc = nn.utils.parametrizations.weight_norm(nn.Linear(16 * 4 * 4, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.c2(F.leaky_relu(self.c1(x), 0.2)), 0.2)
        return self.fc(x.flatten(1))


# --------------------------------------------------------------------------- the classic defects
class HardCodedFlatten(Handwritten):
    """``x.view(-1, 400)`` ... with a batch hard-coded: ``view(2, -1)`` folds any other batch into the features."""

    INPUT = (3, 32, 32)
    EXPECT = [("hard-coded-size", "fc")]

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 5)
        self.fc = nn.Linear(4 * 28 * 28, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).view(2, -1))


class InPlaceInput(Handwritten):
    INPUT = (8,)
    EXPECT = [("input-mutated", "")]

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.mul_(2.0)
        return self.fc(x)


class PlainListLayers(Handwritten):
    INPUT = (8,)
    EXPECT = [("unregistered-submodule", "layers.0"), ("unregistered-submodule", "layers.1"),
              ("state-dict-roundtrip", "layers.0")]

    def __init__(self) -> None:
        super().__init__()
        self.layers = [nn.Linear(8, 8), nn.Linear(8, 2)]
        self.keep = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class TensorNotBuffer(Handwritten):
    """A normalising constant held as a plain tensor attribute: not moved by .to(), not in the state_dict."""

    INPUT = (8,)
    EXPECT = [("unregistered-tensor", "scale")]

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.linspace(0.5, 1.5, 8)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x * self.scale)


class DataDependentIf(Handwritten):
    """A Python ``if`` on a tensor's value: not exportable as one graph."""

    INPUT = (8,)
    EXPECT = [("not-exportable", "")]

    def __init__(self) -> None:
        super().__init__()
        self.pos, self.neg = nn.Linear(8, 2), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.pos(x)
        return self.neg(x)


class LayerInForward(Handwritten):
    """A layer built inside forward: new random weights every call, never trained."""

    INPUT = (8,)
    EXPECT = [("unregistered-submodule", ""), ("nondeterministic-eval", "<unregistered Linear>")]

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.Linear(4, 2)(F.relu(self.fc(x)))


class ZeroInitMLP(Handwritten):
    INPUT = (8,)
    EXPECT = [("symmetric-init", "fc1")]

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 3)
        for layer in (self.fc1, self.fc2):  # "initialise everything to 0.1": every hidden unit the same
            nn.init.constant_(layer.weight, 0.1)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


class HookInForward(Handwritten):
    """Registers a forward hook on every call: hooks pile up and slow every step."""

    INPUT = (8,)
    EXPECT = [("hook-left", "fc")]

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 2)
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fc.register_forward_hook(lambda m, i, o: None)
        return self.fc(x)


class RecordingNet(Handwritten):
    """Keeps the last outputs in a Python list (a debugging habit): read-only calls must not append to it."""

    INPUT = (8,)

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 3)
        self.history: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        self.history.append(y.detach())
        return y


HANDWRITTEN: list[type[Handwritten]] = [
    TutorialNet, ViewNet, LazyLeNet, LazyMLP, NiNBlockNet, MiniGoogLeNet, DenseBlockNet, SmallResNet, UNet,
    DCGANGenerator, DCGANDiscriminator, VAE, SamplingVAE, CharRNN, WordLSTM, GRUClassifier, PackedLSTMClassifier,
    PackedLSTM, StatefulRNN, TinyGPT, HandViT, AudioConv1d, Volume3d, TabularMLP, SiameseNet, ImageMetaNet,
    DictOutputNet, SpectralNormD, HardCodedFlatten, InPlaceInput, PlainListLayers, TensorNotBuffer,
    DataDependentIf, LayerInForward, ZeroInitMLP, HookInForward, RecordingNet,
]
