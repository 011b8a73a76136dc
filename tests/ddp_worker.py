"""One rank of the data-parallel training test (tests/test_johnson.py::test_ddp_training_two_ranks_agree).

Run as: python -m torch.distributed.run --nproc-per-node 2 --standalone tests/ddp_worker.py OUTDIR DATA WEIGHTS STYLE

Every rank trains into OUTDIR/model.safetensors (only rank 0 writes it), then saves the weights it
ended with (TrainResult.state) to OUTDIR/rank{R}.safetensors and what it saw to OUTDIR/rank{R}.json.
"""
import json
import sys
from pathlib import Path

import torch.distributed as dist
from safetensors.torch import save_file

from nst.api import train


def main() -> None:
    out, data, weights, style = map(Path, sys.argv[1:5])
    result = train(style, data, out / "model.safetensors", weights=str(weights), device="cpu", steps=4, size=32,
                   batch_size=2, width=8, workers=0, note=lambda msg: None)
    rank, world = dist.get_rank(), dist.get_world_size()
    save_file(result.state, str(out / f"rank{rank}.safetensors"))
    (out / f"rank{rank}.json").write_text(json.dumps({
        "world": world, "steps": result.steps, "losses": result.losses,
        "model": str(result.model) if result.model is not None else None}))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
