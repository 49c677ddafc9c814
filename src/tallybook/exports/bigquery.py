"""Loading the FOCUS export into BigQuery (optional: `pip install "tallybook[bigquery]"`).

    load_job_config(schema) -> bigquery.LoadJobConfig     Parquet, the FOCUS schema, append
    load_parquet(path, destination, client=None) -> str    runs the load job; returns the job id

Decimals load as BIGNUMERIC (FOCUS amounts carry 12 places, more than NUMERIC's 9), timestamps as
TIMESTAMP (UTC), every other column as STRING (Tags is JSON text). Credentials come from the
environment as for any Google client (GOOGLE_APPLICATION_CREDENTIALS or workload identity).
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa

from tallybook.errors import ConfigError

DESTINATION = re.compile(r"^[a-z][a-z0-9-]{4,61}[a-z0-9]\.[A-Za-z0-9_]{1,1024}\.[A-Za-z0-9_\-]{1,1024}$")
INSTALL_HINT = 'The BigQuery load needs the optional dependency: pip install "tallybook[bigquery]".'


def _bigquery() -> Any:
    try:
        from google.cloud import bigquery
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return bigquery


def check_destination(destination: str) -> str:
    """`destination` if it names a table and the client library is installed; else a ConfigError."""
    if not DESTINATION.match(destination):
        raise ConfigError(f"{destination!r} is not a BigQuery table: use PROJECT.DATASET.TABLE, "
                          "e.g. my-project.finops.focus_ai.")
    _bigquery()
    return destination


def bigquery_type(kind: pa.DataType) -> str:
    if pa.types.is_decimal(kind):
        return "BIGNUMERIC"
    if pa.types.is_timestamp(kind):
        return "TIMESTAMP"
    if pa.types.is_integer(kind):
        return "INT64"
    if pa.types.is_boolean(kind):
        return "BOOL"
    return "STRING"


def load_job_config(schema: pa.Schema, *, replace: bool = False) -> Any:
    """The load job's configuration: Parquet source, explicit schema, append (or truncate with `replace`)."""
    bigquery = _bigquery()
    return bigquery.LoadJobConfig(
        schema=[bigquery.SchemaField(f.name, bigquery_type(f.type), mode="NULLABLE") for f in schema],
        source_format=bigquery.SourceFormat.PARQUET,
        write_disposition=(bigquery.WriteDisposition.WRITE_TRUNCATE if replace
                           else bigquery.WriteDisposition.WRITE_APPEND),
        create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
        decimal_target_types=["BIGNUMERIC"],
    )


def load_parquet(path: str, destination: str, schema: pa.Schema, *, replace: bool = False,
                 client: Any = None) -> str:
    """Load a Parquet file into `destination`; waits for the job and returns its id."""
    bigquery = _bigquery()
    project = check_destination(destination).split(".", 1)[0]
    client = client or bigquery.Client(project=project)
    with open(path, "rb") as source:
        job = client.load_table_from_file(source, destination, job_config=load_job_config(schema, replace=replace))
    job.result()
    return str(job.job_id)
