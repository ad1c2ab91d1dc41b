"""The extract pipeline: videos → snippet features → T positions → labelled proposals → Parquet.

``config`` (the schema), ``inputs`` (what to process and the videos' ids), ``stages`` (the
actors: decode + features, proposals), ``writer`` (tables and commits), ``driver`` (the run).
"""
