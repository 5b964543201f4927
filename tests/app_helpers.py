"""What the app tests share: running an app's console entry point in this process."""

import importlib
import sys

import pytest


def cli(module, args, tmp_path, capsys, monkeypatch):
    """Run ``module``'s ``main()`` with ``args`` as its command line, from ``tmp_path``, its Hydra run dir
    ``tmp_path/run``; returns (exit code, stdout, stderr, run dir). The app must exit (SystemExit)."""
    run_dir = tmp_path / "run"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [module] + list(args) + [f"hydra.run.dir={run_dir}"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        importlib.import_module(module).main()
    out, err = capsys.readouterr()
    return e.value.code, out, err, run_dir
