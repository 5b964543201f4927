"""Packaging beside setup.cfg (metadata, extras, entry points): which packages install, and where conf/ goes.

The four libraries install as top-level packages on purpose: `import render`, `avatars`, `finetune` and
`reconstruction` are the import paths the code, tests and users' scripts use (imports flow amg ->
{reconstruction, finetune} -> avatars -> render). The distribution is named amg; these names are reserved
with it, so do not install it beside other distributions that ship packages of the same names.

The Hydra configs in conf/ install as the data of `amg.conf`, so the apps of an installed wheel find them
(amg.build.CONF_DIR prefers a checkout's conf/).
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["amg*", "reconstruction*", "avatars*", "render*", "finetune*"]) + ["amg.conf"],
    package_dir={"amg.conf": "conf"},
    package_data={"amg.conf": ["*.yaml", "*/*.yaml", "*/*/*.yaml", "*/*/*/*.yaml"]},
)
