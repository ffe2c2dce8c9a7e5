"""The gate and the teacher's store: answers keyed by content, calls counted before they are sent,
budgets that bound calls made, a ledger that survives kills and torn writes."""

import json
import multiprocessing
import shutil

import numpy as np
import pytest

from pipeline.errors import ArtifactError, BudgetExceeded, TeacherChanged, TeacherError
from pipeline.params import QueriesParams
from pipeline.teacher.gate import QueryGate
from pipeline.teacher.inputs import TeacherInputs, pixels_key
from pipeline.teacher.outcomes import CallFailed, CallRefused, CallUnreachable
from pipeline.teacher.store import AnswerStore, identity_id

DIM = 8


def describe_pixels(images: np.ndarray, salt: int = 0) -> np.ndarray:
    """A deterministic stand-in teacher: a unit vector that depends on every pixel."""
    flat = images.reshape(len(images), -1).astype(np.float64)
    rng = np.random.default_rng(1234 + salt)
    d = flat @ rng.standard_normal((flat.shape[1], DIM))
    return (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)


class CountingTeacher:
    """A black box that records every image it receives (by its pixels' key)."""

    endpoint = "counting-teacher"

    def __init__(self, salt=0, remote=False, failures=()):
        self.seen: list[bytes] = []
        self.calls = 0
        self.salt, self.remote = salt, remote
        self.failures = list(failures)  # exceptions to raise on the next calls, in order

    def __call__(self, pixels):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        self.seen += [pixels_key(p) for p in pixels]
        return describe_pixels(np.asarray(pixels), self.salt)


def images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 6, 6), dtype=np.uint8)


def inputs(arr):
    return TeacherInputs(arr, [f"img-{i}" for i in range(len(arr))])


def queries(**kw):
    base = dict(
        store="unused", call_batch=3, extra_calls=0, timeout_s=5, retries=3, max_backoff_s=30, max_qps=0, verify=2
    )
    return QueriesParams(**{**base, **kw})


def gate(tmp_path, teacher=None, identity="a", **kw):
    teacher = teacher or CountingTeacher()
    store = AnswerStore(tmp_path / "store", {"kind": "test", "name": identity})
    return QueryGate(teacher, store, queries(**kw), DIM, sleep=lambda s: None), teacher


def ledger(g):
    return [json.loads(line) for line in g.store.ledger_path.read_text().splitlines()]


def test_every_call_is_on_the_ledger_before_and_after(tmp_path):
    g, t = gate(tmp_path)
    x = images(7)
    out, report = g.describe(inputs(x), "train", budget=7)
    assert np.allclose(out, describe_pixels(x)) and report.sent == 7 == report.spent
    events = [e["event"] for e in ledger(g)]
    assert events == ["send", "answered"] * 3  # batches of 3, 3, 1
    sends = [e for e in ledger(g) if e["event"] == "send"]
    assert [e["images"] for e in sends] == [3, 3, 1] and all(e["purpose"] == "train" for e in sends)
    assert t.calls == 3 and len(t.seen) == 7


def test_answers_follow_the_pixels_not_the_position(tmp_path):
    """A new split or order of the same images reuses their answers; another image is asked anew."""
    g, t = gate(tmp_path)
    x = images(6)
    g.describe(inputs(x), "test", budget=6)
    t.seen.clear()
    shuffled = x[[5, 3, 1, 0, 2, 4]]
    out, report = g.describe(inputs(shuffled), "test", budget=6)
    assert t.seen == [] and report.sent == 0
    assert np.array_equal(out, describe_pixels(shuffled))  # each row is its own image's answer
    changed = shuffled.copy()
    changed[0, 0, 0] ^= 1  # one pixel differs: a different input
    out, report = g.describe(inputs(changed), "test", budget=12)
    assert len(t.seen) == 1 and report.sent == 1
    assert np.allclose(out, describe_pixels(changed))


def test_never_sends_an_image_twice_even_from_another_process(tmp_path):
    g, t = gate(tmp_path)
    g.describe(inputs(images(4)), "train", budget=4)
    g2, t2 = gate(tmp_path)  # a new process: the same store on disk
    out, report = g2.describe(inputs(images(6)[[3, 2, 1, 0, 4, 5]][:5]), "train", budget=6)
    assert len(t2.seen) == 1 and report.stored_before == 4


def test_duplicate_images_in_a_request_are_sent_once(tmp_path):
    g, t = gate(tmp_path)
    x = images(3)
    dup = np.concatenate([x, x[:2]])
    out, report = g.describe(inputs(dup), "train", budget=3)
    assert len(t.seen) == 3 and report.unique == 3 and np.array_equal(out[3:], out[:2])


def test_lowering_and_raising_the_budget_sends_only_new_images(tmp_path):
    g, t = gate(tmp_path)
    x = images(10)
    g.describe(inputs(x), "train", budget=10)
    out, report = g.describe(inputs(x[:4]), "train", budget=4)  # a lower budget: no spurious refusal
    assert report.sent == 0 and report.spent == 4
    more = np.concatenate([x, images(5, seed=1)])
    _, report = g.describe(inputs(more), "train", budget=15)
    assert report.sent == 5 and len(t.seen) == 15


def test_refuses_past_the_budget_before_calling(tmp_path):
    g, t = gate(tmp_path)
    with pytest.raises(BudgetExceeded, match="train teacher budget is 4 images.*Nothing was sent"):
        g.describe(inputs(images(5)), "train", budget=4)
    assert t.calls == 0 and not g.store.ledger_path.exists()


def test_teachers_keep_their_own_stores_side_by_side(tmp_path):
    x = images(4)
    ga, ta = gate(tmp_path, CountingTeacher(salt=0), identity="A")
    a1, _ = ga.describe(inputs(x), "test", 4)
    gb, tb = gate(tmp_path, CountingTeacher(salt=1), identity="B")
    b, _ = gb.describe(inputs(x), "test", 4)
    assert len(tb.seen) == 4 and not np.allclose(a1, b)
    ga2, ta2 = gate(tmp_path, CountingTeacher(salt=0), identity="A")  # back to A: nothing asked
    a2, report = ga2.describe(inputs(x), "test", 4)
    assert ta2.calls == 0 and report.sent == 0 and np.array_equal(a1, a2)
    assert len(list((tmp_path / "store").iterdir())) == 2


def test_a_call_lost_to_a_kill_is_counted_and_blocks_paying_twice(tmp_path):
    g, _ = gate(tmp_path)
    x = images(6)
    g.describe(inputs(x[:3]), "train", budget=6)
    keys = [pixels_key(p) for p in x[3:]]
    with g.store.locked():
        g.store.begin(keys, "train")  # sent, then the process died before any outcome
    g2, t2 = gate(tmp_path)
    with pytest.raises(BudgetExceeded, match=r"3 of those images went in 1 call.*lost.*queries.extra_calls: 3") as e:
        g2.describe(inputs(x), "train", budget=6)
    assert "repeated" not in str(e.value)  # nothing was sent twice
    assert t2.calls == 0
    lost = [e for e in ledger(g2) if e["event"] == "lost"]
    assert len(lost) == 1 and "killed" in lost[0]["detail"]
    assert g2.store.summary("train")["images_lost"] == 3 and g2.store.summary("train")["images_spent"] == 6
    g3, t3 = gate(tmp_path, extra_calls=3)  # the user allows paying for them again
    out, report = g3.describe(inputs(x), "train", budget=6)
    assert len(t3.seen) == 3 and report.spent == 9 and np.allclose(out, describe_pixels(x))


def test_a_refusal_names_images_still_unanswered_once_and_repeated_sends_apart(tmp_path):
    """A failed call whose images a retry answered is not named as lost, but its repeated sends are
    counted (each for good); an image in two lost calls is named once as lost."""
    t = CountingTeacher(failures=[CallFailed("HTTP 500"), CallFailed("HTTP 500")])
    g, _ = gate(tmp_path, t, extra_calls=6)
    x = images(6)
    g.describe(inputs(x[:3]), "train", budget=3)  # failed twice, then answered by what the extra calls allow
    g2, t2 = gate(tmp_path)
    with pytest.raises(  # the request grows with the budget in a run: only extra calls help
        BudgetExceeded,
        match="9 already sent for these images and 3 more needed. Nothing was sent; 6 earlier send.s. repeated "
        r"images already sent \(paid again: a retry or a replacement\), and count against the budget for good. "
        "To send what is missing, allow it with queries.extra_calls: 6",
    ):
        g2.describe(inputs(x), "train", budget=6)
    keys = [pixels_key(p) for p in x[3:]]
    for _ in range(2):  # the same images sent twice, each time lost to a kill
        with g2.store.locked():
            g2.store.begin(keys, "train")
    g3, t3 = gate(tmp_path)
    with pytest.raises(
        BudgetExceeded,
        match=r"; 3 of those images went in 2 call\(s\) whose answers the store does not hold \(lost, see .*\); "
        r"9 earlier send.s. repeated images .*extra_calls: 12",
    ):
        g3.describe(inputs(x), "train", budget=6)
    assert t2.calls == t3.calls == 0


def test_answers_stored_before_a_kill_are_recovered_not_resent(tmp_path):
    g, _ = gate(tmp_path)
    x = images(3)
    keys = [pixels_key(p) for p in x]
    with g.store.locked():
        call = g.store.begin(keys, "train")
        g.store.answered(call, keys, describe_pixels(x), 0.1)
    lines = g.store.ledger_path.read_text().splitlines()
    g.store.ledger_path.write_text("\n".join(lines[:-1]) + "\n")  # killed before the outcome line
    g2, t2 = gate(tmp_path)
    out, report = g2.describe(inputs(x), "train", budget=3)
    assert t2.calls == 0 and report.spent == 3
    assert [e["detail"] for e in ledger(g2) if e["event"] == "answered"][-1].startswith("recovered")


def test_a_torn_ledger_line_is_repaired(tmp_path):
    g, _ = gate(tmp_path)
    g.describe(inputs(images(3)), "train", budget=6)
    with open(g.store.ledger_path, "ab") as f:
        f.write(b'{"event": "send", "call": "x", "purp')  # the write of the next send line was cut off
    g2, t2 = gate(tmp_path)
    _, report = g2.describe(inputs(images(6)), "train", budget=6)
    assert report.sent == 3 and t2.calls == 1
    entries = ledger(g2)  # every line parses again
    assert any(e["event"] == "repaired" for e in entries)


def test_refusals_are_retried_after_retry_after_and_not_counted(tmp_path):
    waits = []
    t = CountingTeacher(failures=[CallRefused("HTTP 429", retry_after=7.0), CallRefused("HTTP 503")])
    store = AnswerStore(tmp_path / "store", {"kind": "test"})
    g = QueryGate(t, store, queries(), DIM, sleep=waits.append)
    _, report = g.describe(inputs(images(2)), "train", budget=2)
    assert waits == [7.0, 1.0]  # Retry-After honoured, else backoff
    outcomes = [e["event"] for e in ledger(g) if e["event"] != "send"]
    assert outcomes == ["refused", "refused", "answered"] and report.spent == 2
    assert store.summary()["requests"] == 3  # every attempt reached the server and is on the ledger


def test_unreachable_server_gives_up_with_a_clear_error_and_counts_nothing(tmp_path):
    t = CountingTeacher(failures=[CallUnreachable("connection refused")] * 4)
    g, _ = gate(tmp_path, t, retries=3)
    with pytest.raises(TeacherError, match="cannot reach the teacher at counting-teacher.*is the server running"):
        g.describe(inputs(images(2)), "train", budget=2)
    assert g.store.summary()["requests"] == 0 and g.store.summary()["images_spent"] == 0


def test_a_failed_call_counts_and_is_resent_only_within_extra_calls(tmp_path):
    t = CountingTeacher(failures=[CallFailed("HTTP 500")])
    g, _ = gate(tmp_path, t)
    with pytest.raises(BudgetExceeded, match="1 call.*failed"):
        g.describe(inputs(images(2)), "train", budget=2)
    t2 = CountingTeacher(failures=[CallFailed("timed out")])
    g2, _ = gate(tmp_path / "b", t2, extra_calls=2)
    _, report = g2.describe(inputs(images(2)), "train", budget=2)
    assert report.spent == 4 and g2.store.summary()["images_failed"] == 2


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda d: d[:, :4], "answered 4-d descriptors, but teacher.dim is 8"),
        (lambda d: np.where(d > 0, np.nan, d), "NaN"),
        (lambda d: 3 * d, "not L2-normalised"),
        (lambda d: d[:1], r"answered \(1, 8\) for 2 images"),
    ],
)
def test_unusable_answers_are_refused_and_earlier_answers_kept(tmp_path, bad, message):
    g, _ = gate(tmp_path)
    x = images(4)
    g.describe(inputs(x[:2]), "train", budget=4)

    class Broken(CountingTeacher):
        def __call__(self, pixels):
            return bad(super().__call__(pixels))

    g2, _ = gate(tmp_path, Broken())
    with pytest.raises(TeacherError, match=message):
        g2.describe(inputs(x), "train", budget=4)
    assert len(g2.store) == 2  # the two answers from before are still there
    assert [e["event"] for e in ledger(g2)][-1] == "invalid"


def test_a_changed_teacher_behind_the_same_endpoint_is_detected(tmp_path):
    x = images(5)
    g, _ = gate(tmp_path, CountingTeacher(salt=0, remote=True))
    g.describe(inputs(x[:3]), "train", budget=5)
    g2, t2 = gate(tmp_path, CountingTeacher(salt=0, remote=True))  # the same model: two images re-asked
    g2.describe(inputs(x), "train", budget=5)
    assert t2.calls == 2 and [e["purpose"] for e in ledger(g2) if e["event"] == "send"][-2] == "verify"
    g3, t3 = gate(tmp_path, CountingTeacher(salt=1, remote=True))  # swapped behind the same identity
    with pytest.raises(TeacherChanged, match="answers 2 stored image.*differently.*answers are kept"):
        g3.describe(inputs(x), "train", budget=5)
    assert len(g3.store) == 5 and t3.calls == 1


def test_rate_limit_spaces_calls(tmp_path):
    now, waits = [100.0], []

    def sleep(s):  # a clock that moves only when the gate waits: calls themselves take no time
        waits.append(s)
        now[0] += s

    store = AnswerStore(tmp_path / "store", {"kind": "test"})
    g = QueryGate(CountingTeacher(), store, queries(max_qps=2, call_batch=1), DIM, sleep=sleep, clock=lambda: now[0])
    g.describe(inputs(images(3)), "train", budget=3)
    assert waits == [0.5, 0.5]  # 2 calls a second: the 2nd and 3rd wait half a second each


def test_verification_is_retried_like_any_call(tmp_path):
    x = images(5)
    g, _ = gate(tmp_path, CountingTeacher(remote=True))
    g.describe(inputs(x[:3]), "train", budget=5)
    busy = CountingTeacher(remote=True, failures=[CallRefused("HTTP 429", retry_after=2.0)])
    g2, _ = gate(tmp_path, busy)
    out, _ = g2.describe(inputs(x), "train", budget=5)
    assert np.allclose(out, describe_pixels(x))
    ids = [e["call"] for e in ledger(g2) if e["event"] == "send" and e["purpose"] == "verify"]
    outcome = {e["call"]: e["event"] for e in ledger(g2) if e["event"] != "send"}
    assert [outcome[i] for i in ids] == ["refused", "answered"]  # the 429, then the verification itself


def _describe_in_process(root, seed_images, out):
    store = AnswerStore(root, {"kind": "test"})
    t = CountingTeacher()
    g = QueryGate(t, store, queries(call_batch=2), DIM, sleep=lambda s: None)
    g.describe(inputs(seed_images), "train", budget=len(seed_images))
    out.put(len(t.seen))


def test_parallel_processes_share_the_store_without_sending_an_image_twice(tmp_path):
    """Two DVC experiments dumping at once: the store's lock makes the second reuse the first's answers."""
    x = images(40)
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_describe_in_process, args=(tmp_path / "store", x[i : i + 30], out)) for i in (0, 10)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    sent = sorted(out.get(timeout=60) for _ in procs)
    assert sum(sent) == 40  # 30 by the first, the 10 new ones by the second
    store = AnswerStore(tmp_path / "store", {"kind": "test"})
    assert len(store) == 40 and store.summary()["images_sent"] == 40


def test_a_request_whose_answers_are_all_stored_is_never_refused(tmp_path):
    """Even when earlier lost calls were paid for again (spent > budget), nothing to send is no refusal."""
    g, _ = gate(tmp_path)
    x = images(6)
    keys = [pixels_key(p) for p in x[3:]]
    with g.store.locked():
        g.store.begin(keys, "train")  # lost
    g2, _ = gate(tmp_path, extra_calls=3)
    g2.describe(inputs(x), "train", budget=6)
    assert g2.store.summary("train")["images_spent"] == 9
    for request, budget in ((x, 6), (x[3:], 3), (x[:2], 2)):  # the same, a smaller one, a lower budget
        g3, t3 = gate(tmp_path)
        out, report = g3.describe(inputs(request), "train", budget=budget)
        assert t3.calls == 0 and report.sent == 0 and np.allclose(out, describe_pixels(request))


def test_a_retry_never_takes_the_room_of_the_batches_after_it(tmp_path):
    """Budget 10 in batches of 3 with one failed call: the failed batch is not resent at the expense of
    the request's remaining images; the refusal says nothing more was sent, and how much to allow."""
    t = CountingTeacher(failures=[CallFailed("HTTP 500")])
    g, _ = gate(tmp_path, t)
    with pytest.raises(
        BudgetExceeded, match="3 already sent for these images and 10 more needed. Nothing more was sent"
    ):
        g.describe(inputs(images(10)), "train", budget=10)
    assert g.store.summary("train")["images_spent"] == 3 and len(g.store) == 0
    g2, t2 = gate(tmp_path, extra_calls=3)
    _, report = g2.describe(inputs(images(10)), "train", budget=10)
    assert report.spent == 13 and len(t2.seen) == 10


NEVER_THE_STORE = "never move the whole store"  # its ledger goes with it: the next run would pay again


def store_a(tmp_path, **kw):
    return AnswerStore(tmp_path / "store", {"kind": "test", "name": "a"}, **kw)


def refusing(monkeypatch, method: str, path):
    """``Path.<method>`` raises PermissionError for ``path``, as an unreadable file answers (root, in CI,
    may read anything)."""
    from pathlib import Path

    real = getattr(Path, method)

    def refused(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, method, refused)


def test_an_unreadable_answers_file_is_kept_a_damaged_one_moved_out_and_neither_paid_again(tmp_path, monkeypatch):
    """Each message names the one file to keep or move out, never the whole store, and following it pays
    for nothing twice."""
    from pipeline.teacher.store import decode_answers

    x = images(4)
    g, _ = gate(tmp_path)
    g.describe(inputs(x), "train", budget=4)
    answers = sorted((g.store.dir / "answers").glob("*.npz"))
    with monkeypatch.context() as m:
        refusing(m, "read_bytes", answers[0])
        with pytest.raises(
            ArtifactError, match=f"{answers[0].name} cannot be read .Permission denied.: give its.*keep"
        ):
            store_a(tmp_path)
    original = answers[0].read_bytes()
    flipped = bytearray(original)
    flipped[-4] ^= 0xFF  # the central directory's offset: once read by np.load from the disk, an OSError
    answers[0].write_bytes(bytes(flipped))
    with pytest.raises(ArtifactError, match=f"{answers[0].name} is damaged.*move that one file out.*{NEVER_THE_STORE}"):
        store_a(tmp_path)
    answers[0].write_bytes(original)
    folder_named_npz = answers[0].parent / "zz.npz"
    folder_named_npz.mkdir()
    with pytest.raises(ArtifactError, match="zz.npz is a folder, not an answers file: move it out of"):
        store_a(tmp_path)
    folder_named_npz.rmdir()

    damaged = len(decode_answers(original)[0])
    answers[0].write_bytes(b"not an npz")
    with pytest.raises(ArtifactError, match=f"{answers[0].name} is damaged.*move that one file out.*{NEVER_THE_STORE}"):
        store_a(tmp_path)
    answers[0].rename(tmp_path / "moved-out.npz")  # as told: the ledger still counts that call's images
    g2, t2 = gate(tmp_path)
    assert len(g2.store) == 4 - damaged
    with pytest.raises(
        BudgetExceeded,
        match=rf"{damaged} of those images went in 1 call.*answered but moved out.*extra_calls: {damaged}",
    ):
        g2.describe(inputs(x), "train", budget=4)
    assert t2.calls == 0

    folder = g.store.dir / "answers"
    shutil.move(folder, tmp_path / "answers-aside")
    folder.write_bytes(b"")  # a file where the answers' folder should be
    with pytest.raises(ArtifactError, match="answers is a file, not the folder of the store's answers: move that one"):
        store_a(tmp_path)


def test_answers_of_another_size_are_judged_by_the_teachers_dim_or_both_files_are_named(tmp_path):
    from pipeline.io import save_npz_atomic
    from pipeline.teacher.store import PACK

    def answers(folder, name, width, key=b"k"):
        save_npz_atomic(
            folder / "answers" / name,
            keys=np.array([key * 64], dtype="S64"),
            descriptors=np.ones((1, width), np.float32),
        )

    unsized = store_a(tmp_path)  # no dim known: the first file read sets the width, so both are named
    answers(unsized.dir, "1-good.npz", DIM, b"g")
    answers(unsized.dir, "0-foreign.npz", DIM + 1)
    with pytest.raises(
        ArtifactError,
        match=rf"1-good.npz holds \({DIM},\) descriptors where 0-foreign.npz holds \({DIM + 1},\): "
        "one of the two is another teacher's. Move out of the store the one whose size is not this teacher's",
    ):
        store_a(tmp_path)
    with pytest.raises(ArtifactError, match=rf"0-foreign.npz holds \({DIM + 1},\) descriptors, not \({DIM},\)"):
        store_a(tmp_path, dim=DIM)  # the teacher's dim known (a teacher built here: given apart from its identity)
    (unsized.dir / "answers" / "0-foreign.npz").unlink()
    sized = store_a(tmp_path, dim=DIM)
    assert sized.dir == unsized.dir and len(sized) == 1  # the dim is not part of the store's name
    served = AnswerStore(tmp_path / "store", {"kind": "test", "name": "d", "dim": DIM})  # its identity's dim
    answers(served.dir, "1-good.npz", DIM, b"g")
    answers(served.dir, "0-foreign.npz", DIM + 1)
    with pytest.raises(ArtifactError, match=rf"0-foreign.npz holds \({DIM + 1},\) descriptors, not \({DIM},\)"):
        AnswerStore(tmp_path / "store", {"kind": "test", "name": "d", "dim": DIM})

    (unsized.dir / PACK).unlink(missing_ok=True)  # a pack of another width (only a copy) is passed over
    save_npz_atomic(
        unsized.dir / PACK,
        files=np.array([b"1-good.npz"]),
        keys=np.array([b"g" * 64], dtype="S64"),
        descriptors=np.zeros((1, DIM + 1), np.float32),
        counts=np.array([1]),
    )
    assert store_a(tmp_path, dim=DIM).answers([b"g" * 64]).shape == (1, DIM)


def test_a_damaged_or_foreign_teacher_card_is_fixed_without_moving_the_store(tmp_path, monkeypatch):

    x = images(4)
    g, _ = gate(tmp_path)
    g.describe(inputs(x), "train", budget=4)
    card = g.store.dir / "teacher.json"
    with monkeypatch.context() as m:
        refusing(m, "read_text", card)
        with pytest.raises(ArtifactError, match="teacher.json cannot be read .Permission denied.: give its perm"):
            store_a(tmp_path)
    card.write_text("{torn")
    with pytest.raises(ArtifactError, match=f"teacher.json is damaged.*delete that one file.*{NEVER_THE_STORE}"):
        store_a(tmp_path)
    card.unlink()  # as told: written again from the identity that names the folder; answers and ledger kept
    reopened = store_a(tmp_path)
    assert len(reopened) == 4 and reopened.spent_on({pixels_key(p) for p in x}, "train") == 4
    assert json.loads(card.read_text()) == {"kind": "test", "name": "a"}

    other = {"kind": "test", "name": "b"}  # a folder renamed or copied from another teacher's, or an edited card
    card.write_text(json.dumps(other))
    own = tmp_path / "store" / f"test-{identity_id(other)}"
    with pytest.raises(ArtifactError, match=f"describes another teacher.*rename it back to {own}, its own name.*Only"):
        store_a(tmp_path)
    own.mkdir()
    with pytest.raises(
        ArtifactError, match=f"{own} exists too, so this folder is likely a copy of it: keep both until.*Lose no ledger"
    ):
        store_a(tmp_path)
    card.unlink()
    card.mkdir()
    with pytest.raises(ArtifactError, match="teacher.json is a folder: move it out of"):
        store_a(tmp_path)


def test_the_store_of_a_teacher_built_here_checks_answers_against_its_cards_dim(tmp_path):
    """Its identity is its weights' hash alone (the store's name must not change): the dim comes from its card."""
    from pipeline.io import save_npz_atomic
    from pipeline.teacher.blackbox import open_store

    card = {"kind": "train", "weights_sha256": "0" * 64, "dim": DIM}
    store = open_store(card, queries(store=str(tmp_path / "store")))
    assert store.dir.name == f"train-{identity_id({'kind': 'train', 'weights_sha256': '0' * 64})}"
    save_npz_atomic(
        store.dir / "answers" / "0.npz", keys=np.array([b"k" * 64], "S64"), descriptors=np.ones((1, DIM + 1), "f4")
    )
    with pytest.raises(ArtifactError, match=rf"0.npz holds \({DIM + 1},\) descriptors, not \({DIM},\)"):
        open_store(card, queries(store=str(tmp_path / "store")))


def test_an_answers_file_np_savez_wrote_another_way_is_read_from_its_bytes():
    """Compressed: not the fast path, decoded by np.load from the same bytes."""
    import io

    from pipeline.teacher.store import decode_answers

    buffer = io.BytesIO()
    np.savez_compressed(buffer, keys=np.array([b"a" * 64, b"b" * 64], "S64"), descriptors=np.eye(2, DIM))
    keys, descriptors = decode_answers(buffer.getvalue())
    assert keys.tolist() == [b"a" * 64, b"b" * 64] and np.array_equal(descriptors, np.eye(2, DIM))


def test_an_unwritable_store_root_names_queries_store(tmp_path, monkeypatch):
    from pathlib import Path

    def refused(self, *args, **kwargs):  # as a read-only folder answers (root, in CI, may write anywhere)
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refused)
    with pytest.raises(ArtifactError, match="no permission; set queries.store"):
        AnswerStore(tmp_path / "elsewhere", {"kind": "test"})


def test_a_served_teacher_of_another_descriptor_size_is_another_teacher():
    from pipeline.teacher.blackbox import identity_of
    from pipeline.teacher.store import identity_id

    a = {"kind": "mlflow", "url": "http://127.0.0.1:5001/", "dim": 128}
    assert identity_id(identity_of(a)) == identity_id(identity_of({**a, "url": "http://127.0.0.1:5001"}))
    assert identity_id(identity_of(a)) != identity_id(identity_of({**a, "dim": 256}))


def test_a_store_read_from_its_pack_and_in_pieces_holds_what_its_files_do(tmp_path, monkeypatch):
    """Opening reads the pack and the files after it; refreshing reads only new files; answers are added
    in blocks: whichever way, every key has the answer of its first file in name order."""
    from pipeline.teacher import store as store_module

    monkeypatch.setattr(store_module, "PACK_MIN", 3)
    monkeypatch.setattr(store_module, "BLOCK_BYTES", 4 * 4 * DIM)  # blocks of at most 4 answers
    g, _ = gate(tmp_path)
    x = images(40)
    for stop in (9, 21, 30, 40):  # calls of 3: 14 answer files, a pack written along the way
        g.describe(inputs(x[:stop]), "train", budget=40)
    pack = g.store.dir / store_module.PACK
    assert pack.exists() and len(g.store._blocks) > 1
    keys = [pixels_key(p) for p in x]

    def from_files():
        first = {}
        for path in sorted((g.store.dir / "answers").glob("*.npz")):
            with np.load(path) as z:
                for k, d in zip(z["keys"].tolist(), z["descriptors"]):
                    first.setdefault(k, d)
        return np.stack([first[k] for k in keys])

    want = from_files()
    assert np.array_equal(g.store.answers(keys), want) and np.allclose(want, describe_pixels(x))
    reader = AnswerStore(tmp_path / "store", {"kind": "test", "name": "a"})
    assert reader._packed > 0 and np.array_equal(reader.answers(keys), want)
    more = images(7, seed=1)
    g.describe(inputs(more), "train", budget=7)  # another process adds answers: read alone on refresh
    reader.refresh()
    assert np.array_equal(
        reader.answers(keys + [pixels_key(p) for p in more]), np.concatenate([want, describe_pixels(more)])
    )
    pack.write_bytes(b"damaged")  # only a copy: passed over
    assert np.array_equal(AnswerStore(tmp_path / "store", {"kind": "test", "name": "a"}).answers(keys), want)
    pack.unlink()
    assert np.array_equal(AnswerStore(tmp_path / "store", {"kind": "test", "name": "a"}).answers(keys), want)


def test_the_ledger_is_read_on_from_where_it_was_and_again_when_rewritten(tmp_path, monkeypatch):
    """A store refreshed before every request parses only the ledger's new lines (at 10^6 answers the
    whole ledger costs about 25 ms a request), and still holds exactly what a fresh read finds: after
    another process's calls, a torn line and its repair, an unterminated line, hand edits and a damaged
    line, whether or not it was removed with the lines before it."""
    g, _ = gate(tmp_path)
    reader = AnswerStore(tmp_path / "store", {"kind": "test", "name": "a"})
    path = g.store.ledger_path

    def state(store):
        return sorted((c.id, c.purpose, c.images, c.outcome, c.seconds, c.detail) for c in store.calls())

    def fresh():
        return state(AnswerStore(tmp_path / "store", {"kind": "test", "name": "a"}))

    parsed = []
    loads = json.loads
    monkeypatch.setattr(json, "loads", lambda raw, *a, **k: parsed.append(raw) or loads(raw, *a, **k))

    def refreshed(store=reader):  # the lines parsed by one refresh (a last line without its newline: twice)
        parsed.clear()
        store.refresh()
        return len(parsed)

    def append(raw: bytes):
        with open(path, "ab") as f:
            f.write(raw)

    def line(**entry):
        return json.dumps(entry).encode()

    g.describe(inputs(images(6)), "train", budget=20)  # another process: 2 calls, 4 lines
    assert refreshed() == 4 and state(reader) == fresh() and len(state(reader)) == 2
    assert refreshed() == 0 and state(reader) == fresh()
    append(b'{"event": "send", "call": "x", "purp')  # a write cut off by a kill
    assert refreshed() == 1 and reader._torn and state(reader) == fresh()
    g.describe(inputs(images(9)), "train", budget=20)  # repaired, then one more call
    assert refreshed() == 3 and not reader._torn and state(reader) == fresh() and len(state(reader)) == 3
    assert refreshed(g.store) == 3 and state(g.store) == fresh()  # the writer's own store, refreshed

    append(line(event="send", call="y", purpose="train", images=2, time="t"))  # a call lost to a kill, no newline
    assert refreshed() == 2 and reader._unterminated and state(reader) == fresh()
    assert ("y", "train", 2, None, None, "") in state(reader)
    with g.store.locked():  # the newline added, the call recorded as lost
        pass
    assert refreshed() == 2 and state(reader) == fresh() and ("y", "train", 2, "lost") == state(reader)[-1][:4]

    append(line(event="refused", call="y", time="t"))  # an unterminated line, then removed by hand
    assert refreshed() == 2 and state(reader)[-1][3] == "refused"
    path.write_bytes(path.read_bytes()[: -len(line(event="refused", call="y", time="t"))])
    assert state(reader)[-1][3] == "refused" and refreshed() == 0 and state(reader) == fresh()
    assert state(reader)[-1][3] == "lost"  # counted again as spent

    before = path.read_bytes()  # an outcome, then a damaged line: both removed by hand
    append(line(event="refused", call="y", time="t") + b"\nnot a ledger entry\n")
    lines = len(before.splitlines())
    with pytest.raises(ArtifactError, match=f"ledger.jsonl, line {lines + 2}: not a ledger entry"):
        reader.refresh()
    path.write_bytes(before)
    reader.refresh()
    assert state(reader) == fresh() and state(reader)[-1][3] == "lost"
    append(b"not a ledger entry\n")  # only the damaged line removed
    with pytest.raises(ArtifactError, match=f"line {lines + 1}: not a ledger entry"):
        reader.refresh()
    path.write_bytes(before)
    reader.refresh()
    assert state(reader) == fresh()

    keys = [pixels_key(p) for p in images(2, seed=5)]  # a call begun here, then cut back by hand
    with reader.locked():
        reader.begin(keys, "train")
    path.write_bytes(before)
    reader.refresh()
    assert state(reader) == fresh()
    with g.store.locked():  # another call lost to a kill, then recording it as lost fails once
        g.store.begin(keys, "train")
    reader.refresh()
    assert state(reader) == fresh() and [c[3] for c in state(reader)].count(None) == 1
    real_append = reader._append
    monkeypatch.setattr(reader, "_append", lambda entry: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(OSError):
        with reader.locked():
            pass
    monkeypatch.setattr(reader, "_append", real_append)
    assert [c[3] for c in state(reader)].count(None) == 1  # as the ledger says, before any refresh
    reader.refresh()
    assert state(reader) == fresh() and [c[3] for c in state(reader)].count(None) == 1
    unrecorded = path.read_bytes()
    with reader.locked():  # the next holder records it
        pass
    assert state(reader) == fresh() and None not in [c[3] for c in state(reader)]
    path.write_bytes(unrecorded)  # that line cut back by hand: the kept calls never took it in
    reader.refresh()
    assert state(reader) == fresh() and [c[3] for c in state(reader)].count(None) == 1
    with reader.locked():
        pass
    before = path.read_bytes()

    text = path.read_text()  # a hand edit of an earlier line, the file no shorter
    path.write_text(text.replace('"purpose": "train"', '"purpose": "trian"', 1))
    assert refreshed() == len(before.splitlines()) and state(reader) == fresh()
    assert any(c[1] == "trian" for c in state(reader))
