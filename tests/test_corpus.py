"""The spam classifier through the real CLI: `portcullis corpus train` on a fixed 70% of
the development corpus, `corpus eval --json` on the other 30%, which it never saw; and
`corpus cross-validate` on splits that hold out whole sources and newer mail."""

import hashlib
import json
from pathlib import Path

from peers import Gateway

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "spamassassin-dev"
KEYS = {"ham", "spam", "false_positives", "false_negatives", "precision", "recall", "fp_rate",
        "msgs_per_sec"}
# Floors of the held-out splits, a little below what was measured when they were set
# (source seed 1: fp 1.49 %, recall 93.4 %; time: fp 0 %, recall 77.2 %; random with a
# fifth of the training spam: fp 0.04 %, recall 75.0 %).
SOURCE_MAX_FP, SOURCE_MIN_RECALL = 0.02, 0.92
TIME_MAX_FP, TIME_MIN_RECALL = 0.005, 0.74
THIN_MAX_FP, THIN_MIN_RECALL = 0.005, 0.70


def split(kind, dest):
    """Links a deterministic 70% of CORPUS/kind under dest/train/kind and the rest under
    dest/test/kind (by a hash of the file name, so the split never depends on order)."""
    train, test = dest / "train" / kind, dest / "test" / kind
    train.mkdir(parents=True)
    test.mkdir(parents=True)
    for path in sorted((CORPUS / kind).iterdir()):
        bucket = int(hashlib.sha256(path.name.encode()).hexdigest(), 16) % 10
        (train if bucket < 7 else test).joinpath(path.name).symlink_to(path)
    return train, test


def evaluate(gw, test_ham, test_spam):
    out = gw.cli("corpus", "eval", "--ham", str(test_ham), "--spam", str(test_spam), "--json")
    result = json.loads(out.stdout)
    assert set(result) == KEYS, result
    return result


def test_train_then_eval_on_unseen_mail(tmp_path):
    if not CORPUS.is_dir():
        raise RuntimeError(f"{CORPUS} is missing: the corpus tests need ../shared/corpus")
    train_ham, test_ham = split("ham", tmp_path / "corpus")
    train_spam, test_spam = split("spam", tmp_path / "corpus")
    gw = Gateway(tmp_path / "gw")

    # Untrained: the classifier says nothing, and heuristics alone catch little.
    untrained = evaluate(gw, test_ham, test_spam)
    assert untrained["ham"] == len(list(test_ham.iterdir()))
    assert untrained["spam"] == len(list(test_spam.iterdir()))
    assert untrained["recall"] < 0.5, untrained
    assert untrained["fp_rate"] < 0.005, untrained

    out = gw.cli("corpus", "train", "--ham", str(train_ham), "--spam", str(train_spam))
    trained_ham = len(list(train_ham.iterdir()))
    trained_spam = len(list(train_spam.iterdir()))
    assert f"trained {trained_ham} ham and {trained_spam} spam" in out.stdout, out.stdout
    assert f"model: {trained_ham} ham, {trained_spam} spam" in out.stdout, out.stdout

    result = evaluate(gw, test_ham, test_spam)
    assert result["fp_rate"] < 0.005, result
    assert result["recall"] > 0.95, result
    assert result["precision"] > 0.95, result
    assert result["msgs_per_sec"] > 0, result
    assert result["false_positives"] == round(result["fp_rate"] * result["ham"])

    # The text report and --list name what went wrong, with the findings.
    out = gw.cli("corpus", "eval", "--ham", str(test_ham), "--spam", str(test_spam), "--list")
    assert "recall" in out.stdout and "messages/s" in out.stdout
    assert out.stdout.count("false negative:") == result["false_negatives"]


def test_gtube_and_mbox_line(tmp_path):
    ham, spam = tmp_path / "ham", tmp_path / "spam"
    ham.mkdir()
    spam.mkdir()
    (spam / "gtube.eml").write_bytes(
        b"From someone@example.com  Mon Nov 23 10:00:00 2026\n"
        b"From: a@example.com\nTo: b@example.org\nSubject: test\n"
        b"Date: Mon, 23 Nov 2026 10:00:00 +0000\nMessage-ID: <1@example.com>\n\n"
        b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\n")
    (ham / "plain.eml").write_bytes(
        b"From: a@example.com\nTo: b@example.org\nSubject: lunch\n"
        b"Date: Mon, 23 Nov 2026 10:00:00 +0000\nMessage-ID: <2@example.com>\n\nNoon?\n")
    (ham / ".hidden").write_bytes(b"not a message")
    gw = Gateway(tmp_path / "gw")
    result = evaluate(gw, ham, spam)
    assert (result["ham"], result["spam"]) == (1, 1)
    assert (result["false_positives"], result["false_negatives"]) == (0, 0)
    # Too little training: said so, and the classifier stays off.
    out = gw.cli("corpus", "train", "--ham", str(ham), "--spam", str(spam))
    assert "stays off" in out.stdout
    out = gw.cli("corpus", "eval", "--ham", str(ham), "--spam", str(spam))
    assert "not enough training" in out.stderr


def cross_validate(gw, *args):
    out = gw.cli("corpus", "cross-validate", "--ham", str(CORPUS / "ham"), "--spam",
                 str(CORPUS / "spam"), "--json", *args)
    return json.loads(out.stdout)


def test_judges_mail_unlike_its_training(tmp_path):
    """Regression floors for mail the model was not trained on: whole lists and sender
    domains held out (--split source), and newer mail judged by a model of older mail
    (--split time). The floors are a little below what was measured when they were set
    (docs/filtering.md); a change that falls through them generalises worse."""
    if not CORPUS.is_dir():
        raise RuntimeError(f"{CORPUS} is missing: the corpus tests need ../shared/corpus")
    gw = Gateway(tmp_path / "gw")

    by_source = cross_validate(gw, "--split", "source", "--folds", "5", "--seed", "1", "--list")
    assert by_source["split"] == "source"
    assert (by_source["ham"], by_source["spam"]) == (2625, 500), by_source
    assert by_source["fp_rate"] < SOURCE_MAX_FP, by_source
    assert by_source["recall"] > SOURCE_MIN_RECALL, by_source
    # Every misjudged file is named, with its heaviest findings.
    mistakes = by_source["mistakes"]
    assert len(mistakes) == by_source["false_positives"] + by_source["false_negatives"]
    for m in mistakes:
        assert Path(m["path"]).is_file(), m
        assert m["kind"] == ("false_negative" if m["class"] == "spam" else "false_positive")
        assert 0 < len(m["findings"]) <= 5, m
        assert {"name", "score", "detail"} <= set(m["findings"][0]), m

    by_time = cross_validate(gw, "--split", "time", "--folds", "5")
    assert len(by_time["folds"]) == 4, by_time
    # The oldest fifth is never judged: it is only trained on.
    assert by_time["ham"] == 2625 - 525 and by_time["spam"] == 400, by_time
    assert by_time["fp_rate"] < TIME_MAX_FP, by_time
    assert by_time["recall"] > TIME_MIN_RECALL, by_time

    # Unbalanced training (a fifth of the spam) still keeps false positives down.
    thin = cross_validate(gw, "--split", "random", "--train-spam", "20")
    assert thin["train_spam"] == 20
    assert thin["fp_rate"] < THIN_MAX_FP, thin
    assert thin["recall"] > THIN_MIN_RECALL, thin
