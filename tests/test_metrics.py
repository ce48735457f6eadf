"""Metrics against hand-worked cases."""
import numpy as np
import pytest
import torch

from ntbench.eval.metrics import caption_metrics, fid_kid, segmentation_metrics


def masks_case():
    a = np.zeros((4, 4), bool)
    a[0, :4] = True                      # 4 px
    b = np.zeros((4, 4), bool)
    b[0, 2:] = True
    b[1, 2:] = True                      # 4 px, 2 shared with a: I = 2, U = 6
    empty = np.zeros((4, 4), bool)
    c = np.zeros((4, 4), bool)
    c[3, :3] = True                      # 3 px, predicted nothing: I = 0, U = 3
    return [a, empty, empty], [b, empty, c]


def test_segmentation_both_conventions_by_hand():
    preds, gts = masks_case()
    m = segmentation_metrics(preds, gts)
    # paper (reference code): empty/empty counts 0
    assert m["paper_mIoU"] == pytest.approx((2 / 6 + 0 + 0) / 3)
    assert m["paper_oIoU"] == pytest.approx(2 / 9)
    assert m["paper_mDice"] == pytest.approx((2 * 2 / 8) / 3)
    assert m["paper_Pr@0.5"] == 0.0
    # LISA: empty/empty counts 1, eps in the denominator
    assert m["lisa_gIoU"] == pytest.approx((2 / (6 + 1e-5) + 1.0 + 0.0) / 3)
    assert m["lisa_cIoU"] == pytest.approx(2 / 9)


def test_precision_at_thresholds():
    full = np.ones((2, 2), bool)
    three = full.copy()
    three[0, 0] = False
    m = segmentation_metrics([full, three], [full, full])  # IoU 1.0 and 0.75
    assert m["paper_Pr@0.7"] == 1.0 and m["paper_Pr@0.8"] == 0.5 and m["paper_Pr@0.9"] == 0.5


def test_bleu4_by_hand_and_identity():
    # p1..p4 = 4/5, 3/4, 2/3, 1/2, brevity penalty 1: BLEU-4 = (0.2)^(1/4)
    m = caption_metrics({"1": ["a b c d f"]}, {"1": "a b c d e"}, meteor=False)
    assert m["BLEU-4"] == pytest.approx(0.2 ** 0.25, rel=1e-6)
    same = caption_metrics({"1": ["a red circle on grey"], "2": ["two blue squares"]},
                           {"1": "A red circle on grey.", "2": "two blue squares"}, meteor=False)
    assert same["BLEU-4"] == pytest.approx(1.0, rel=1e-6) and same["ROUGE-L"] == pytest.approx(1.0)


def test_cider_matches_pycocoevalcap():
    from pycocoevalcap.cider.cider import Cider
    refs = {"1": ["a red circle on grey"], "2": ["two blue squares"], "3": ["a small green star"]}
    hyps = {"1": "a red circle", "2": "two blue squares on black", "3": "a green star"}
    want = Cider().compute_score(refs, {k: [v] for k, v in hyps.items()})[0]
    assert caption_metrics(refs, hyps, meteor=False)["CIDEr"] == pytest.approx(want)


def test_meteor_without_java_is_reported_missing(monkeypatch):
    import shutil
    monkeypatch.setattr(shutil, "which", lambda name: None)
    m = caption_metrics({"1": ["a b"]}, {"1": "a b"})
    assert m["METEOR"] is None and "Java not found" in m["METEOR_note"]


def test_fid_self_zero_shifted_positive():
    g = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (64, 3, 8, 8), generator=g, dtype=torch.uint8)
    encode = lambda x: x.float().flatten(1)[:, :6] / 255  # noqa: E731
    assert abs(fid_kid(real, real, encode)["FID"]) < 1e-3
    shifted = fid_kid(real, (real // 2), encode)
    assert shifted["FID"] > 0.1 and shifted["KID"] > 0


def test_fid_keeps_no_reference_to_the_encoder():
    """The encode function closes over the evaluated model; after fid_kid nothing may hold it, or a
    process running many trials keeps every model alive (found at 7B shape: +27 GB per trial)."""
    import gc
    import weakref

    class Encoder:
        def __call__(self, x):
            return x.float().flatten(1)[:, :6] / 255

    g = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (16, 3, 8, 8), generator=g, dtype=torch.uint8)
    encode = Encoder()
    ref = weakref.ref(encode)
    fid_kid(real, real // 2, encode)
    del encode
    gc.collect()
    assert ref() is None


def test_answer_accuracy_compares_words_without_tags_case_or_punctuation():
    from ntbench.eval.evaluate import answer_accuracy, answer_words
    ref = "The yellow cross <OBJ-1> is closest to the top."
    assert answer_words(ref) == ["the", "yellow", "cross", "is", "closest", "to", "the", "top"]
    # the micro tokenizer decodes without tags and with its own spacing: the same answer
    assert answer_accuracy([ref], ["the yellow cross is closest to the top ."]) == 1.0
    counts = "There are two crosses: <OBJ-1> and <OBJ-2>."
    # another object, a wrong count, a truncated answer: 3 of 4 wrong (worked by hand)
    got = ["the yellow triangle is closest to the top.", "there is one cross : and .",
           "there are two crosses", "there are two crosses: and."]
    assert answer_accuracy([ref, counts, counts, counts], got) == 0.25
    assert np.isnan(answer_accuracy([], []))
