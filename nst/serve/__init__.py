"""`nst serve`: the studio, a local web page over the Python API (live preview, loss plot, gallery).

app.py: the FastAPI app and its HTTP API (docs/http-api.md); jobs.py: the queue, the worker and the job
folders; forms.py: job requests and uploads checked as `nst run` checks its arguments; catalog.py: the
form's methods, plugin options and settings from the plugin host; server.py: the `nst serve` command's
work (socket, token, uvicorn). Needs the `web` extra: pip install 'nst-suite[web]'.
"""
