"""Tidemark's own bookkeeping in the target database: runs, the batch ledger, live cursors, progress.

Every table is created in one place (``tables``); the ledger row of a batch
commits with its rows, which is what makes resumes and the watermark exact.
"""
