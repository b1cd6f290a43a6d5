"""Light commands import neither PyTorch nor Ray: `hpsearch --help` answers in a fraction of a second."""

import pytest
import yaml

from helpers import heavy_imports


@pytest.mark.parametrize("argv", [["--help"], ["sweep", "--help"], ["spaces"], ["transfer", "--help"]])
def test_help_and_spaces_stay_light(argv):
    assert heavy_imports(argv) == ([], 0)


def test_spaces_of_a_file_and_ls_stay_light(tmp_path):
    space = tmp_path / "s.yaml"
    space.write_text(yaml.safe_dump({"name": "s", "axes": {"peak_lr": {"loguniform": [1e-4, 1e-2]}}}))
    assert heavy_imports(["spaces", str(space)]) == ([], 0)
    assert heavy_imports(["ls", "--results-dir", str(tmp_path)]) == ([], 0)


def test_importing_the_front_door_stays_light():
    import subprocess
    import sys

    probe = "import sys, hpsearch; print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'ray'}))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
