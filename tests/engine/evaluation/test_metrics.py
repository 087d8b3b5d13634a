"""The segmentation metric: hand-computed cases, agreement with the official Cityscapes evaluation on the real
frame, and distributed evaluation (2 gloo processes) equal to one process."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

from engine.evaluation.metrics import SegmentationMetric

GT_LABEL_IDS = "cityscapes-sample/gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png"
NAN = float("nan")


def _same(a: list[float], b: list[float], tol: float = 1e-12) -> bool:
    """Equal lists of floats, NaN equal to NaN."""
    return len(a) == len(b) and all((math.isnan(x) and math.isnan(y)) or abs(x - y) <= tol for x, y in zip(a, b))


def test_perfect_prediction_and_absent_class() -> None:
    metric = SegmentationMetric(3)
    target = np.array([[0, 0, 1], [1, 1, 0]])
    metric.update(target, target)
    scores = metric.compute()
    assert scores["miou"] == 1.0 and scores["pixel_accuracy"] == 1.0 and scores["mean_accuracy"] == 1.0
    assert _same(scores["iou"], [1.0, 1.0, NAN])
    assert scores["confusion"] == [[3, 0, 0], [0, 3, 0], [0, 0, 0]]


def test_hand_computed_scores() -> None:
    metric = SegmentationMetric(4)
    target = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    pred = torch.tensor([0, 0, 1, 1, 2, 2, 2, 0])
    metric.update(pred, target)
    scores = metric.compute()
    # class 0: tp 2, fn 1, fp 1 -> 2/4; class 1: tp 1, fn 1, fp 1 -> 1/3; class 2: tp 2, fn 1, fp 1 -> 2/4
    assert _same(scores["iou"], [0.5, 1 / 3, 0.5, NAN])
    assert scores["miou"] == pytest.approx((0.5 + 1 / 3 + 0.5) / 3, abs=1e-12)
    assert scores["pixel_accuracy"] == pytest.approx(5 / 8)
    assert scores["mean_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)


def test_predicted_but_absent_class_scores_zero() -> None:
    metric = SegmentationMetric(3)
    metric.update(np.array([2, 2]), np.array([0, 0]))
    assert _same(metric.compute()["iou"], [0.0, NAN, 0.0])


def test_ignore_pixels_are_skipped() -> None:
    metric = SegmentationMetric(2, ignore_index=255)
    metric.update(np.array([0, 1, 1, 0]), np.array([0, 255, 255, 1]))
    assert metric.compute()["confusion"] == [[1, 0], [1, 0]]


def test_numpy_torch_and_batched_inputs_agree() -> None:
    rng = np.random.default_rng(0)
    target = rng.integers(0, 5, size=(3, 16, 20))
    target[:, :2] = 255
    pred = rng.integers(0, 5, size=(3, 16, 20)).astype(np.uint8)
    batched, per_image, as_torch = SegmentationMetric(5), SegmentationMetric(5), SegmentationMetric(5)
    batched.update(pred, target)
    for p, t in zip(pred, target):
        per_image.update(p, t)
    as_torch.update(torch.from_numpy(pred).long(), torch.from_numpy(target))
    assert batched.compute() == per_image.compute() == as_torch.compute()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensors_count_on_the_device() -> None:
    target = torch.randint(0, 4, (2, 8, 8))
    pred = torch.randint(0, 4, (2, 8, 8))
    on_gpu, on_cpu = SegmentationMetric(4), SegmentationMetric(4)
    on_gpu.update(pred.cuda(), target.cuda())
    on_cpu.update(pred, target)
    assert on_gpu.confusion.is_cuda and on_gpu.compute() == on_cpu.compute()


def test_bad_values_raise() -> None:
    metric = SegmentationMetric(3)
    with pytest.raises(ValueError, match=r"prediction holds value\(s\) \[7\]"):
        metric.update(np.array([0, 7]), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"target holds value\(s\) \[-1, 3\]"):
        metric.update(np.array([0, 1, 2]), np.array([3, -1, 255]))
    with pytest.raises(ValueError, match="shape"):
        metric.update(np.zeros((2, 3), dtype=int), np.zeros((3, 2), dtype=int))
    with pytest.raises(TypeError, match="argmax"):
        metric.update(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    assert metric.compute()["confusion"] == [[0] * 3] * 3


def test_merge_and_reset() -> None:
    a, b, both = SegmentationMetric(3), SegmentationMetric(3), SegmentationMetric(3)
    a.update(np.array([0, 1]), np.array([0, 2]))
    b.update(np.array([2, 2]), np.array([2, 1]))
    both.update(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 1]))
    assert a.merge(b).compute() == both.compute()
    with pytest.raises(ValueError, match="cannot merge"):
        a.merge(SegmentationMetric(4))
    a.reset()
    assert a.compute()["confusion"] == [[0] * 3] * 3 and math.isnan(a.compute()["miou"])


def test_all_reduce_without_process_group_is_a_no_op() -> None:
    metric = SegmentationMetric(2)
    metric.update(np.array([0, 1]), np.array([0, 0]))
    assert metric.all_reduce().compute() == SegmentationMetric(2).merge(metric).compute()


# The official Cityscapes evaluation on perturbed predictions of the real frame.

def _label_tables() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """labelId -> trainId lookup (255 for ignored ids), trainId -> labelId, and the 19 class names."""
    from cityscapesscripts.helpers.labels import labels, trainId2label
    to_train = np.full(256, 255, dtype=np.uint8)
    for label in labels:
        if label.id >= 0 and not label.ignoreInEval:
            to_train[label.id] = label.trainId
    to_id = np.array([trainId2label[t].id for t in range(19)], dtype=np.uint8)
    return to_train, to_id, [trainId2label[t].name for t in range(19)]


def _perturbed(train_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Predictions (trainIds 0..18 everywhere) made from the ground truth by seeded perturbations."""
    rng = np.random.default_rng(1234)
    filled = np.where(train_ids == 255, rng.integers(0, 19, train_ids.shape), train_ids)
    blocks = filled.copy()
    for _ in range(40):
        y, x = rng.integers(0, train_ids.shape[0] - 16), rng.integers(0, train_ids.shape[1] - 16)
        blocks[y:y + rng.integers(2, 16), x:x + rng.integers(2, 16)] = rng.integers(0, 19)
    noisy = np.where(rng.random(train_ids.shape) < 0.3, rng.integers(0, 19, train_ids.shape), filled)
    return {"filled": filled, "blocks": blocks, "shifted": np.roll(filled, (5, -9), axis=(0, 1)),
            "constant_road": np.zeros_like(filled), "constant_train": np.full_like(filled, 16), "noisy": noisy}


def _cityscapes_scores(pred_png: Path, gt_png: Path, export_dir: Path) -> dict:
    """Run evalPixelLevelSemanticLabeling in-process on one pair, with a private copy of its module arguments."""
    import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as ev
    args = copy.copy(ev.args)
    args.evalInstLevelScore = False
    args.evalPixelAccuracy = False
    args.JSONOutput = False
    args.quiet = True
    args.exportFile = str(export_dir / "resultPixelLevelSemanticLabeling.json")
    try:
        return ev.evaluateImgLists([str(pred_png)], [str(gt_png)], args)
    except SystemExit as exit_:
        pytest.fail(f"cityscapesscripts' evaluation of {pred_png} against {gt_png} exited: {exit_}")


def test_equals_cityscapesscripts_on_the_real_frame(shared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gt_png = shared(GT_LABEL_IDS)
    monkeypatch.setenv("CITYSCAPES_EXPORT_DIR", str(tmp_path))
    to_train, to_id, names = _label_tables()
    train_ids = to_train[np.asarray(Image.open(gt_png))]
    worst = 0.0
    for name, pred in _perturbed(train_ids).items():
        pred_png = tmp_path / f"{name}_pred_labelIds.png"
        Image.fromarray(to_id[pred]).save(pred_png)
        official = _cityscapes_scores(pred_png, gt_png, tmp_path)
        metric = SegmentationMetric(19)
        metric.update(torch.from_numpy(pred), torch.from_numpy(train_ids))
        ours = metric.compute()
        theirs = [official["classScores"][n] for n in names]
        assert _same(ours["iou"], theirs, tol=1e-6), (name, ours["iou"], theirs)
        assert ours["miou"] == pytest.approx(official["averageScoreClasses"], abs=1e-6), name
        worst = max([worst, abs(ours["miou"] - official["averageScoreClasses"])]
                    + [abs(a - b) for a, b in zip(ours["iou"], theirs) if not math.isnan(a)])
    assert worst <= 1e-6
    assert not list(tmp_path.glob("*.json"))


# Distributed evaluation: 2 gloo processes, each with half of the data.

def _data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    target = torch.randint(0, 6, (4, 24, 32), generator=generator)
    target[:, :, :3] = 255
    return torch.randint(0, 6, (4, 24, 32), generator=generator), target


def _rank_main(rank: int, init_method: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=2)
    try:
        pred, target = _data()
        metric = SegmentationMetric(6)
        metric.update(pred[rank::2], target[rank::2])
        scores = metric.all_reduce().compute()
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(scores))
    finally:
        dist.destroy_process_group()


def test_distributed_equals_single_process(tmp_path: Path) -> None:
    init_method = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_rank_main, args=(init_method, str(tmp_path)), nprocs=2, join=True)
    single = SegmentationMetric(6)
    single.update(*_data())
    expected = json.loads(json.dumps(single.compute()))
    for rank in range(2):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == expected
