"""Learned image codecs as an input-compression baseline: CompressAI's architectures, trained by minist.

The paper compares the Entropic Student with learned *image* codecs followed by the
unmodified teacher (DESIGN §3): the factorized prior of Ballé et al. (ICLR 2018,
``bmshj2018-factorized``) and the mean-scale hyperprior of Minnen et al. (NeurIPS 2018,
``mbt2018-mean``). CompressAI's pretrained weights need a download and were trained on
natural photos; here the same architectures (narrower: N = 64, M = 96) are trained on
Fashion-on-Photos itself, over a λ grid, with CompressAI's own loss
``L = R + λ · 255² · MSE`` — **λ weights distortion, so larger λ → more bits**
(the opposite of the student's β).

Training uses random 64×64 crops of the 128×128 training images (the models are fully
convolutional; CompressAI trains on crops too), which makes a step 4× cheaper.

Wire format per image: ``h, w`` of the coded latent (2 × uint16), then the length of
every string but the last (uint32 each), then the rANS strings CompressAI produced.
"""

from __future__ import annotations

import struct
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from compressai.losses import RateDistortionLoss
from compressai.models import FactorizedPrior, MeanScaleHyperprior
from tqdm.auto import tqdm

from . import checkpoint
from .data.synth import FashionOnPhotos, FashionOnPhotosConfig
from .utils import get_device, set_seed

ARCHS = {"factorized": FactorizedPrior, "hyperprior": MeanScaleHyperprior}


@dataclass
class ImageCodecConfig:
    arch: str = "factorized"        # "factorized" (Ballé 2018) or "hyperprior" (Minnen 2018, mean-scale)
    N: int = 64
    M: int = 96
    lmbda: float = 0.013            # CompressAI's λ: larger → more bits
    epochs: int = 2
    batch_size: int = 16
    crop: int = 64
    lr: float = 1e-3
    aux_lr: float = 1e-3
    train_length: int = 6000
    image_size: int = 128
    data_seed: int = 0
    seed: int = 0
    init_from: str | None = None    # warm start from another λ's checkpoint (same arch, N, M)
    max_steps: int | None = None
    device: str | None = None
    out: str = "runs/codec"


def build(arch: str, N: int, M: int):
    if arch not in ARCHS:
        raise ValueError(f"unknown learned codec {arch!r}; choose one of {sorted(ARCHS)}")
    return ARCHS[arch](N, M)


def device_parameters(model) -> int:
    """Parameters the sender runs: the analysis transform and the entropy models it codes with."""
    parts = [model.g_a, model.entropy_bottleneck] + ([model.h_a] if hasattr(model, "h_a") else [])
    return sum(p.numel() for m in parts for p in m.parameters())


def pack(enc: dict) -> bytes:
    strings = [s[0] for s in enc["strings"]]
    h, w = enc["shape"]
    head = struct.pack(">HH", h, w) + b"".join(struct.pack(">I", len(s)) for s in strings[:-1])
    return head + b"".join(strings)


def header_bytes(model) -> int:
    """Our bytes per message: the latent's h, w and the lengths of all strings but the last."""
    return 4 + 4 * ((2 if hasattr(model, "h_a") else 1) - 1)


def unpack(data: bytes, n_strings: int) -> tuple[list, tuple]:
    h, w = struct.unpack(">HH", data[:4])
    lengths = [struct.unpack(">I", data[4 + 4 * i:8 + 4 * i])[0] for i in range(n_strings - 1)]
    pos, strings = 4 + 4 * (n_strings - 1), []
    for n in lengths:
        strings.append([data[pos:pos + n]])
        pos += n
    strings.append([data[pos:]])
    return strings, (h, w)


@torch.no_grad()
def roundtrip(model, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """One image (3, H, W) in [0, 1] → (decoded image, bytes sent)."""
    data = pack(model.compress(x.unsqueeze(0)))
    strings, shape = unpack(data, 2 if hasattr(model, "h_a") else 1)
    x_hat = model.decompress(strings, shape)["x_hat"].clamp_(0, 1)[0]
    return x_hat, len(data)


def codec_teacher_accuracy(model, teacher, dataset, batch_size: int = 100) -> dict:
    """DESIGN §4 for an image codec: every image its own bitstream, then the unmodified teacher."""
    from .evaluate import decoded_accuracy, size_stats
    model.eval()
    acc, sizes = decoded_accuracy(teacher, dataset, lambda x: roundtrip(model, x), batch_size=batch_size)
    return {"accuracy": acc, **size_stats(sizes, dataset[0][0].shape[-2:]), "header_bytes": header_bytes(model)}


def train_image_codec(cfg: ImageCodecConfig, progress: bool = True):
    """Train one codec at one λ; returns ``(model, meta)`` and writes ``<out>/codec.pt``."""
    set_seed(cfg.seed)
    device = get_device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model = build(cfg.arch, cfg.N, cfg.M)
    if cfg.init_from:
        ck = checkpoint.load(cfg.init_from, kind="image-codec")
        if (ck["config"]["arch"], ck["config"]["N"], ck["config"]["M"]) != (cfg.arch, cfg.N, cfg.M):
            raise ValueError(f"{cfg.init_from} is a {ck['config']['arch']} N={ck['config']['N']} "
                             f"M={ck['config']['M']} codec; warm starts need the same architecture")
        model.load_state_dict(ck["state_dict"])
    model = model.to(device).train()
    crit = RateDistortionLoss(lmbda=cfg.lmbda)
    main = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    opt = torch.optim.Adam(main, lr=cfg.lr)
    aux_opt = torch.optim.Adam(aux, lr=cfg.aux_lr)
    data = FashionOnPhotos("train", "classification", FashionOnPhotosConfig(
        size=cfg.image_size, seed=cfg.data_seed, train_length=cfg.train_length))
    history, tic, seen = [], time.time(), 0
    for epoch in range(cfg.epochs):
        data.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(data, batch_size=cfg.batch_size, shuffle=True, drop_last=True)
        terms = {"loss": 0.0, "bpp": 0.0, "mse": 0.0}
        steps = 0
        for step, (x, _) in enumerate(tqdm(loader, desc=f"{cfg.arch} λ={cfg.lmbda:g} epoch {epoch + 1}",
                                           disable=not progress or None)):
            if cfg.crop < cfg.image_size:      # one random crop position per batch
                i, j = torch.randint(0, cfg.image_size - cfg.crop + 1, (2,)).tolist()
                x = x[..., i:i + cfg.crop, j:j + cfg.crop]
            x = x.to(device)
            parts = crit(model(x), x)
            opt.zero_grad(set_to_none=True)
            parts["loss"].backward()
            torch.nn.utils.clip_grad_norm_(main, 1.0)
            opt.step()
            a = model.aux_loss()
            aux_opt.zero_grad(set_to_none=True)
            a.backward()
            aux_opt.step()
            terms["loss"] += parts["loss"].item()
            terms["bpp"] += parts["bpp_loss"].item()
            terms["mse"] += parts["mse_loss"].item()
            steps += 1
            seen += len(x)
            if cfg.max_steps is not None and step + 1 >= cfg.max_steps:
                break
        history.append({"epoch": epoch + 1, **{k: v / max(steps, 1) for k, v in terms.items()}})
    model.update(force=True)
    model.eval()
    meta = {"config": asdict(cfg), "history": history, "train_images": seen, "train_seconds": time.time() - tic}
    checkpoint.save(out / "codec.pt", kind="image-codec", config=asdict(cfg), state_dict=model.state_dict(),
                    meta=meta)
    checkpoint.write_json(out / "history.json", history)
    return model, meta


def load_image_codec(path):
    ck = checkpoint.load(path, kind="image-codec")
    cfg = ck["config"]
    model = build(cfg["arch"], cfg["N"], cfg["M"])
    model.load_state_dict(ck["state_dict"])
    return model.eval(), ck["meta"]


LAMBDA_CHAIN = ((0.013, None), (0.0035, 0.013), (0.05, 0.013))


def run_learned(out: Path, teacher, quick: bool = False, progress: bool = True, archs=("factorized", "hyperprior"),
                chain=LAMBDA_CHAIN) -> list[dict]:
    """The learned-codec points of the sweep: each arch over the λ grid (warm-started from λ = 0.013)."""
    from .sweep import _point_path, _row, _write_point, val_set
    val = val_set(limit=50 if quick else None)
    rows = []
    for arch in archs:
        for lmbda, parent in (chain[:1] if quick else chain):
            if _point_path(out, arch, lmbda).is_file():
                continue
            cfg = ImageCodecConfig(arch=arch, lmbda=lmbda, out=str(out / f"{arch}-{lmbda:g}"),
                                   epochs=2 if parent is None else 1,
                                   init_from=str(out / f"{arch}-{parent:g}" / "codec.pt") if parent else None)
            if quick:
                cfg.max_steps, cfg.train_length = 3, 64
            model, meta = train_image_codec(cfg, progress=progress)
            res = codec_teacher_accuracy(model, teacher, val)
            row = _row(arch, "lambda", lmbda, res, device_parameters(model), train_images=meta["train_images"],
                       train_seconds=round(meta["train_seconds"], 1), checkpoint=str(Path(cfg.out) / "codec.pt"),
                       recipe={k: v for k, v in asdict(cfg).items() if k not in ("out", "device")})
            rows.append(_write_point(out, row))
            print(f"{arch} λ={lmbda:g}: {res['accuracy']:.2f} % at {res['kb_mean']:.3f} KB")
    return rows
