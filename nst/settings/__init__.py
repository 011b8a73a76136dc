"""Layer 2, settings: typed values (values.py), declarations (declare.py), the settings of a run (run.py) and
of a training (train.py), config files (configfile.py) and the flags made from declarations (flags.py)."""
from nst.settings.run import Settings, make_settings
from nst.settings.train import TrainSettings, make_train_settings

__all__ = ["Settings", "TrainSettings", "make_settings", "make_train_settings"]
