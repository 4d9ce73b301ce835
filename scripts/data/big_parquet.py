"""Writes the tests' large Parquet dataset: python3 big_parquet.py PATH ROWS.

Columns: an int64 id, a float64 value, a dictionary-encoded category and a
plain string name; row groups of 50 000 rows. Used by the CLI tests
(volley_testkit::files::big_parquet) and web/scripts/measure-compression.mjs,
so both read the same shape of data.
"""
import sys

import pyarrow as pa
import pyarrow.parquet as pq

path, n = sys.argv[1], int(sys.argv[2])
ids = pa.array(range(n), type=pa.int64())
values = pa.array([i * 0.5 for i in range(n)], type=pa.float64())
category = pa.array(['north', 'south', 'east', 'west', 'centre'][i % 5] for i in range(n)).dictionary_encode()
names = pa.array(f'name-{i * 7919 % 100003}' for i in range(n))
table = pa.table({'id': ids, 'value': values, 'category': category, 'name': names})
pq.write_table(table, path, row_group_size=50000)
