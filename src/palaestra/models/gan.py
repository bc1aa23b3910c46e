"""The ``gan`` family: a generator and a discriminator trained in alternation (Goodfellow et al., 2014).

Images whose height and width divide by 4 get DCGAN-style convolutional networks (Radford et al., 2016:
strided convolutions, batch norm in the generator, leaky ReLU in the discriminator); anything else (vectors)
gets MLPs. Stabilisers: one-sided label smoothing (real labels 0.9) and Adam with betas (0.5, 0.999).

``forward(x)`` is the discriminator's logit that ``x`` is real; ``sample(n)`` draws from the generator.
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from palaestra.config import ModelConfig
from palaestra.data.spec import FeatureSpec
from palaestra.hooks import Callback
from palaestra.models.registry import register

# The DCGAN paper's optimizer: used when the config does not name one.
GAN_OPTIMIZER = {"name": "adam", "lr": 2e-4, "betas": (0.5, 0.999), "weight_decay": 0.0}
REAL_LABEL = 0.9  # one-sided label smoothing: the discriminator never becomes certain on real data


class ConvGenerator(nn.Module):
    def __init__(self, latent_dim: int, shape: list[int], width: int):
        super().__init__()
        c, h, w = shape
        self.start = (width * 2, h // 4, w // 4)
        self.project = nn.Sequential(nn.Linear(latent_dim, width * 2 * (h // 4) * (w // 4)),
                                     nn.BatchNorm1d(width * 2 * (h // 4) * (w // 4)), nn.ReLU())
        self.up = nn.Sequential(
            nn.ConvTranspose2d(width * 2, width, 4, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, c, 4, stride=2, padding=1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.up(self.project(z).view(len(z), *self.start))  # (batch, C, H, W) in [-1, 1]


class ConvDiscriminator(nn.Module):
    def __init__(self, shape: list[int], width: int, dropout: float):
        super().__init__()
        c, h, w = shape
        self.body = nn.Sequential(
            nn.Conv2d(c, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Dropout(dropout),
            nn.Conv2d(width, width * 2, 4, stride=2, padding=1), nn.BatchNorm2d(width * 2), nn.LeakyReLU(0.2),
            nn.Dropout(dropout))
        self.head = nn.Linear(width * 2 * (h // 4) * (w // 4), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).flatten(1))


def _mlp(n_in: int, hidden: list[int], n_out: int, act: nn.Module, dropout: float = 0.0, out: nn.Module | None = None):
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, width), act]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        n_in = width
    layers.append(nn.Linear(n_in, n_out))
    if out is not None:
        layers.append(out)
    return nn.Sequential(*layers)


class GAN(nn.Module):
    """``forward(x)`` -> discriminator logits ``(B, 1)``; ``sample(n)`` -> generated ``(n, *shape)`` in [-1, 1]."""

    def __init__(self, shape: list[int], latent_dim: int, width: int, hidden: list[int], dropout: float = 0.0):
        super().__init__()
        self.shape, self.latent_dim = list(shape), latent_dim
        n = math.prod(shape)
        if len(shape) == 3 and shape[1] % 4 == 0 and shape[2] % 4 == 0:
            self.generator: nn.Module = ConvGenerator(latent_dim, shape, width)
            self.discriminator: nn.Module = ConvDiscriminator(shape, width, dropout)
        else:
            self.generator = nn.Sequential(_mlp(latent_dim, hidden, n, nn.ReLU(), out=nn.Tanh()), nn.Unflatten(1, shape))
            self.discriminator = nn.Sequential(nn.Flatten(), _mlp(n, hidden[::-1], 1, nn.LeakyReLU(0.2), dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.discriminator(x)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        was = self.generator.training
        self.generator.eval()
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator).to(device)
        out = self.generator(z)
        self.generator.train(was)
        return out

    def train_step(self, state, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """One discriminator step then one generator step, with the run's single optimizer: parameters whose
        gradient is None are left untouched by ``step()``, so each step moves only its own network."""
        x, opt = batch[0], state.optimizer
        z = torch.randn(len(x), self.latent_dim, device=x.device)
        fake = self.generator(z)
        real_logits, fake_logits = self.discriminator(x), self.discriminator(fake.detach())
        d_loss = (F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, REAL_LABEL))
                  + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
        opt.zero_grad(set_to_none=True)
        d_loss.backward()
        opt.step()
        g_logits = self.discriminator(fake)
        g_loss = F.binary_cross_entropy_with_logits(g_logits, torch.ones_like(g_logits))
        opt.zero_grad(set_to_none=True)
        g_loss.backward()
        for p in self.discriminator.parameters():
            p.grad = None  # the generator's step must not move the discriminator
        opt.step()
        self.last_losses = tuple(float(v.detach()) for v in (d_loss, g_loss, torch.sigmoid(real_logits).mean(),
                                                             torch.sigmoid(fake_logits).mean()))
        return (d_loss + g_loss).detach()



class GANMonitor(Callback):
    """Adds ``d_loss``, ``g_loss``, ``d_real``, ``d_fake`` (epoch means) to the history, and keeps a grid of
    samples from fixed noise after each epoch for the report."""

    def __init__(self, gan: GAN, n: int = 10, max_rows: int = 12):
        self.gan, self.n, self.max_rows = gan, n, max_rows
        self.noise = torch.Generator().manual_seed(1234)
        self.rows: list[tuple[int, torch.Tensor]] = []
        self.stride = 1  # epochs between kept rows
        self._sums: list[float] = []
        self._count = 0

    def on_epoch_begin(self, state) -> None:
        self._sums, self._count = [0.0, 0.0, 0.0, 0.0], 0

    def on_batch_end(self, state, loss) -> None:
        for i, v in enumerate(getattr(self.gan, "last_losses", (0.0,) * 4)):
            self._sums[i] += v
        self._count += 1

    def on_epoch_end(self, state, logs: dict[str, float]) -> None:
        if self._count:
            for name, total in zip(("d_loss", "g_loss", "d_real", "d_fake"), self._sums, strict=True):
                logs[name] = total / self._count
        epoch = int(logs.get("epoch", state.epoch))
        if self.rows and self.rows[-1][0] % self.stride:
            self.rows.pop()  # the latest epoch is always shown; drop the previous one if off the stride
        self.noise.manual_seed(1234)  # the same noise every epoch: rows show the same samples improving
        self.rows.append((epoch, self.gan.sample(self.n, generator=self.noise).cpu()))
        if len(self.rows) > self.max_rows:  # evenly spaced epochs: keep every other row, double the stride
            self.stride *= 2
            self.rows = [r for r in self.rows if r[0] % self.stride == 0 or r is self.rows[-1]]

    def report_section(self, history: list[dict]) -> tuple[str, str] | None:
        """An HTML section: both losses per epoch and the sample grid (one row per recorded epoch)."""
        if not self.rows:
            return None
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return None
        images = [(epoch, s) for epoch, s in self.rows if s.dim() == 4]
        fig_rows = len(images)
        fig = plt.figure(figsize=(max(6, self.n * 0.7), 3 + 0.7 * fig_rows))
        ax = fig.add_axes((0.1, 1 - 2.4 / (3 + 0.7 * fig_rows), 0.85, 2.0 / (3 + 0.7 * fig_rows)))
        epochs = [h.get("epoch") for h in history]
        for key in ("d_loss", "g_loss"):
            ax.plot(epochs, [h.get(key) for h in history], label=key)
        ax.set_xlabel("epoch")
        ax.legend()
        for r, (epoch, s) in enumerate(images):
            for c in range(min(self.n, len(s))):
                sub = fig.add_subplot(fig_rows + 4, self.n, (r + 4) * self.n + c + 1)
                img = s[c]
                shown = img[0] if img.shape[0] == 1 else img.permute(1, 2, 0).add(1).div(2).clamp(0, 1)
                sub.imshow(shown.detach().cpu().numpy(), cmap="gray")  # an array: matplotlib's copy of a tensor is deprecated
                sub.set_xticks([])
                sub.set_yticks([])
                if c == 0:
                    sub.set_ylabel(f"ep {epoch}", fontsize=7)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        plt.close(fig)
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        return ("GAN: losses and samples per epoch", f'<img alt="gan samples" src="data:image/png;base64,{data}">')


def _example() -> tuple[FeatureSpec, tuple[torch.Tensor, ...], torch.Tensor]:
    """For the shared contract test: 12 tiny 8x8 images; the GAN's ``forward`` is its discriminator."""
    g = torch.Generator().manual_seed(0)
    spec = FeatureSpec(kind="generation", task="generation", input_names=["x"], n_outputs=1, input_shape=[1, 8, 8])
    return spec, (torch.rand(12, 1, 8, 8, generator=g) * 2 - 1,), torch.ones(12)


# The DCGAN paper's optimizer, and no early stopping: the adversarial losses do not measure sample quality.
GAN_DEFAULTS = {**{f"optimizer.{k}": v for k, v in GAN_OPTIMIZER.items()}, "train.early_stopping": None,
                "train.restore_best": False}


def gan_training(model: GAN, run_dir: Path | None):
    """What the family declares for training: the alternating step, and the monitor of losses and samples."""
    return model.train_step, [GANMonitor(model)]


@register("gan", kinds=("generation",), default_for=("generation",), example=_example, defaults=GAN_DEFAULTS,
          training=gan_training, task="generation", size_knobs=("model.latent_dim", "model.channels", "model.hidden"))
def build_gan(spec: FeatureSpec, cfg: ModelConfig) -> nn.Module:
    return GAN(list(spec.input_shape or []), cfg.latent_dim, cfg.channels[0], cfg.hidden, cfg.dropout)
