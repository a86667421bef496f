"""What software is installed, against what was pinned (PCI DSS 6.3.2, 6.3.3; R7.5).

`sbom()` is a CycloneDX 1.6 bill of materials (JSON) of the Python environment
Strongroom runs in: the product itself as the subject, and every installed
distribution as a component with its version and package URL. It is read from the
environment's own metadata (importlib.metadata), so it lists what is there, not
what a requirements file hoped for. `pin_mismatches()` compares the same
distributions with the pinned constraints file (constraints.txt): a package
installed at another version than pinned, or installed with no pin at all, is an
environment that was not built from the pins (and may miss a patched release).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

PRODUCT = "strongroom"
# The installer's own tools: in every virtual environment, pinned by nobody.
INSTALLER_TOOLS = frozenset({"pip", "setuptools", "wheel"})


@dataclass(frozen=True)
class Installed:
    name: str
    version: str


def installed() -> list[Installed]:
    """Every distribution importable here, once each (the first on sys.path wins, as
    for imports), sorted by canonical name."""
    found: dict[str, Installed] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        found.setdefault(canonicalize_name(name), Installed(name, dist.version))
    return [found[key] for key in sorted(found)]


def sbom() -> dict[str, object]:
    """The CycloneDX document (as JSON-ready data) of this environment."""
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    bom = Bom()
    distributions = installed()
    product = next((d for d in distributions if canonicalize_name(d.name) == PRODUCT), None)
    bom.metadata.component = Component(
        name=PRODUCT, version=product.version if product else "unknown", type=ComponentType.APPLICATION,
        bom_ref=f"{PRODUCT}-application",
    )
    components = {PRODUCT: bom.metadata.component}
    for dist in distributions:
        if canonicalize_name(dist.name) == PRODUCT:
            continue
        purl = PackageURL(type="pypi", name=canonicalize_name(dist.name), version=dist.version)
        component = Component(name=dist.name, version=dist.version, type=ComponentType.LIBRARY,
                              purl=purl, bom_ref=purl.to_string())
        bom.components.add(component)
        components[canonicalize_name(dist.name)] = component
    for key, component in components.items():
        needed = [components[name] for name in _requires(key) if name in components and name != key]
        bom.register_dependency(component, needed)
    document: dict[str, object] = json.loads(JsonV1Dot6(bom).output_as_string())
    return document


def _requires(name: str) -> list[str]:
    """The canonical names a distribution needs whatever extras are chosen."""
    try:
        requires = metadata.requires(name) or []
    except metadata.PackageNotFoundError:
        return []
    names: list[str] = []
    for text in requires:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            names.append(canonicalize_name(requirement.name))
    return names


def write_sbom(path: Path) -> int:
    """Write the SBOM to `path`; the number of components listed."""
    document = sbom()
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    components = document.get("components")
    return len(components) if isinstance(components, list) else 0


def read_constraints(path: Path) -> dict[str, str]:
    """canonical name -> pinned version, from `name==version` lines (comments skipped)."""
    pins: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            raise ValueError(f"{path.name} line {number} is not a requirement") from exc
        exact = [spec.version for spec in requirement.specifier if spec.operator in ("==", "===")]
        if len(exact) != 1:
            raise ValueError(f"{path.name} line {number} does not pin one exact version")
        pins[canonicalize_name(requirement.name)] = exact[0]
    return pins


def pin_mismatches(pins: dict[str, str], present: list[Installed]) -> list[str]:
    """Each installed distribution not at its pinned version, or with no pin at all.
    A pin with nothing installed is fine: the test tools are pinned too."""
    drifted, unpinned = [], []
    for dist in present:
        key = canonicalize_name(dist.name)
        if key == PRODUCT or key in INSTALLER_TOOLS:
            continue
        pinned = pins.get(key)
        if pinned is None:
            unpinned.append(f"{dist.name} {dist.version} is installed but not pinned")
        elif pinned != dist.version:
            drifted.append(f"{dist.name} is {dist.version}, pinned {pinned}")
    return drifted + unpinned
