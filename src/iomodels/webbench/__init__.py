"""HTTP measurement with clients and servers we did not write.

``wrk.py`` drives load with wrk (the Debian package) and reads its latency
distribution; ``peers.py`` starts the servers a user would otherwise deploy
(gunicorn, waitress, granian, uvicorn, nginx) on the same hello-world app;
``apps.py`` holds those apps.  ``iomodels compare --protocol http`` puts the
models and the peers in one table.
"""
