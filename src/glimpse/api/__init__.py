"""The HTTP edge: the Images API v2 on Starlette, wired in `app.py`."""
