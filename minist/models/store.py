"""Saving and loading every model minist trains, as weights-only checkpoints with their configs and metadata.

The file format (atomic writes, content SHA-256, ``data/SHA256SUMS``) is :mod:`minist.checkpoint`'s; this module
knows what each model is made of: a teacher, a student (encoder + codec + decoder + tail, coding tables
included), a task network (only what task training changed), a learned image codec.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from .. import checkpoint
from ..config import BottleneckConfig, TeacherConfig
from ..utils import data_dir
from . import tasks as T
from .codec import BetaGrid
from .image_codecs import build as build_image_codec
from .student import TAIL, EntropicStudent
from .teacher import Teacher


def _floats(state_dict: dict) -> dict:
    """fp16-stored weights back to fp32."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}


# ---- teachers and students ---------------------------------------------------------------------------------
def save_teacher(path, model: Teacher, meta: dict, half: bool = False) -> Path:
    return checkpoint.save(path, kind="teacher", config=model.config.to_dict(),
                           state_dict=model.to(memory_format=torch.contiguous_format).state_dict(), meta=meta,
                           half=half)


def load_teacher(path) -> tuple[Teacher, dict]:
    """A teacher from a weights-only checkpoint, in eval mode, with its metadata."""
    ck = checkpoint.load(path, kind="teacher")
    model = Teacher(TeacherConfig.from_dict(ck["config"]))
    checkpoint.load_weights(model, _floats(ck["state_dict"]), path)
    return model.eval(), ck["meta"]


def tail_digest(model) -> str:
    """SHA-256 of layer2 … head's weights as float32 (a teacher's, or a student's copy of them)."""
    h = hashlib.sha256()
    for name in TAIL:
        for k, v in sorted(getattr(model, name).state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().float().cpu().contiguous().numpy().tobytes() if v.is_floating_point()
                     else v.cpu().numpy().tobytes())
    return h.hexdigest()


def _teacher_with_tail(digest: str, teacher: Teacher | None, path) -> Teacher:
    """The teacher whose layer2 … head a compact student uses: ``teacher``, else the shipped one that matches."""
    candidates = [teacher] if teacher is not None else (     # loaded one by one, until one matches
        load_teacher(p)[0] for p in sorted(data_dir().glob("teacher_*.pt")))
    for t in candidates:
        if tail_digest(t) == digest:
            return t
    raise ValueError(f"{path} keeps its teacher's layer2 … head (SHA-256 {digest[:12]}…), and "
                     f"{'the teacher given' if teacher is not None else 'no teacher in ' + str(data_dir())} "
                     "has those weights: pass the teacher it was trained with (load_student(path, teacher=…))")


def save_student(path, student: EntropicStudent, meta: dict, half: bool = False) -> Path:
    """A weights-only student checkpoint (CDF tables included) with its configs and metadata. A student whose
    stage 2 left the teacher's layer2 … head alone (``tune_tail=False``) stores only encoder, codec and decoder,
    plus the digest of the teacher's tail it runs on (a few hundred KB instead of the teacher's size)."""
    config = {"teacher": student.teacher_config.to_dict(), "bottleneck": student.config.to_dict(),
              "codec": student.codec_name, "grid": student.codec.grid.to_dict()}
    state = student.state_dict()
    if not student.tune_tail and not student.end_to_end:
        config["tail_sha256"] = tail_digest(student)
        state = {k: v for k, v in state.items() if k.split(".")[0] not in TAIL}
    return checkpoint.save(path, kind="student", config=config, state_dict=state, meta=meta, half=half)


def _legacy_grid(ck: dict) -> BetaGrid | None:
    """The one rate of a student saved before every codec had a grid: its training β (meta)."""
    meta = ck.get("meta") or {}
    beta = meta.get("beta", (meta.get("config") or {}).get("beta"))
    return BetaGrid.single(beta) if ck["config"].get("codec", "factorized") != "gained" and beta else None


def load_student(path, teacher: Teacher | None = None) -> tuple[EntropicStudent, dict]:
    """A student from :func:`save_student`, in eval mode (stage 2, tables loaded), with its metadata.
    A compact student takes layer2 … head from ``teacher`` or from the shipped teacher with the recorded digest."""
    ck = checkpoint.load(path, kind="student")
    digest = ck["config"].get("tail_sha256")
    base = _teacher_with_tail(digest, teacher, path) if digest else Teacher(
        TeacherConfig.from_dict(ck["config"]["teacher"]))
    grid = BetaGrid(**ck["config"]["grid"]) if "grid" in ck["config"] else _legacy_grid(ck)
    student = EntropicStudent(base, BottleneckConfig.from_dict(ck["config"]["bottleneck"]),
                              codec=ck["config"].get("codec", "factorized"), grid=grid)
    state = _floats(ck["state_dict"])
    if digest:
        student.tune_tail = False
        state = {**{k: v for k, v in student.state_dict().items() if k.split(".")[0] in TAIL}, **state}
    checkpoint.load_weights(student, state, path)
    student.stage = 2
    for m in (student.encoder, student.codec):
        m.requires_grad_(False)
    return student.eval(), ck["meta"]


# ---- task networks (notebook 04) ---------------------------------------------------------------------------
def _parts(net) -> dict:
    """The modules a task checkpoint holds: what task training changed (never the shared encoder/prior)."""
    parts = {**{n: getattr(net.backbone, n) for n in net.tuned}, "fpn": net.backbone.fpn, "head": net.head}
    if isinstance(net.backbone.front, T.StudentFront):
        parts["decoder"] = net.backbone.front.decoder
        if len(net.backbone.front.refine):
            parts["refine"] = net.backbone.front.refine
    return parts


def retrained_parameters(net) -> int:
    return sum(p.numel() for m in _parts(net).values() for p in m.parameters())


def save_task(path, net, meta: dict, half: bool = True) -> Path:
    sd = {f"{name}.{k}": v for name, m in _parts(net).items() for k, v in m.state_dict().items()}
    kind = "task-student" if "decoder" in _parts(net) else "task-teacher"
    config = {"task": net.task, "num_classes": net.num_classes, **({"tuned": list(net.tuned)} if net.tuned else {}),
              **({"teacher_tuned": list(net.teacher_tuned)} if net.teacher_tuned else {}),
              **({"refine": len(net.backbone.front.refine)} if "refine" in _parts(net) else {})}
    return checkpoint.save(path, kind=kind, config=config, state_dict=sd, meta=meta, half=half)


def _load_parts(net, ck: dict, path) -> None:
    sd = _floats(ck["state_dict"])
    extra = sorted({k.split(".")[0] for k in sd} - set(_parts(net)))
    if extra:        # e.g. refine blocks its config does not declare: loading without them would be silent garbage
        raise ValueError(f"{path}: holds {', '.join(extra)} that this model has no place for: its config and its "
                         f"weights disagree; remake the checkpoint")
    for name, m in _parts(net).items():
        part = {k[len(name) + 1:]: v for k, v in sd.items() if k.startswith(name + ".")}
        try:
            m.load_state_dict(part, strict=True)
        except RuntimeError as e:
            raise ValueError(f"{path}: its {name} does not fit this model ({e})") from e


def load_task_teacher(path, teacher):
    ck = checkpoint.load(path, kind="task-teacher")
    net = T.build_task_teacher(ck["config"]["task"], teacher, ck["config"]["num_classes"])
    net.tune(tuple(ck["config"].get("tuned", ())))       # a teacher that tuned backbone stages holds them
    _load_parts(net, ck, path)
    return net.eval(), ck["meta"]


def _backbone(stages) -> str:
    return f"tuned {', '.join(sorted(stages))}" if stages else "kept the classification backbone frozen"


def load_task_student(path, task_teacher, student):
    ck = checkpoint.load(path, kind="task-student")
    if ck["config"]["task"] != task_teacher.task:
        raise ValueError(f"{path} is a {ck['config']['task']} student, the task teacher does {task_teacher.task}")
    held = tuple(ck["config"].get("tuned", ()))
    # the backbone stages it does not hold are its task teacher's: they must be the ones it trained on
    took = set(ck["config"].get("teacher_tuned", ())) - set(held)
    given = set(task_teacher.tuned) - set(held)
    if took != given:
        raise ValueError(f"{path} was trained from a task teacher that {_backbone(took)}; this one "
                         f"{_backbone(given)}: load it with the task teacher it was trained from")
    net = T.build_task_student(task_teacher, student, held, ck["config"].get("refine", 0))
    _load_parts(net, ck, path)
    return net.eval(), ck["meta"]


# ---- learned image codecs ----------------------------------------------------------------------------------
def save_image_codec(path, model, config: dict, meta: dict) -> Path:
    return checkpoint.save(path, kind="image-codec", config=config, state_dict=model.state_dict(), meta=meta)


def load_image_codec(path):
    ck = checkpoint.load(path, kind="image-codec")
    cfg = ck["config"]
    model = build_image_codec(cfg["arch"], cfg["N"], cfg["M"])
    model.load_state_dict(ck["state_dict"])
    return model.eval(), ck["meta"]
