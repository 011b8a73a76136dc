"""Layer 6, the Python API: run() / stylize() (run.py) and train() (train.py), with what they share in checking
their arguments (arguments.py) and a training's checkpoints and loss curves (checkpoints.py, curves.py)."""
from nst.api.run import Result, run, stylize
from nst.api.train import TrainResult, train

__all__ = ["Result", "TrainResult", "run", "stylize", "train"]
