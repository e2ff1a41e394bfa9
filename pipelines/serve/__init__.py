"""`serve`: one long-running process that owns the DuckDB file and delivers webhooks in seconds.

    python pipelines/nps_to_gainsight.py serve [--host H] [--port P]

Uvicorn serves the Starlette app (`app.py`) on the main thread; the worker (`worker.py`) runs
every batch and every reconciliation on its own thread. The process holds the staging file (the
run lock) from start to exit, so no scheduled run can compete for it: the reconciliation is its
own timer (`reconcile_minutes`).

Signals: the first SIGTERM/SIGINT stops accepting calls, lets calls in flight finish, stops a
reconciliation under way at its next safe point, delivers every event due in the spool, and
exits 0. A second one stops the run under way at its next safe
point (connector_common/stop.py) and exits 128 + signal; what is left stays spooled or staged and
the next start delivers it.
"""
