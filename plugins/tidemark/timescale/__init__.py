"""TimescaleDB itself: hypertables and their schema, the columnstore (direct COPY), compression, policies."""
