"""One batch window from source pieces to COPY: checks, encodings (text, CSV, binary), spools, the transaction."""
