"""Run every benchmark (``make bench``), or those named: ``python -m bench [name ...]``.

Each runs in its own process, as ``python bench/<name>.py`` would, one after the other (they would
only measure each other side by side); the first that fails stops the run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.harness.env import child_env

BENCH = Path(__file__).resolve().parent
# In the order they run: intake, the pipeline, archiving, delivery, feedback.
BENCHMARKS = (
    "intake_batch_vs_copy",
    "intake_soap_vs_rest",
    "intake_single_latency",
    "pipeline_vs_sql_floor",
    "pipeline_vs_naive_loop",
    "pipeline_email_vs_smtplib",
    "pipeline_realtime_latency",
    "pipeline_task_instances",
    "pipeline_backlog_memory",
    "archive_vs_copy_floor",
    "archive_rerun",
    "archive_memory",
    "delivery_batch_vs_raw",
    "delivery_realtime_vs_raw",
    "delivery_twilio_vs_raw",
    "delivery_max_rate",
    "delivery_api_latency",
    "feedback_bounce_mailbox",
    "feedback_webhook_batch",
    "feedback_quarantine_check",
    "delivery_fcm_vs_raw",
    "delivery_apns_vs_raw",
    "delivery_smpp_vs_raw",
)


def main(names: list[str]) -> int:
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
        return 2
    for name in names or BENCHMARKS:
        print(f"== bench/{name}.py", flush=True)
        if subprocess.run([sys.executable, str(BENCH / f"{name}.py")], env=child_env()).returncode:
            print(f"bench/{name}.py failed")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
