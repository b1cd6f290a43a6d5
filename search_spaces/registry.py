"""The built-in spaces (YAML files shipped inside this package) and name-or-path lookup."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from search_spaces.spec import BUILTIN, Space, load_space, parse_space
from trainables.errors import SpaceError, brief, did_you_mean
from trainables.files import parse_yaml


def builtin_spaces() -> list[Space]:
    """Every built-in space, sorted by name."""
    found = [f for f in files(__package__).iterdir() if f.name.endswith(".yaml")]
    spaces = [parse_space(parse_yaml(f.read_text(encoding="utf-8"), source=f"built-in space file {f.name}",
                                     error=SpaceError), BUILTIN) for f in found]
    return sorted(spaces, key=lambda s: s.name)


def get_space(name_or_path: str) -> Space:
    """A built-in space by name ("seed-grid"), or the space in a YAML file."""
    builtins = {s.name: s for s in builtin_spaces()}
    if name_or_path in builtins:
        return builtins[name_or_path]
    p = Path(name_or_path)
    try:
        exists = p.exists()
    except OSError:  # e.g. a name longer than the file system allows
        exists = False
    if exists or p.suffix in (".yaml", ".yml") or len(p.parts) > 1:
        return load_space(p)
    raise SpaceError(f"unknown search space {brief(name_or_path, limit=60)}"
                     f"{did_you_mean(name_or_path[:60], builtins)}; "
                     f"built-ins: {', '.join(builtins)}; or pass a path to a YAML file")
