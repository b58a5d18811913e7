"""The test-split study (minist test-study): scores on images no choice saw, resumes, and refuses mixed sets."""

import json

import pytest

from minist import rd
from minist.data.synth import cached
from minist.experiments import test_study


@pytest.fixture
def tiny_test(monkeypatch):
    """A 6-image test split and one JPEG quality, so a whole run takes seconds."""
    monkeypatch.setattr(test_study, "mini_test_set", lambda limit=None: cached("test", "classification",
                                                                              test_length=6))
    monkeypatch.setattr(test_study, "JPEG_QUALITIES", (10,))
    return cached("test", "classification", test_length=6)


def test_run_scores_each_point_once_and_collect_writes_one_file(tmp_path, tiny_test, capsys):
    points = test_study.run(tmp_path / "t", methods=("teacher", "jpeg"))
    assert sorted(p["method"] for p in points) == ["jpeg", "teacher"]
    assert all(p["n"] == 6 and p["test_sha256"] == tiny_test.digest() for p in points)
    for p in points:
        hits = rd.unpack_correct(p["correct_bits"], 6)
        assert p["accuracy"] == pytest.approx(100 * hits.mean())
        assert p["ci95"][0] <= p["accuracy"] <= p["ci95"][1]
    assert "[1/2] teacher" in capsys.readouterr().out
    again = test_study.run(tmp_path / "t", methods=("teacher", "jpeg"))        # resumed: nothing scored again
    assert capsys.readouterr().out == "" and again == points
    dest = test_study.collect(tmp_path / "t", tmp_path / "r.json")
    doc = json.loads(dest.read_text())
    assert doc["split"] == "test" and doc["n"] == 6 and doc["test_sha256"] == tiny_test.digest()
    assert [p["method"] for p in doc["points"]] == ["jpeg"] and "test_sha256" not in doc["points"][0]
    assert doc["teacher_accuracy"] == next(p for p in points if p["method"] == "teacher")["accuracy"]


def test_collect_refuses_points_from_another_image_set_and_a_missing_teacher(tmp_path, tiny_test):
    out = tmp_path / "t"
    with pytest.raises(FileNotFoundError, match="no teacher point"):
        test_study.collect(out, tmp_path / "r.json")
    test_study.run(out, methods=("teacher",))
    stray = dict(json.loads((out / "points" / "teacher.json").read_text()), method="jpeg", value=5, n=5)
    (out / "points" / "jpeg-5.json").write_text(json.dumps(stray))
    with pytest.raises(ValueError, match="different image sets"):
        test_study.collect(out, tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists()


def test_unknown_methods_are_named():
    with pytest.raises(ValueError, match="unknown method.*'cr-bq'"):
        test_study.plan(("teacher", "cr-bq"))
    assert ("teacher", None) in test_study.plan(("teacher",)) and len(test_study.plan(("teacher",))) == 1
