"""efficiency: parameters, FLOPs per image and descriptor throughput of the student sizes, against the
teacher's.

A teacher built here (its weights on this machine) is timed side by side with the students: one
process, the same device and threads, the same batch of ``queries.call_batch`` test images (the
teacher gets their pixels as the gate sends them, each student its input), calls timed in turn and
repeated; the throughput ratio is the median over the repeats, with its range. A teacher reachable
only by queries cannot be timed so: its throughput is what the gate measured on its answered
training calls (from the ledger, as the dump reports it; the network included, calls made when they
were made, possibly by another experiment sharing the store), and the ratio against it is labelled
as such. That call-timing figure is kept apart for every teacher (``served_teacher_images_per_second``).
Parameters and FLOPs of the teacher are known only for one built here (from its card)."""

from pathlib import Path

import click

from stages.common import params_option, path_option, setup, stage


@click.command()
@params_option
@path_option("--teacher", help="the teacher's folder (card.json)")
@path_option("--queries", help="the dump's query accounting JSON (the gate's call timings)")
@path_option("--prepared", help="the prepared dataset (test images to time the student on)")
@path_option("--out", help="the efficiency JSON")
@stage
def efficiency(params_path: Path, teacher: Path, queries: Path, prepared: Path, out: Path):
    import json

    from pipeline.data import prepared as prepared_data
    from pipeline.efficiency import efficiency_record, summary_lines
    from pipeline.io import write_json_atomic
    from pipeline.models.registry import check_names
    from pipeline.teacher.blackbox import read_card

    params, device = setup(params_path)
    check_names(params)  # before any model is built
    card = read_card(teacher)
    ledger = json.loads(queries.read_text()).get("ledger") or {}
    record = efficiency_record(params, device, card, teacher, ledger, prepared_data.load_test_split(prepared))
    write_json_atomic(out, record)
    for line in summary_lines(record, card):
        click.echo(line)


if __name__ == "__main__":
    efficiency()
