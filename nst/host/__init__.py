"""Layer 4, the plugin host: loading built-ins and entry points (plugin_host.py), each plugin's host hooks
collected and clashes refused (collect.py), what it knows of each plugin (records.py)."""
from nst.host.plugin_host import PluginHost, default_host, plugins_for_call

__all__ = ["PluginHost", "default_host", "plugins_for_call"]
