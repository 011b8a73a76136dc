"""Built-in plugins (each one registered through the `nst` entry-point group) and the plugin host."""
