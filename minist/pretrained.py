"""Shipped models and results: ``teacher("mini")``, ``student("mini", beta=None)``, ``results("mini")``.

Each file in ``data/`` is made by one documented command (see ``data/README.md``).
"""

from __future__ import annotations

import json
import re

from .models.store import load_student, load_task_student, load_task_teacher, load_teacher
from .models.teacher import load_imagenet_resnet50
from .utils import data_dir

PRESETS = ("mini", "paper")
TEACHER_FILES = {"mini": "teacher_mini.pt"}
# the default β per preset: the mini student closest to its teacher at ≤ 2 KB (data/README.md)
DEFAULT_BETA = {"mini": 0.005}
# the files of data/ the experiments write (minist.experiments: sweep, task study) and this module reads
RESULTS_FILE = "results_{preset}.json"
TASK_RESULTS_FILE = "results_tasks_mini.json"
TASK_TEACHER_FILE = "task_teacher_mini_{task}.pt"
TASK_STUDENT_FILE = "task_student_mini_{task}_beta{beta:g}.pt"
TASK_VARIABLE_FILE = "task_student_mini_{task}_variable.pt"     # on the variable-rate student's bitstream
TASK_TEST_RESULTS_FILE = "results_tasks_test_mini.json"         # the task study on the test split


def _check(preset: str) -> None:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}")


def teacher_file(preset: str = "mini") -> str:
    return TEACHER_FILES[preset]


def results_file(preset: str = "mini") -> str:
    return RESULTS_FILE.format(preset=preset)


def teacher(preset: str = "mini", with_meta: bool = False):
    """The teacher of ``preset`` in eval mode: ``mini`` from ``data/``, ``paper`` = ImageNet ResNet-50."""
    _check(preset)
    if preset == "paper":
        model = load_imagenet_resnet50()
        meta = {"val_accuracy": 76.13, "source": "torchvision IMAGENET1K_V1 (top-1 as published)"}
        return (model, meta) if with_meta else model
    path = data_dir() / teacher_file(preset)
    if not path.is_file():
        raise FileNotFoundError(f"the shipped {preset} teacher {path} is missing; make it with "
                                "`minist train-teacher --ship` (see data/README.md)")
    model, meta = load_teacher(path)
    return (model, meta) if with_meta else model


def default_beta(preset: str = "mini") -> float | None:
    """The β that ``student(preset)`` loads when no β is given."""
    return DEFAULT_BETA.get(preset)


def student_file(preset: str, beta: float) -> str:
    return f"student_{preset}_beta{beta:g}.pt"


def _shipped_betas(prefix: str) -> list[float]:
    """The β of every ``data/<prefix>_beta<β>.pt``, sorted."""
    found = []
    for p in data_dir().glob(f"{prefix}_beta*.pt"):
        m = re.fullmatch(rf"{re.escape(prefix)}_beta(.+)\.pt", p.name)
        if m:
            found.append(float(m.group(1)))
    return sorted(found)


def betas(preset: str = "mini") -> list[float]:
    """The β values of the students shipped in ``data/`` for ``preset`` (sorted)."""
    _check(preset)
    return _shipped_betas(f"student_{preset}")


def _as_beta(beta) -> float:
    """β as a float: ``0.02``, ``"0.02"`` and ``"2e-2"`` name the same student."""
    if isinstance(beta, bool):
        raise TypeError(f"β must be a number, got {beta!r}")
    try:
        return float(beta)
    except (TypeError, ValueError):
        raise TypeError(f"β must be a number such as 0.02, got {beta!r}") from None


def student(preset: str = "mini", beta: float | None = None, with_meta: bool = False):
    """A shipped Entropic Student (eval mode, coding tables built); ``beta=None`` → the default β.

    The mini students are compact (stage 2 trained the decoder only): their ``layer2`` … head come from the
    shipped teacher, whose digest they record."""
    _check(preset)
    shipped = betas(preset)
    if beta is None:
        beta = default_beta(preset)
    beta = _as_beta(beta)
    if beta not in shipped:
        raise FileNotFoundError(f"no shipped {preset} student at β = {beta}; shipped: "
                                f"{shipped or 'none'}. Train one with `minist train-student --beta B --ship`.")
    path = data_dir() / student_file(preset, beta)
    model, meta = load_student(path)         # a compact student finds the shipped teacher by its tail's digest
    return (model, meta) if with_meta else model


VARIABLE_FILE = "student_{preset}_variable.pt"
VARIABLE_SEEDS_FILE = "results_variable_seeds_mini.json"     # the variable-rate recipe over seeds (minist seeds)
VARIABLE_RESULTS_FILE = "results_variable_{preset}.json"


def variable_student(preset: str = "mini", with_meta: bool = False):
    """The shipped variable-rate student: one encoder, prior and decoder for every β of its grid
    (``student.codec.grid``); the rate is an argument: ``student.compress(x, beta=…)``, ``device_part(x, beta=…)``."""
    _check(preset)
    path = data_dir() / VARIABLE_FILE.format(preset=preset)
    if not path.is_file():
        raise FileNotFoundError(f"no shipped {preset} variable-rate student ({path.name}); make it with "
                                "`make variable` (see data/README.md)")
    model, meta = load_student(path)
    return (model, meta) if with_meta else model


def _shipped_json(name: str, what: str, make: str, preset: str = "mini") -> dict:
    """A shipped result file of ``data/`` (the mini preset's: only it ships), or a FileNotFoundError that names
    the command making it."""
    _check(preset)
    path = data_dir() / name
    if preset != "mini" or not path.is_file():
        raise FileNotFoundError(f"no shipped {what} for {preset!r} ({path.name}); make it with {make}")
    return json.loads(path.read_text())


def variable_results(preset: str = "mini") -> dict:
    """Per-β students and the variable-rate student side by side (``data/results_variable_<preset>.json``,
    made by ``minist bench variable --write``): ``{"grid": […], "fine": […], …}``."""
    return _shipped_json(VARIABLE_RESULTS_FILE.format(preset=preset), "variable-rate results",
                         "`minist bench variable --write`", preset)


PHOTO_RESULTS_FILE = "results_imagenette.json"


def photo_results() -> dict:
    """The real-photo study (``data/results_imagenette.json``, made by ``minist photos all``): the teacher, JPEG,
    WebP and the students on the 3,925 official val photos of Imagenette, each point with its 95 % interval
    (``ci95``) and per-photo correctness (``correct_bits``); the same point fields as :func:`results`."""
    return _shipped_json(PHOTO_RESULTS_FILE, "real-photo results",
                         "`minist photos all` (needs ../shared/data/imagenette)")


TEST_RESULTS_FILE = "results_test_mini.json"


def test_results() -> dict:
    """The mini study on its test split (``data/results_test_mini.json``, made by ``minist test-study``): the
    teacher, JPEG, WebP, the per-β students and the variable-rate student's anchors on 10,000 Fashion-on-Photos
    images that no choice saw, each point with its 95 % interval (``ci95``) and per-image correctness
    (``correct_bits``); the same point fields as :func:`results`. Every headline number comes from here."""
    return _shipped_json(TEST_RESULTS_FILE, "test-split results", "`minist test-study`")


CEILING_FILE = "results_ceiling_mini.json"


def ceiling_results() -> dict:
    """The ceiling ablation's training arms (``data/results_ceiling_mini.json``, made by ``minist ceiling``): the
    mini recipe at β 0.02 with one factor changed per arm, each on the 2,000 val images at real bytes, paired
    against the base arm and set against the shipped curves at equal bytes
    (:mod:`minist.experiments.ceiling`)."""
    return _shipped_json(CEILING_FILE, "ceiling ablation", "`minist ceiling`")


def variable_points(vres: dict) -> list[dict]:
    """The variable-rate student's anchors in :func:`variable_results` as study points (method ``variable-rate``),
    to draw with :func:`minist.plots.plot_rd` beside :func:`results`."""
    return [{"method": "variable-rate", "knob": "beta", "value": p["beta"], **p["variable"]} for p in vres["points"]]


def results(preset: str = "mini") -> dict:
    """The shipped rate–accuracy study (``data/results_<preset>.json``, made by ``minist sweep``).

    ``{"teacher_accuracy", "val_set", "units", "points": [{"method", "knob", "value", "kb_mean",
    "kb_std", "bpp", "accuracy", "header_bytes", "device_parameters", …}, …]}``. Methods:
    ``entropic``, ``stage1-only``, ``crbq``, ``end-to-end``, ``factorized``, ``hyperprior``,
    ``jpeg``, ``webp``. :func:`points` gives one method's points sorted by rate.
    """
    _check(preset)
    path = data_dir() / results_file(preset)
    if not path.is_file():
        raise FileNotFoundError(f"no shipped results for {preset!r} ({path}); make them with "
                                "`minist sweep && minist sweep --collect` (see data/README.md)")
    return json.loads(path.read_text())


def points(res: dict, method: str) -> list[dict]:
    """The points of one method in ``res`` (from :func:`results`), sorted by rate."""
    found = sorted((p for p in res["points"] if p["method"] == method), key=lambda p: p["kb_mean"])
    if not found:
        methods = sorted({p["method"] for p in res["points"]})
        raise KeyError(f"no points for method {method!r}; the results have {methods}")
    return found


# ---- notebook 04: task networks on the shared bitstream ---------------------------------------------
def task_teacher(task: str, preset: str = "mini", with_meta: bool = False):
    """The shipped detection or segmentation teacher (FPN + head on the frozen ``teacher(preset)``)."""
    _check(preset)
    path = data_dir() / TASK_TEACHER_FILE.format(task=task)
    if preset != "mini" or not path.is_file():
        raise FileNotFoundError(f"no shipped {preset} {task} teacher ({path.name}); make it with "
                                "`minist tasks && minist tasks --ship` (see data/README.md)")
    model, meta = load_task_teacher(path, teacher(preset))
    return (model, meta) if with_meta else model


def task_betas(task: str, preset: str = "mini") -> list[float]:
    """The β values with a shipped ``task`` student."""
    _check(preset)
    return _shipped_betas(f"task_student_{preset}_{task}")


def task_student(task: str, beta: float | None = None, preset: str = "mini", with_meta: bool = False):
    """A shipped task student: the classification ``student(preset, beta)``'s encoder + prior, shared and
    frozen, with this task's decoder, FPN and head. ``beta=None`` → the default β."""
    shipped = task_betas(task, preset)
    beta = _as_beta(DEFAULT_BETA.get(preset) if beta is None else beta)
    if beta not in shipped:
        raise FileNotFoundError(f"no shipped {preset} {task} student at β = {beta}; shipped: {shipped or 'none'}. "
                                "Make them with `minist tasks && minist tasks --ship`.")
    path = data_dir() / TASK_STUDENT_FILE.format(task=task, beta=beta)
    model, meta = load_task_student(path, task_teacher(task, preset), student(preset, beta))
    return (model, meta) if with_meta else model


def variable_task_student(task: str, preset: str = "mini", with_meta: bool = False):
    """The shipped task student on the variable-rate student's bitstream: its encoder + prior (shared, frozen) with
    this task's decoder, FPN and head, trained at every β of the grid. Send at any β
    (``minist.evaluate.student_predictor(net, beta=…)``); one message serves all three tasks."""
    _check(preset)
    path = data_dir() / TASK_VARIABLE_FILE.format(task=task)
    if preset != "mini" or not path.is_file():
        raise FileNotFoundError(f"no shipped {preset} variable-rate {task} student ({path.name}); make it with "
                                "`minist tasks --variable --betas '' --shipped-teachers && "
                                "minist tasks --ship --merge`")
    model, meta = load_task_student(path, task_teacher(task, preset), variable_student(preset))
    return (model, meta) if with_meta else model


def task_test_results(preset: str = "mini") -> dict:
    """The task study on the test split (``data/results_tasks_test_mini.json``, made by ``minist tasks --test``):
    the headline task numbers, each student point with its paired bootstrap interval ÷ the teacher."""
    return _shipped_json(TASK_TEST_RESULTS_FILE, "task test results", "`minist tasks --test --ship`", preset)


def task_results(preset: str = "mini") -> dict:
    """The shipped per-task RD results (``data/results_tasks_mini.json``, made by ``minist tasks``)."""
    return _shipped_json(TASK_RESULTS_FILE, "task results", "`minist tasks && minist tasks --ship`", preset)
