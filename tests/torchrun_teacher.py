"""Run under ``torchrun --nproc_per_node=2``: a stage's use of a served teacher, as dump and
evaluate_teacher make it. Rank 0 describes through the gate; the other rank gets None and then waits
for rank 0 on a group whose collectives time out after ``argv[3]`` seconds, as the default group's do
(10 or 30 minutes, too long for a test). It must not time out while rank 0 waits on a slow teacher.

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/torchrun_teacher.py TEACHER_DIR STORE SECONDS
"""

import datetime
import sys
from pathlib import Path

import torch.distributed as dist

from pipeline.teacher.blackbox import open_teacher
from tests.test_queries import images, inputs, queries

teacher_dir, store, seconds = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
dist.init_process_group("gloo")
stage_group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=seconds))
access = open_teacher(teacher_dir, queries(store=store, timeout_s=30, verify=0), "cpu")
if access is not None:
    _, stats = access.describe(inputs(images(2)), "train", 2)
    print(f"rank 0: {stats['sent']} images answered", flush=True)
dist.barrier(group=stage_group)  # distributed.stop(): every rank, then the group is gone
dist.destroy_process_group()
print("done", flush=True)
