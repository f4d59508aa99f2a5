# Tidemark's Airflow image: the official apache/airflow image plus requirements.txt, installed at
# build time (Airflow's docs reserve _PIP_ADDITIONAL_REQUIREMENTS for quick tries).
#
# requirements.txt pins apache-airflow itself; installing it together with
# "apache-airflow==${AIRFLOW_VERSION}" (AIRFLOW_VERSION is set by the base image) keeps exactly the
# image's Airflow: a requirements.txt that pins another version fails the build instead of silently
# up- or downgrading Airflow. The tag here and that pin move together (tests/deploy checks it).
FROM apache/airflow:3.3.2

COPY requirements.txt /requirements.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /requirements.txt \
 && python -c 'import os, sys; from importlib.metadata import version; \
want = os.environ["AIRFLOW_VERSION"]; \
got = {d: version(d) for d in ("apache-airflow", "apache-airflow-core")}; \
sys.exit(0 if set(got.values()) == {want} else f"Airflow changed by requirements.txt: {got}, image has {want}")'

# DAGs and plugins (the tidemark package) are mounted by docker-compose.yaml, as in the official
# compose file; this image carries only the dependencies.
