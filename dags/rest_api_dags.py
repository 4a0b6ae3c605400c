"""
### REST API DAGs declared in config (include/config/rest_endpoints.yaml, section `dags`)

Each entry of `dags:` becomes one DAG with one `RestApiToS3Operator` task landing its
endpoint for the run's data interval: a new paginated endpoint needs config, not code.
"""

from __future__ import annotations

from airflow.sdk import DAG, CronDataIntervalTimetable

from s3lander.assets import dataset_asset
from s3lander.config import ConfigError, load_yaml
from s3lander.dag_defaults import DEFAULT_ARGS, START_DATE, window_params
from s3lander.operators.rest_api_to_s3 import RestApiToS3Operator
from s3lander.rest.config import CONFIG_FILE, load_endpoints

DOC = """
### {dag_id}: `{path}` -> S3 (declared in config)

{description}

Lands endpoint `{endpoint}` of `include/config/rest_endpoints.yaml` ({paginator} pagination,
records at `{records}`) to `s3://landing/raw/{source}/{dataset}/dt=YYYY-MM-DD/hour=HH/`, with
`_manifest.json` written last. **Batch boundary**: the data interval `[start, end)` on schedule
`{schedule}` (UTC){incremental}.

**Trigger** from the UI ("Trigger DAG w/ config"): without parameters it lands the last complete
interval; `window_start`/`window_end` pick another window. **Backfill** with `airflow backfill
create --dag-id {dag_id} --from-date ... --to-date ...`: a rerun republishes the same objects; a
retry resumes after the last landed page.

**Connections**: `{conn_id}` (type http: base URL and credentials), `aws_default` (landing bucket).
"""

DAG_KEYS = {"endpoint", "schedule", "description", "tags", "max_active_runs", "catchup"}


def build_dags() -> dict[str, DAG]:
    doc = load_yaml(CONFIG_FILE)
    endpoints = load_endpoints(doc)
    dags: dict[str, DAG] = {}
    for dag_id, spec in (doc.get("dags") or {}).items():
        unknown = set(spec) - DAG_KEYS
        if unknown or spec.get("endpoint") not in endpoints:
            raise ConfigError(f"{CONFIG_FILE}: dag {dag_id!r}: unknown keys {sorted(unknown)} or endpoint "
                              f"{spec.get('endpoint')!r} not under 'endpoints'")
        ep = endpoints[spec["endpoint"]]
        inc = ep.incremental or {}
        incremental = (f", sent as `{inc.get('start_param')}`/`{inc.get('end_param')}`" if inc else
                       "; the endpoint takes no window parameters, so every run lands its full answer")
        with DAG(
            dag_id=dag_id,
            description=spec.get("description") or ep.description or f"{ep.path} -> S3",
            doc_md=DOC.format(dag_id=dag_id, path=ep.path, description=spec.get("description") or ep.description,
                              endpoint=ep.name, paginator=ep.paginator["type"], records=ep.records, source=ep.source,
                              dataset=ep.dataset, schedule=spec["schedule"], incremental=incremental,
                              conn_id=ep.conn_id),
            schedule=CronDataIntervalTimetable(spec["schedule"], timezone="UTC"),
            start_date=START_DATE,
            catchup=bool(spec.get("catchup", False)),
            max_active_runs=int(spec.get("max_active_runs", 1)),
            default_args=DEFAULT_ARGS,
            tags=sorted({"rest", "s3", "from-config", *spec.get("tags", [])}),
            params={**window_params()},
        ) as dag:
            RestApiToS3Operator(task_id="land", endpoint=ep.name, outlets=[dataset_asset(ep.source, ep.dataset)])
        dags[dag_id] = dag
    return dags


globals().update(build_dags())
