"""The wheel: every Hydra config ships inside it (as amg/conf) and an installed app composes its config from there."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_carries_the_configs_and_installed_apps_find_them(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("amg-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    want = {f"amg/conf/{p.relative_to(ROOT / 'conf').as_posix()}" for p in (ROOT / "conf").rglob("*.yaml")}
    assert want and want <= names, sorted(want - names)[:5]
    assert {"render/defaults.py", "finetune/pipelines/amg_cogvideox.py", "avatars/data/default_body.npz"} <= names

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # what pip puts in site-packages (pure Python wheel)
    probe = ("from amg.build import CONF_DIR; import amg; from pathlib import Path; "
             "assert Path(amg.__file__).resolve().parent == Path(r'{site}').resolve() / 'amg', amg.__file__; "
             "assert CONF_DIR == Path(r'{site}').resolve() / 'amg' / 'conf', CONF_DIR; "
             "from hydra import compose, initialize_config_dir; "
             "initialize_config_dir(config_dir=str(CONF_DIR), version_base=None).__enter__(); "
             "c = compose('generate', overrides=['model=wan', 'model.path=x']); print(c.num_frames, c.width)")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", probe.format(site=site)], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True)
    assert out.stdout.split()[-2:] == ["81", "832"]
