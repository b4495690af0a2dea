"""The HTTP layer of the chart read API (FastAPI): app factory, security, errors, routes and the explorer page.

The read engine (``bv_pipeline.api.reader`` and the tier readers) knows nothing of HTTP; this package only
validates requests, calls the engine and encodes answers.
"""
