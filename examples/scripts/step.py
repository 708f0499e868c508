"""A stand-in ETL step: says what it would do for the batch date, then succeeds."""

import os
import sys

step, batch_date = sys.argv[1], sys.argv[2]
print(f"{step}: processing batch {batch_date} (run {os.environ.get('TRIBUTARY_RUN_ID')})")
print(f"{step}: done", file=sys.stderr)
