"""Layer 5, what the use cases share at run time: memory plans and tiled runs (large.py), observers of a run
(observers.py), the record an output keeps of its run (run_record.py), torchrun processes (distributed.py)."""
