"""The Tidemark view inside the Airflow UI (an Airflow 3 plugin: FastAPI app + external views)."""
