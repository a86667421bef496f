"""The `strongroom` root group and the console entry point.

Output never carries personal data except where the operator asked for a customer by
id; errors name lines, fields and rules, never values. Exit status: see cli.context.
"""

from __future__ import annotations

import os

import click

from application.errors import ApplicationError
from cli import (
    alerts,
    audit,
    backup,
    bench,
    certificates,
    compliance,
    customers,
    db,
    doctor,
    init,
    keys,
    monitor,
    projections,
    requests,
    retention,
    recert,
    report,
    serve,
    staff,
)
from cli.context import EXIT_CHECK_FAILED, SETUP_ERRORS, fail
from domain.errors import DomainError
from infrastructure.faults import is_store_unavailable


@click.group()
@click.option("--instance", envvar="STRONGROOM_INSTANCE", default="instance",
              help="Instance folder (config, KEK, TLS certificate, SQLite files).")
@click.pass_context
def main(ctx: click.Context, instance: str) -> None:
    """Strongroom: encrypted, audited customer records for payment companies."""
    ctx.ensure_object(dict)
    ctx.obj["instance"] = instance


main.add_command(init.init_command)
main.add_command(serve.serve_command)
main.add_command(projections.worker_command)
main.add_command(staff.staff_group)
main.add_command(customers.customers_group)
main.add_command(projections.projections_group)
main.add_command(keys.keys_group)
main.add_command(audit.audit_group)
main.add_command(db.db_group)
main.add_command(backup.backup_group)
main.add_command(backup.restore_command)
main.add_command(compliance.compliance_group)
main.add_command(doctor.doctor_command)
main.add_command(bench.bench_command)
main.add_command(alerts.alerts_group)  # issue 12 (R3.6)
main.add_command(monitor.monitor_group)
main.add_command(requests.requests_group)
main.add_command(requests.consents_group)
# Issue 13: the retention run (R5.5) and offline certificate checks (R5.4).
main.add_command(retention.retention_group)
audit.audit_group.add_command(certificates.verify_certificate_command)
main.add_command(recert.recert_group)  # issue 14 (R6.2)
main.add_command(report.report_command)  # issue 14 (R6.1)


def run() -> None:  # pragma: no cover - console entry
    """Console entry: known errors become one line; unknown ones never dump a trace
    (whose messages could carry values) unless STRONGROOM_DEBUG is set."""
    # Whatever a command makes (stores, keys, checkpoint copies, backups, metrics
    # files) is for this user alone, even where a module forgot an explicit mode.
    os.umask(0o077)
    try:
        main()
    except (ApplicationError, DomainError) as exc:
        fail(str(exc), EXIT_CHECK_FAILED)
    except SETUP_ERRORS as exc:
        fail(str(exc))
    except Exception as exc:
        if os.environ.get("STRONGROOM_DEBUG"):
            raise
        if is_store_unavailable(exc):
            # A store that went away mid-command (a crash, a restart, a full disk): say
            # so, by the error's type alone (its message may name a host or a value).
            fail(f"the database became unavailable ({type(exc).__name__}); run the command again "
                 "once it answers")
        fail(f"internal error ({type(exc).__name__}); rerun with STRONGROOM_DEBUG=1 for details", EXIT_CHECK_FAILED)


if __name__ == "__main__":  # pragma: no cover - `python -m cli.main`, as the API benchmark starts it
    run()
