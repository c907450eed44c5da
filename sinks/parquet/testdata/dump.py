"""Reads the Parquet sink's files with DuckDB, the tests' independent reader.

Usage: dump.py [--per-file] DIR...

For each DIR and each event type in it (files TYPE-<time>-<seq>.parquet),
DuckDB reads the type's files together (union_by_name) and this prints one
JSON line with the columns and their DuckDB types, then one JSON line per
row, in the order of the files' names and of the rows in each file:

  {"dir": D, "type": T, "columns": [[name, duckdb_type], ...]}
  {"dir": D, "type": T, "file": F, "row": {column: value, ...}}

With --per-file, each file is read on its own and stands for its "type"
(its base name): for files of one type whose columns' types differ.

Timestamps are printed as microseconds since the epoch (epoch_us), so that
no time zone module is needed; JSON columns as their text.
"""

import glob
import json
import os
import re
import sys

import duckdb


def quote(name):
    return '"' + name.replace('"', '""') + '"'


def main():
    con = duckdb.connect()
    args = sys.argv[1:]
    per_file = args[:1] == ["--per-file"]
    for d in args[per_file:]:
        names = [os.path.basename(p) for p in glob.glob(os.path.join(d, "*.parquet"))]
        if per_file:
            types = sorted(names)
        else:
            types = sorted({re.sub(r"-\d{8}T[^-]*-\d+\.parquet$", "", n) for n in names})
        for ty in types:
            pattern = os.path.join(d, ty if per_file else ty + "-*.parquet").replace("'", "''")
            src = f"read_parquet('{pattern}', union_by_name = true, filename = true, file_row_number = true)"
            cols = [c for c in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
                    if c[0] not in ("filename", "file_row_number")]
            sel = []
            for name, typ, *_ in cols:
                q = quote(name)
                if typ.startswith("TIMESTAMP") and typ.endswith("[]"):
                    sel.append(f"list_transform({q}, lambda x: epoch_us(x)) AS {q}")
                elif typ.startswith("TIMESTAMP"):
                    sel.append(f"epoch_us({q}) AS {q}")
                else:
                    sel.append(q)
            print(json.dumps({"dir": d, "type": ty, "columns": [[c[0], c[1]] for c in cols]}))
            q = f"SELECT filename, {', '.join(sel)} FROM {src} ORDER BY filename, file_row_number"
            for rec in con.execute(q).fetchall():
                row = {c[0]: v for c, v in zip(cols, rec[1:])}
                print(json.dumps({"dir": d, "type": ty, "file": os.path.basename(rec[0]), "row": row},
                                 allow_nan=False))


if __name__ == "__main__":
    main()
