"""dump: teacher descriptors of the largest subset, through the budgeted gate, exactly once.

The answers live in a persistent store (``teacher_queries/train``) that DVC never deletes, so a
rerun after any parameter change sends the teacher only images it has never seen, and the ledger
ends at exactly ``max(budgets)`` training queries.
"""
import click
import numpy as np

from stages.common import ROOT, progress, setup, stage

STORE = ROOT / "teacher_queries" / "train"


def load_subsets(budgets) -> dict[int, np.ndarray]:
    subsets = {}
    for b in budgets:
        path = ROOT / f"data/subsets/{b}.npy"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run `dvc repro sample@{b}` first")
        subsets[b] = np.load(path)
    largest = subsets[max(budgets)]
    for b, s in subsets.items():
        if not np.array_equal(s, largest[:len(s)]):
            raise ValueError(f"data/subsets/{b}.npy is not a prefix of the largest subset: rerun `dvc repro -f sample`")
    return subsets


@click.command()
@stage
def dump():
    from pipeline.data import prepared
    from pipeline.io import save_npz_atomic, write_json_atomic
    from pipeline.teacher.blackbox import open_teacher

    params, device = setup()
    subset = load_subsets(params.budgets)[params.max_budget]
    gate = open_teacher(ROOT / "models/teacher.pt", STORE, "train", params.max_budget, device)
    store = gate.store
    pool = prepared.pool_images(ROOT / "data/prepared")
    before = store.count
    bar = progress(len(subset), "teacher queries")
    bar.update(min(before, len(subset)))
    descriptors = gate.describe(subset, lambda idx: pool[idx], progress=bar.update)
    bar.close()
    save_npz_atomic(ROOT / "data/teacher/train_descriptors.npz", indices=subset, descriptors=descriptors)
    write_json_atomic(ROOT / "metrics/queries.json", {"train_queries": store.count, "budget": params.max_budget,
                                                      "queried_this_run": store.count - before})
    click.echo(f"teacher queries: {store.count - before} this run, {store.count} in total "
               f"(budget {params.max_budget}); ledger: {STORE.relative_to(ROOT)}/ledger.jsonl")


if __name__ == "__main__":
    dump()
