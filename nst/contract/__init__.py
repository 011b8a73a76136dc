"""Layer 3, the plugin contract: every hook (hookspecs.py), what hooks see (context.py), how run hooks are
called (dispatch.py) and how a plugin's failure reads (failures.py)."""
