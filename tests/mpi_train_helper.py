"""Run by tests/test_distributed.py under mpiexec: train one TrainConfig on every rank.

    mpiexec -n 2 python tests/mpi_train_helper.py CONFIG.json RESULTS_DIR

Each rank works in RESULTS_DIR/rank<r>/ (so a relative out_dir shows which rank wrote
files), with its stdout and stderr sent to files there (so the test sees what each rank
printed), and saves its final weights and losses as RESULTS_DIR/rank<r>.npz."""

import json
import os
import sys
from pathlib import Path

import numpy as np

from minigpt.train import TrainConfig, train

config_path, results = Path(sys.argv[1]), Path(sys.argv[2])
rank = int(os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0")))
workdir = results / f"rank{rank}"
workdir.mkdir(parents=True, exist_ok=True)
os.chdir(workdir)
for fd, name in ((1, "stdout.txt"), (2, "stderr.txt")):  # everything this rank prints, C level included
    sys.stdout.flush(), sys.stderr.flush()
    os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)

result = train(TrainConfig(**json.loads(config_path.read_text())))
sys.stdout.flush(), sys.stderr.flush()
np.savez(results / f"rank{rank}.npz", flat_params=result.model.flat_params,
         train_losses=np.asarray(result.train_losses), iterations=result.iterations)
