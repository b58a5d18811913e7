"""The ceiling ablation's training arms: the stage-2 arms share the base arm's stage 1 exactly, a stage-1 change
is refused on resume, and the collected file pairs every arm with the base arm on the same images."""

import json
import shutil

import pytest
import torch

from minist import checkpoint, pretrained
from minist.experiments import ceiling
from minist.recipes import train_student


@pytest.fixture(scope="module")
def arms(tmp_path_factory):
    out = tmp_path_factory.mktemp("ceiling")
    ceiling.run(out, ["base", "stage2-ce-only"], quick=True, progress=False)
    return out


def _state(path):
    return checkpoint.load(path, kind="student")["state_dict"]


def test_a_stage2_arm_starts_from_the_base_arms_stage1_and_differs_in_stage2_alone(arms):
    base, arm = _state(arms / "base" / "stage1.pt"), _state(arms / "stage2-ce-only" / "stage1.pt")
    assert base.keys() == arm.keys() and all(torch.equal(base[k], arm[k]) for k in base)
    final_base, final_arm = _state(arms / "base" / "student.pt"), _state(arms / "stage2-ce-only" / "student.pt")
    changed = {k for k in final_base if not torch.equal(final_base[k], final_arm[k])}
    assert changed and all(k.startswith("decoder.") for k in changed), changed     # stage 2 trains the decoder


def test_a_finished_stage1_is_not_resumed_under_another_stage1_recipe(arms, tmp_path):
    folder = tmp_path / "other"
    folder.mkdir()
    shutil.copyfile(arms / "base" / "stage1-last.pt", folder / "stage1-last.pt")
    cfg = ceiling.config_for(ceiling.ARMS[0], tmp_path, quick=True)
    cfg.out, cfg.stage1_lr = str(folder), 1e-4
    with pytest.raises(ValueError, match="different training config"):
        train_student(cfg, pretrained.teacher("mini"), resume=True, progress=False)


def test_collect_pairs_every_arm_with_the_base_arm(arms, tmp_path):
    doc = json.loads(ceiling.collect(arms, dest=tmp_path / "r.json").read_text())
    by = {a["arm"]: a for a in doc["arms"]}
    assert list(by) == ["base", "stage2-ce-only"] and by["base"]["versus_base"] is None
    paired = by["stage2-ce-only"]["versus_base"]
    assert paired["n"] == doc["n"] == 40
    assert paired["difference_pt"] == pytest.approx(by["stage2-ce-only"]["accuracy"] - by["base"]["accuracy"])
    table = ceiling.markdown(doc)
    assert table.count("\n") == 4 and "| stage2-ce-only |" in table


def test_collect_needs_the_base_arm_and_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="minist ceiling"):
        ceiling.collect(tmp_path, dest=tmp_path / "r.json")
    with pytest.raises(ValueError, match="unknown arm"):
        ceiling.run(tmp_path, ["base", "wider"], quick=True)


def test_the_budget_arms_are_scored_once_on_the_test_split_against_the_teacher(arms, tmp_path, monkeypatch):
    from minist.data.synth import cached
    from minist.experiments import test_study
    tiny = lambda limit=None: cached("test", "classification", test_length=6)     # noqa: E731
    monkeypatch.setattr(test_study, "mini_test_set", tiny)
    monkeypatch.setattr(test_study, "JPEG_QUALITIES", (1, 50))
    test_study.run(tmp_path / "t", methods=("teacher", "jpeg"), progress=False)
    shipped = json.loads(test_study.collect(tmp_path / "t", tmp_path / "t.json").read_text())
    monkeypatch.setattr(ceiling, "mini_test_set", tiny)
    monkeypatch.setattr(ceiling.pretrained, "test_results", lambda: shipped)
    (arms / "epochs-16+4").mkdir(exist_ok=True)
    shutil.copyfile(arms / "base" / "student.pt", arms / "epochs-16+4" / "student.pt")
    [point] = ceiling.score_on_test(arms, names=("epochs-16+4",), progress=False)
    assert point["n"] == 6 and point["method"] == "entropic-8+2" and point["value"] == ceiling.BETA
    assert ceiling.score_on_test(arms, names=("epochs-16+4",), progress=False) == [point]      # kept, not redone
    doc = json.loads(ceiling.collect(arms, dest=tmp_path / "r.json").read_text())
    assert doc["test"]["points"][0]["versus_teacher"]["n"] == 6
    assert [r["method"] for r in doc["test"]["reach"]] == ["entropic-8+2"]
    assert "| epochs-16+4 | 0.02 |" in ceiling.test_markdown(doc)
    monkeypatch.setattr(ceiling.pretrained, "test_results", lambda: {**shipped, "test_sha256": "another"})
    (arms / "epochs-16+4" / "test.json").unlink()
    with pytest.raises(ValueError, match="another test split"):
        ceiling.score_on_test(arms, names=("epochs-16+4",), progress=False)
    shutil.rmtree(arms / "epochs-16+4")


def test_collect_keeps_the_arms_of_an_earlier_file_that_out_lacks(arms, tmp_path):
    """A later session's ``out`` holds only the arm it trained: the table keeps the others, scored on the same
    images, and recomputes every paired number against the kept base arm."""
    dest = tmp_path / "r.json"
    ceiling.collect(arms, dest=dest)
    later = tmp_path / "later"
    (later / "seed-1").mkdir(parents=True)
    shutil.copyfile(arms / "stage2-ce-only" / "student.pt", later / "seed-1" / "student.pt")
    doc = json.loads(ceiling.collect(later, dest=dest).read_text())
    by = {a["arm"]: a for a in doc["arms"]}
    assert list(by) == ["base", "seed-1", "stage2-ce-only"]
    assert by["seed-1"]["versus_base"] == by["stage2-ce-only"]["versus_base"]
    other = json.loads(dest.read_text())
    other["arms"][1]["val_sha256"] = "0" * 64                   # an arm scored on another val set is refused
    dest.write_text(json.dumps(other))
    shutil.rmtree(later / "seed-1")
    with pytest.raises(ValueError, match="different val sets"):
        ceiling.collect(later, dest=dest)


def test_the_seed_spread_is_the_sd_of_the_base_recipes_runs_at_equal_bytes():
    arm = lambda name, d, kb: {"arm": name, "versus_per_beta_curve_pt": d, "kb_mean": kb, "accuracy": 88.0}  # noqa: E731
    doc = {"arms": [arm("base", -0.12, 0.49), arm("seed-1", 0.83, 0.40), arm("decoder-2x", 3.0, 0.47),
                    arm("seed-2", None, 0.05)]}          # a run outside the curve's bytes has no value there
    spread = ceiling.seed_spread(doc)
    assert spread["arms"] == ["base", "seed-1"]
    assert spread["sd_pt"] == pytest.approx(0.6718, abs=1e-4) and spread["mean_pt"] == pytest.approx(0.355)
    assert "sd 0.67 pt" in ceiling.seed_text(spread)
    assert ceiling.seed_spread({"arms": doc["arms"][:1]}) is None


def test_the_rounding_ablation_pairs_a_student_as_sent_with_itself_unrounded():
    """``rounding_ablation``: its "as sent" accuracy is the student's at real bytes (rANS, batch 1) on the same
    images, and its paired difference is the unrounded accuracy minus that one."""
    from minist.config import mini_val_set
    from minist.evaluate import evaluate_student

    [row] = ceiling.rounding_ablation(betas=(0.08,), variable_betas=(), limit=40)
    real = evaluate_student(pretrained.student("mini", beta=0.08), mini_val_set(40))
    assert row["n"] == 40
    assert row["sent"] == pytest.approx(real["accuracy"])
    assert row["paired"]["difference_pt"] == pytest.approx(row["free"] - row["sent"])
