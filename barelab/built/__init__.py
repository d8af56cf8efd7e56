"""Components the chapters build, exported from their notebooks by ``barelab.export``.

Every other module here is generated: edit the notebook it names, then run
``python -m barelab.export``. ``make test`` fails when the two drift apart.
"""
