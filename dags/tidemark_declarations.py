"""No DAG: fails to import while a Tidemark dataset declaration is refused, so Airflow shows it as an import error."""

from tidemark.airflow import factory

factory.refuse_bad_declarations(__file__)
