"""Package layout: one distribution, one namespace (DESIGN.md section 7).

The core package lives in kubemu/; each component lives in a top-level folder of its own and
installs as kubemu.<component>, so nothing is installed at the top level under a generic name
(a top-level `dns` would shadow dnspython).
"""
from setuptools import find_packages, setup

COMPONENTS = ["apiserver", "nodeagent", "dns", "controllers", "cloudlb", "ingress"]

packages = find_packages(include=["kubemu", "kubemu.*"])
package_dir = {"kubemu": "kubemu"}
for component in COMPONENTS:
    package_dir[f"kubemu.{component}"] = component
    packages.append(f"kubemu.{component}")
    packages += [f"kubemu.{component}.{sub}" for sub in find_packages(component)]

setup(packages=packages, package_dir=package_dir, package_data={"kubemu": ["v1/*.pyi"]})
