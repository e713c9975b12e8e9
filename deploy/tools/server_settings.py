"""covet-server as the deploy checks see it: the environment variables declared in
example-server/src/config.rs (`env = "..."`), their defaults, a duration parser, and the
Permissions-Policy its SecurityHeadersLayer sends.

Imported by check_manifests.py and check_consistency.py (same folder).
"""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG_RS = ROOT / "example-server" / "src" / "config.rs"
LAYERS_SRC = ROOT / "layers" / "src"

# Settings a deploy file may use before config.rs declares them (none now; config.rs wins).
PENDING = {}

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def seconds(text):
    """Parses the server's durations (`500ms`, `5s`, `2m`, `1h30m`, `0`); a bare number is seconds."""
    text = str(text).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise ValueError(f"unparsable duration {text!r}")
    return sum(float(n) * UNITS[u] for n, u in parts)


def _declared():
    """{env name: default or None} from the `#[arg(...)]` attributes of config.rs."""
    text = CONFIG_RS.read_text(encoding="utf-8")
    found = {}
    for attr in re.findall(r"#\[arg\((.*?)\)\]\s*\n", text, flags=re.S):
        name = re.search(r'\benv\s*=\s*"([A-Z0-9_]+)"', attr)
        if not name:
            continue
        default = re.search(r'\bdefault_value\s*=\s*"([^"]*)"', attr)
        found[name.group(1)] = default.group(1) if default else None
    return found


def env_names():
    """Every environment variable covet-server reads (config.rs plus PENDING)."""
    return set(_declared()) | set(PENDING)


def defaults():
    """Defaults of the settings that have a literal one (config.rs wins over PENDING)."""
    merged = {k: v for k, v in PENDING.items() if v is not None}
    merged.update({k: v for k, v in _declared().items() if v is not None})
    return merged


def permissions_features(value):
    """`camera=(), usb=()` -> {"camera=()", "usb=()"}."""
    return {f.strip() for f in str(value).split(",") if f.strip()}


def app_permissions_policy():
    """The features the app's deny-all Permissions-Policy lists: the PERMISSIONS_POLICY_DENY_ALL
    constant of covet-layers (layers/src/security_headers.rs today; searched, so a move is fine)."""
    for path in sorted(LAYERS_SRC.rglob("*.rs")):
        text = path.read_text(encoding="utf-8")
        m = re.search(r'PERMISSIONS_POLICY_DENY_ALL: &str = "(.*?)";', text, flags=re.S)
        if m:
            return permissions_features(re.sub(r"\\\n\s*", "", m.group(1)))
    raise ValueError(f"no PERMISSIONS_POLICY_DENY_ALL constant under {LAYERS_SRC}")
