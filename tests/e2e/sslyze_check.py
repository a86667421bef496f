"""Scan one TLS port with sslyze and print what Mozilla's "intermediate" checker says.

Run by tests/e2e/test_serve_hardening.py with the Python of `.venv-tools/sslyze`
(scripts/setup), never imported by the tests: sslyze is an outside check and lives
in its own environment. Imports nothing from Strongroom.

    python sslyze_check.py HOST PORT CA_FILE   ->   {"status", "curves", "issues"} on stdout
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sslyze import (
    CertificateInfoExtraArgument,
    Scanner,
    ScanCommandsExtraArguments,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanStatusEnum,
)
from sslyze.mozilla_tls_profile.tls_config_checker import (
    SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
    MozillaTlsConfiguration,
    ServerNotCompliantWithTlsConfiguration,
    TlsConfigurationEnum,
    check_server_against_tls_configuration,
)


def main(host: str, port: int, ca_file: Path) -> dict[str, object]:
    request = ServerScanRequest(
        server_location=ServerNetworkLocation("localhost", port, ip_address=host),
        scan_commands=SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
        # The instance's self-signed certificate is the trust anchor, as for any client of it.
        scan_commands_extra_arguments=ScanCommandsExtraArguments(
            certificate_info=CertificateInfoExtraArgument(custom_ca_file=ca_file)),
    )
    scanner = Scanner()
    scanner.queue_scans([request])
    (result,) = list(scanner.get_results())
    if result.scan_status != ServerScanStatusEnum.COMPLETED:
        return {"status": str(result.scan_status), "curves": [], "issues": {"connectivity": "failed"}}
    curves = sorted(curve.name for curve in result.scan_result.elliptic_curves.result.supported_curves)
    try:
        check_server_against_tls_configuration(
            result, MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_INTERMEDIATE))
        issues: dict[str, str] = {}
    except ServerNotCompliantWithTlsConfiguration as problem:
        issues = {str(key): str(value) for key, value in problem.issues.items()}
    return {"status": "completed", "curves": curves, "issues": issues}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))))
