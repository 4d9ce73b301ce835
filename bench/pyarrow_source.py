"""The baseline of `volley bench source`: pyarrow doing the job the bench
times the connector doing, on the same data in the same run.

The job: read a source into Arrow, then encode it as Arrow IPC stream
messages into a sink that keeps nothing (pyarrow.MockOutputStream only counts
bytes), in record batches of about the size the connector's slicer produced
(--max-chunksize rows). Only that is timed: interpreter start-up and imports
are not.

  csv       pyarrow.csv.read_csv
  parquet   pyarrow.parquet.read_table
  postgres  adbc_driver_postgresql (libpq, COPY in binary), fetch_arrow_table

--threads off reads with use_threads=False (one core, like the connector's
single reader thread); on keeps pyarrow's default (all cores). The ADBC
PostgreSQL driver has no such switch.

Protocol (bench/src/source.rs embeds this file and drives it): the script
first prints one JSON line, {"skipped": reason} when a module is missing
(then exits), else {"ready": true, "pyarrow": version, ...}. Then, for every
line it reads on stdin, it does one timed pass and prints {"rows",
"ipc_bytes", "seconds", "cpu_seconds", "schema"}; it exits at end of input.
One process serves every pass of a variant, so interpreter start-up and
first-call initialisation are paid once, like the connector's, and the
bench can alternate passes between the connector and pyarrow.
"""

import argparse
import json
import sys
import time


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["csv", "parquet", "postgres"])
    parser.add_argument("source", help="file path, or for postgres a postgres:// URL")
    parser.add_argument("--query", default="", help="postgres: the query")
    parser.add_argument("--threads", choices=["on", "off"], default="on")
    parser.add_argument("--max-chunksize", type=int, required=True, help="rows per IPC record batch")
    return parser.parse_args()


def main():
    arguments = parse_arguments()
    try:
        import pyarrow as pa
        import pyarrow.ipc  # noqa: F401  (pa.ipc)
    except ImportError as error:
        print(json.dumps({"skipped": f"pyarrow is not installed ({error}); pip install pyarrow"}), flush=True)
        return
    use_threads = arguments.threads == "on"
    if arguments.kind == "csv":
        import pyarrow.csv as csv

        def read():
            return csv.read_csv(arguments.source, read_options=csv.ReadOptions(use_threads=use_threads))

        reader = "pyarrow.csv.read_csv"
    elif arguments.kind == "parquet":
        import pyarrow.parquet as pq

        def read():
            return pq.read_table(arguments.source, use_threads=use_threads)

        reader = "pyarrow.parquet.read_table"
    else:
        try:
            import adbc_driver_postgresql
            import adbc_driver_postgresql.dbapi as dbapi
        except ImportError as error:
            print(json.dumps({"skipped": f"adbc-driver-postgresql is not installed ({error}); "
                                         "pip install adbc-driver-postgresql"}), flush=True)
            return

        def read():
            with dbapi.connect(arguments.source) as connection, connection.cursor() as cursor:
                cursor.execute(arguments.query)
                return cursor.fetch_arrow_table()

        reader = f"adbc_driver_postgresql {getattr(adbc_driver_postgresql, '__version__', '?')} fetch_arrow_table"

    print(json.dumps({"ready": True, "pyarrow": pa.__version__, "reader": reader, "threads": arguments.threads,
                      "cpu_count": pa.cpu_count(), "python": sys.version.split()[0]}), flush=True)
    for _ in sys.stdin:
        wall_started, cpu_started = time.perf_counter(), time.process_time()
        table = read()
        sink = pa.MockOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=max(1, arguments.max_chunksize))
        seconds = time.perf_counter() - wall_started
        cpu_seconds = time.process_time() - cpu_started
        schema = ", ".join(f"{field.name}: {field.type}" for field in table.schema)
        print(json.dumps({"rows": table.num_rows, "ipc_bytes": sink.size(), "seconds": seconds,
                          "cpu_seconds": cpu_seconds, "schema": schema}), flush=True)
        del table


if __name__ == "__main__":
    main()
