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

# Tidemark itself, installed the way users add it to their own Airflow image: one pip install (its
# dependencies are already pinned above, hence --no-deps), then `tidemark-dags install /opt/airflow/dags`
# would copy the DAG files. docker-compose.yaml mounts dags/ and plugins/ over that for development, as
# the official compose file does; the mounted package is the same code.
COPY pyproject.toml README.md /opt/tidemark/
COPY plugins/tidemark /opt/tidemark/plugins/tidemark
COPY dags /opt/tidemark/dags
RUN pip install --no-cache-dir --no-deps /opt/tidemark

# Production declares only your own datasets: the demo's synthetic `ledgers` is off (it is the default; said
# here so an image never inherits it from a developer's shell).
ENV TIDEMARK_DEMO=off
