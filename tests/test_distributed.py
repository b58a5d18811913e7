"""torchrun + DDP (issue 7): one 2-process gloo step equals one single-process step on the combined batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minist import distributed

HELPER = Path(__file__).parent / "helpers" / "ddp_step.py"
TASK_HELPER = Path(__file__).parent / "helpers" / "ddp_task_eval.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args, out: Path, helper: Path = HELPER) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    r = subprocess.run([sys.executable, *args, str(helper), str(out)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def test_two_process_gloo_step_equals_one_step_on_the_combined_batch(tmp_path):
    _run([], tmp_path / "single")
    _run(["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
          "--master_port", str(_free_port())], tmp_path / "ddp")
    one = torch.load(tmp_path / "single" / "student.pt", weights_only=True)
    two = torch.load(tmp_path / "ddp" / "student.pt", weights_only=True)
    for k, v in one["state_dict"].items():
        if v.is_floating_point():
            torch.testing.assert_close(two["state_dict"][k], v, rtol=1e-4, atol=1e-5, msg=f"{k} differs")
    # the gradients themselves (Adam's step is nearly scale-free, so compare what DDP all-reduced):
    # each rank's batch-sum loss × 2, averaged over 2 ranks = the combined batch's sum
    g1, g2 = (torch.load(tmp_path / d / "grads.pt", weights_only=True) for d in ("single", "ddp"))
    assert set(g1) == set(g2) and len(g1) > 10
    for k, v in g1.items():     # float32 sums in another order: ≈1e-6 of the gradient's norm
        assert float((g2[k] - v).norm() / v.norm().clamp(min=1e-12)) < 1e-4, f"gradient of {k} differs"
    # the step really moved the weights (Adam, lr 2e-3: ≈2e-3 per weight, 2,000× the tolerance)
    sys.path.insert(0, str(HELPER.parent))
    from ddp_step import initial_student
    init = initial_student().state_dict()
    moved = [k for k in ("encoder.0.weight", "decoder.0.weight", "codec.matrices.0")
             if (one["state_dict"][k] - init[k]).abs().max() > 1e-3]
    assert len(moved) == 3
    # the evaluation was split over the ranks and gathered: same real-byte result on the same 6 images
    h1, h2 = one["meta"]["history"][0], two["meta"]["history"][0]
    assert h1["n"] == h2["n"] == 6
    assert h1["bytes_mean"] == pytest.approx(h2["bytes_mean"], rel=1e-6)
    assert h1["accuracy"] == pytest.approx(h2["accuracy"])


def test_task_evaluation_split_over_two_gloo_processes_equals_one_process(tmp_path):
    """mAP and mIoU from 2 ranks (each every other scene, batch 1, gathered) = one process on all scenes."""
    import json
    torchrun = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                "--master_port", str(_free_port())]
    _run([], tmp_path / "one.json", TASK_HELPER)
    _run(torchrun, tmp_path / "two.json", TASK_HELPER)
    one, two = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert one["detection"]["n"] == two["detection"]["n"] == 10
    assert sorted(one["segmentation"]["sizes"]) == sorted(two["segmentation"]["sizes"])
    assert len(two["segmentation"]["sizes"]) == 10 and 0 < one["detection"]["map"] < 100
    for task, keys in (("detection", ("map", "map_50")), ("segmentation", ("miou", "pixel_accuracy"))):
        for k in keys:
            assert two[task][k] == pytest.approx(one[task][k], abs=1e-6), (task, k)


def test_single_process_helpers_are_no_ops():
    ctx = distributed.context()
    assert (ctx.rank, ctx.world, ctx.main) == (0, 1, True)
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model) is model
    assert distributed.loss_scale() == 1 and distributed.per_rank_batch(64) == 64
    assert list(distributed.shard(5)) == [0, 1, 2, 3, 4]
    assert distributed.gather({"a": 1}) == [{"a": 1}]
    s = distributed.sampler(list(range(10)), seed=0, epoch=0)
    assert sorted(s) == list(range(10))


def test_paper_throughput_table_runs_on_a_cpu():
    from minist.experiments.bench import paper_throughput
    rows = dict(paper_throughput(batch=1, steps=1, warmup=0, device="cpu"))
    assert rows["teacher (ResNet-50) forward only"].endswith("images/s")
    assert rows["ratio: stage-1 step / teacher forward"].endswith("×")


def test_paper_preset_trains_end_to_end_on_a_tiny_imagenet_folder(tmp_path):
    """The paper recipe's code path (ImageNet folder loader, C = 24 bottleneck on ResNet-50, both stages, real-byte
    evaluation) on 8 random JPEGs; the teacher is untrained (nothing downloads)."""
    import numpy as np
    from PIL import Image

    from minist.config import StudentTrainConfig
    from minist.models.teacher import build_teacher
    from minist.recipes import train_student
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("n01440764", "n02102040"):
            (tmp_path / "imagenet" / split / c).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 255, (260, 300, 3), dtype=np.uint8)).save(
                    tmp_path / "imagenet" / split / c / f"{i}.JPEG")
    cfg = StudentTrainConfig.preset_config("paper", data_root=str(tmp_path / "imagenet"), max_steps=1,
                                           stage1_epochs=1, stage2_epochs=1, stage1_batch_size=2, stage2_batch_size=2,
                                           eval_length=2, workers=0, device="cpu", out=str(tmp_path / "run"))
    assert (cfg.bottleneck(256).channels, cfg.image_size, cfg.stage1_lr, cfg.stage2_batch_size) == (24, 224, 1e-3, 2)
    torch.manual_seed(0)
    student, meta = train_student(cfg, build_teacher("paper").eval(), progress=False, final_eval=True)
    assert meta["val"]["n"] == 4 and meta["val"]["kb_mean"] > 0
    assert student.encode(torch.rand(1, 3, 224, 224)).shape == (1, 24, 55, 55)
    assert (tmp_path / "run" / "student.pt").is_file() and (tmp_path / "run" / "stage2-last.pt").is_file()


def test_torchrun_trains_a_task_student_and_only_rank_0_reports(tmp_path):
    """`torchrun --nproc_per_node 2 -m minist train-task …` (gloo): DDP task training, sharded eval, one report."""
    from minist import pretrained
    from minist.utils import data_dir
    if not (data_dir() / pretrained.TASK_TEACHER_FILE.format(task="segmentation")).is_file():
        pytest.skip("no shipped segmentation task teacher")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                        "127.0.0.1", "--master_port", str(_free_port()), "-m", "minist", "train-task", "--task",
                        "segmentation", "--beta", "0.32", "--max-steps", "2", "--train-length", "16", "--batch-size",
                        "4", "--val-length", "8", "--eval-limit", "8", "--out", str(tmp_path)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert r.stdout.count("segmentation: miou") == 1          # logging from rank 0 only
    assert (tmp_path / "task_student_mini_segmentation.pt").is_file()
    assert (tmp_path / "segmentation-student-beta0.32-stage2-last.pt").is_file()
